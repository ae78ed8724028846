"""Transaction layer (spec §8, profile R): begin, commit, abort.

Profile R's rules throughout: nested begin is an error, commit and abort check the id,
validation failure rolls back and raises TxConflict, and the executing controller of the
start event is the new one while commit/abort events carry none (spec §10.3). Our addition:
`require` assertions (spec §6.10) are checked with the read set, atomically.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from avm_vm.errors import AvmError, ErrorKind
from avm_vm.runtime.handlers.common import optional_name, tx_id
from avm_vm.runtime.transactions import Transaction
from avm_vm.trace import TransactionAborted, TransactionCommitted, TransactionStarted
from avm_vm.values import NOTHING, TxRef, Value

if TYPE_CHECKING:
    from avm_vm.runtime.core import Runtime


def begin_tx(rt: Runtime, args: tuple[Value, ...]) -> Value:
    controller = optional_name(args[0], "begin")
    if rt.tx is not None:
        raise AvmError(ErrorKind.TX_INVALID_DURING_TX)
    tx = Transaction(rt.ids.tx_id(), controller)
    rt.set_tx(tx)
    rt.emit(TransactionStarted(tx.id))
    return TxRef(tx.id)


def _open_tx(rt: Runtime, value: Value, instruction: str) -> Transaction:
    wanted = tx_id(value, instruction)
    tx = rt.tx
    if tx is None:
        raise AvmError(ErrorKind.TX_NO_ACTIVE)
    if tx.id != wanted:
        raise AvmError(ErrorKind.TX_NOT_FOUND, tx=wanted)
    return tx


def _requirements_hold(rt: Runtime, tx: Transaction) -> bool:
    """Every `require` of the tx: a bool must be true, a constraint must post consistently."""
    return all(
        req is True if type(req) is bool else rt.constraints.post(req) for req in tx.requirements
    )


def commit_tx(rt: Runtime, args: tuple[Value, ...]) -> Value:
    tx = _open_tx(rt, args[0], "commit")
    if tx.conflicts(rt.store) or not _requirements_hold(rt, tx):
        rt.rollback()
        raise AvmError(ErrorKind.TX_CONFLICT, tx=tx.id)
    rt.set_tx(None)
    tx.apply(rt.store, rt.act.machine)
    rt.emit(TransactionCommitted(tx.id))
    return True


def abort_tx(rt: Runtime, args: tuple[Value, ...]) -> Value:
    tx = _open_tx(rt, args[0], "abort")
    rt.rollback()
    rt.emit(TransactionAborted(tx.id))
    return NOTHING


HANDLERS = {"begin_tx": begin_tx, "commit_tx": commit_tx, "abort_tx": abort_tx}
R_HANDLERS: dict = {}
