"""Transaction layer (spec §8, profile R): begin, commit, abort.

Profile R's rules throughout: nested begin is an error, commit and abort check the id,
validation failure rolls back and raises TxConflict, and the executing controller of the
start event is the new one while commit/abort events carry none (spec §10.3). Our additions:
`require` assertions (spec §6.10) are checked with the read set, atomically, and a
transaction that made choices searches when they fail (handlers/search.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from avm_vm.errors import AvmError, ErrorKind, failed, vm_error
from avm_vm.runtime.failures import CalleeFailed
from avm_vm.runtime.handlers.common import PARK, tx_id
from avm_vm.runtime.handlers.search import checkpoint, fail_attempt, requirements_hold
from avm_vm.runtime.runs import Decision, Prepare
from avm_vm.runtime.transactions import Transaction
from avm_vm.trace import SearchEnded, TransactionAborted, TransactionCommitted, TransactionStarted
from avm_vm.values import NOTHING, NothingType, TxRef, Value
from avm_vm.vm.ops import describe

if TYPE_CHECKING:
    from avm_vm.runtime.core import Runtime


def _controller(value: Value) -> str | None:
    """`begin`'s optional controller. Passing an object (`atomic under self`) is a common
    slip: the error says what a controller is."""
    if type(value) is NothingType:
        return None
    if type(value) is not str:
        raise vm_error(
            ErrorKind.TYPE_MISMATCH,
            f"begin: a controller is a name (a string), found {describe(value)}; "
            "atomic under and begin take a controller name, such as 'bank'",
        )
    return value


def begin_tx(rt: Runtime, args: tuple[Value, ...]) -> Value:
    controller = _controller(args[0])
    if rt.tx is not None:
        raise AvmError(ErrorKind.TX_INVALID_DURING_TX)
    tx = Transaction(rt.ids.tx_id(), controller, rt.run.number if rt.run else None)
    rt.set_tx(tx)
    rt.emit(TransactionStarted(tx.id))
    if rt.ours:
        checkpoint(rt, tx)
    return TxRef(tx.id)


def _open_tx(rt: Runtime, value: Value, instruction: str) -> Transaction:
    wanted = tx_id(value, instruction)
    tx = rt.tx
    if tx is None:
        raise AvmError(ErrorKind.TX_NO_ACTIVE)
    if tx.id != wanted:
        raise AvmError(ErrorKind.TX_NOT_FOUND, tx=wanted)
    if rt.run is not None and rt.run.joined:
        where = "this node" if tx.coordinator is None else f"node {tx.coordinator}"
        raise AvmError(
            ErrorKind.TX_NOT_FOUND,
            tx=wanted,
            reason=f"this call joined it, and only its run on {where} may {instruction} it",
        )
    return tx


def commit_tx(rt: Runtime, args: tuple[Value, ...]) -> Value:
    tx = _open_tx(rt, args[0], "commit")
    search = tx.search
    reason = _stale(rt, tx)
    if reason is None and not requirements_hold(rt, tx):
        if search is not None and search.searching:  # try the next combination of choices
            return fail_attempt(rt)
        reason = ""
    if reason is not None:
        rt.rollback()
        raise AvmError(ErrorKind.TX_CONFLICT, tx=tx.id, reason=reason or None)
    if tx.participants:  # parts of it wait on other nodes: commit them all, or none
        rt.store.lock(tx.touched(), tx.id)
        rt.request = Prepare(tx.id, frozenset(tx.participants))
        return PARK
    rt.set_tx(None)
    tx.apply(rt.store, rt.act.machine)
    if search is not None and search.searching:
        rt.emit(SearchEnded(tx.id, "solved", search.tried + 1, 1, search.choices()))
    rt.emit(TransactionCommitted(tx.id))
    return True


def _stale(rt: Runtime, tx: Transaction) -> str | None:
    """Why ``tx`` cannot commit, or None. Profile R only checks that what it read still
    exists (spec §8.5), and says no more than the conflict ("")."""
    if rt.ours:
        return tx.stale(rt.store)
    return "" if tx.conflicts(rt.store) else None


def complete_commit(rt: Runtime, decision: Decision) -> Value:
    """The decision on a commit across nodes (docs/transactions.md): apply the local part
    or roll it back, and tell the participants. Whichever it is, it is final: a failure
    of the call that committed can no longer undo it (`Runtime.fence`)."""
    tx = rt.tx
    assert tx is not None
    rt.store.unlock(tx.touched(), tx.id)
    rt.fence()
    if not decision.commit:
        rt.rollback(decision.asked)
        raise AvmError(ErrorKind.TX_CONFLICT, tx=tx.id, reason=decision.reason)
    rt.set_tx(None)
    tx.apply(rt.store, rt.act.machine)
    rt.decided.append((tx.id, True, decision.writers))
    rt.emit(TransactionCommitted(tx.id))
    return True


def abort_tx(rt: Runtime, args: tuple[Value, ...]) -> Value:
    tx = _open_tx(rt, args[0], "abort")
    rt.rollback()
    rt.emit(TransactionAborted(tx.id))
    return NOTHING


def atomic_failed(rt: Runtime, args: tuple[Value, ...]) -> Value:
    """An `atomic` block failed: abort its transaction ``args[0]`` if it is still the open
    one (a failed commit rolled it back already; the body may have closed it itself; begin
    may have failed), and answer the kind (``Failed``, ``TxConflict``...) of the error the
    handler caught, which `else (err, kind)` binds."""
    tx, block = rt.tx, args[0]
    if tx is not None and type(block) is TxRef and block.id == tx.id:
        rt.rollback()
        rt.emit(TransactionAborted(tx.id))
    caught = rt.act.frames[-1].caught
    if isinstance(caught, CalleeFailed):  # its kind as the callee named it (maybe a peer's)
        return caught.failure.kind
    return "" if caught is None else caught.kind.qualified_name


def rethrow(rt: Runtime, args: tuple[Value, ...]) -> Value:
    """An `atomic` block without `else` failed: fail again with the very error it caught
    (its kind and, for a callee's failure, where it was raised), ``args[0]`` its message."""
    caught = rt.act.frames[-1].caught
    raise caught if caught is not None else failed(args[0])


HANDLERS = {
    "begin_tx": begin_tx,
    "commit_tx": commit_tx,
    "abort_tx": abort_tx,
    "atomic_failed": atomic_failed,
    "rethrow": rethrow,
}
R_HANDLERS: dict = {}
