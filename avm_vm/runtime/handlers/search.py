"""Search at commit (docs/semantics.md, "Nondeterminism"): choice points and backtracking.

`begin` takes a checkpoint (`Search`): the top frame of the activation that began the
transaction, as it is just after `begin`. Inside the transaction `choose` and `label` are
choice points. When a run of the body cannot commit (its requirements fail at commit, or a
dead end: `choose([])`, a `label` with no consistent value left, a failed requirement
after the first choice), `fail_attempt` undoes the run (callees above the checkpoint popped
and unwound, the world log replayed backwards, the run's trace entries dropped), puts the
frame back to the checkpoint and answers `RESTART`: the loop runs the body again, its
choice points replaying the combination `Search.advance` chose. When none is left, or the
attempt limit is reached, the error (NoSolution, SearchLimit) is thrown at the checkpoint,
where the `atomic` block's handler catches it. `solutions(v)` keeps ``v`` and fails the run
on purpose; once the search is over the body goes on after it with the list.
"""

from __future__ import annotations

from functools import wraps
from typing import TYPE_CHECKING

from avm_vm.errors import AvmError, ErrorKind, vm_error
from avm_vm.runtime.handlers.common import RESTART, Handler
from avm_vm.runtime.transactions import Search, Transaction
from avm_vm.trace import SearchEnded, TransactionAborted
from avm_vm.values import TxRef, Value

if TYPE_CHECKING:
    from avm_vm.runtime.core import Runtime
    from avm_vm.vm.interpreter import Frame


def checkpoint(rt: Runtime, tx: Transaction) -> None:
    """Called by `begin`: the activation's top frame as it is just after `begin` (its pc
    past the instruction, whose answer register gets the transaction's reference). Cheap,
    since most transactions never search; the `Search` is made at the first choice."""
    act = rt.act
    frame = act.frames[-1]
    regs = frame.regs.copy()
    regs[_answer_register(frame)] = TxRef(tx.id)
    tx.checkpoint = (
        act,
        len(rt.stack),
        len(act.frames),
        frame,
        frame.pc,
        regs,
        frame.handlers.copy(),
        frame.caught,
        act.unreceived,
        rt.trace.clock,
    )


def open_search(rt: Runtime, instruction: str) -> Search | None:
    """The open transaction's search, made at its first choice point; None outside a
    transaction. Once `solutions` has answered, a transaction makes no more choices."""
    tx = rt.tx
    if tx is None:
        return None
    search = tx.search
    if search is None:
        if tx.checkpoint is None:  # profile r takes none (its choice points are stubs)
            return None
        search = tx.search = Search(tx.checkpoint)
    elif search.over:
        raise vm_error(
            ErrorKind.FAILED,
            f"{instruction}: the search of tx:{tx.id} is over (solutions answered); "
            "a transaction collects its solutions once",
        )
    return search


def requirements_hold(rt: Runtime, tx: Transaction) -> bool:
    """Every `require` of the tx: a bool must be true, a constraint must post consistently."""
    return all(
        req is True if type(req) is bool else rt.constraints.post(req) for req in tx.requirements
    )


def refuse_if_searching(rt: Runtime, what: str) -> None:
    """Effects that cannot be undone or repeated have no place in a body that may re-run."""
    tx = rt.tx
    if tx is not None and tx.search is not None and tx.search.searching:
        raise AvmError(ErrorKind.NOT_SEARCHABLE, what=what)


def guarded(handler: Handler, what: str) -> Handler:
    """``handler``, refused inside a transaction that searches."""

    @wraps(handler)
    def guard(rt: Runtime, args: tuple[Value, ...]) -> Value:
        refuse_if_searching(rt, what)
        return handler(rt, args)

    return guard


def fail_attempt(rt: Runtime) -> Value:
    """The run of the body under way cannot commit: re-run it with the next combination.
    When none is left, a search that reached `solutions` goes on after it with the
    answers; any other ends with NoSolution thrown at the checkpoint (SearchLimit when the
    attempts run out first)."""
    tx = rt.tx
    assert tx is not None and tx.search is not None
    search = tx.search
    if not search.advance():
        if search.resume is not None:
            return _collected(rt, tx)
        return _stop(rt, tx, "exhausted", ErrorKind.NO_SOLUTION)
    if search.tried >= rt.options.max_search:
        return _stop(rt, tx, "limit", ErrorKind.SEARCH_LIMIT)
    _rewind(rt, tx)
    _reopen(rt, tx)
    return RESTART


def solutions(rt: Runtime, args: tuple[Value, ...]) -> Value:
    """`solutions(value)`: keep ``value`` when the requirements hold, then re-run with the
    next combination (`fail_attempt`). It must run in the function that began the
    transaction: once the search is over the body goes on from the last `solutions`
    reached (`_collected`)."""
    search = open_search(rt, "solutions")
    tx = rt.tx
    if search is None or tx is None:
        raise AvmError(ErrorKind.TX_NO_ACTIVE)
    frame = rt.act.frames[-1]
    if rt.act is not search.act or frame is not search.frame:
        raise vm_error(
            ErrorKind.FAILED,
            f"solutions: run it in the function that began tx:{tx.id}, where the body goes "
            "on once the search is over",
        )
    if not tx.conflicts(rt.store) and requirements_hold(rt, tx):
        search.answers.append(args[0])
    search.resume = (frame.pc, list(frame.regs), list(frame.handlers), frame.caught)
    return fail_attempt(rt)


def _collected(rt: Runtime, tx: Transaction) -> Value:
    """Every combination was tried: undo the last run, then go on after the last
    `solutions` reached with the list of answers, the transaction open again as at begin."""
    search = tx.search
    assert search is not None and search.resume is not None
    _rewind(rt, tx)
    frame = search.frame
    frame.pc, regs, handlers, frame.caught = search.resume
    frame.regs[:] = regs
    frame.handlers[:] = handlers
    answers = tuple(search.answers)
    frame.regs[_answer_register(frame)] = answers
    search.over = True
    _reopen(rt, tx)
    rt.emit(SearchEnded(tx.id, "collected", search.tried, len(answers), None))
    return RESTART


def _reopen(rt: Runtime, tx: Transaction) -> None:
    """A fresh overlay for the next run, with the same id and search."""
    fresh = Transaction(tx.id, tx.controller, tx.run, tx.coordinator)
    fresh.checkpoint, fresh.search = tx.checkpoint, tx.search
    rt.set_tx(fresh)


def _stop(rt: Runtime, tx: Transaction, outcome: str, kind: ErrorKind) -> Value:
    """End the search without a solution: the transaction is rolled back as an abort
    would, and ``kind`` is thrown at the checkpoint (`Runtime.search_failure`)."""
    search = tx.search
    assert search is not None
    _rewind(rt, tx)
    rt.emit(SearchEnded(tx.id, outcome, search.tried, len(search.answers), None))
    rt.emit(TransactionAborted(tx.id))
    rt.search_failure = AvmError(kind, tried=search.tried)
    return RESTART


def _rewind(rt: Runtime, tx: Transaction) -> None:
    """Undo the run under way and put the checkpoint's frame back; closes ``tx``."""
    search = tx.search
    assert search is not None
    stack, act = rt.stack, search.act
    depth = search.depth
    frames = act.frames
    if (
        len(stack) < depth
        or stack[depth - 1] is not act
        or len(frames) < search.nframes
        or frames[search.nframes - 1] is not search.frame
    ):
        raise vm_error(
            ErrorKind.FAILED,
            f"the search of tx:{tx.id} cannot re-run its body: the function that began "
            "the transaction has returned (begin and commit a searching transaction in "
            "the same function)",
        )
    if len(stack) > depth:  # callees of the body still running: undone as failed calls
        journal = rt.journal
        if rt.ours:
            journal.unwind(stack[depth].mark)
        del stack[depth:]
        rt.act = act
        run = rt.run
        if depth == 1 and run is not None and not run.undoable:
            journal.active = False
            journal.entries.clear()
    rt.rollback()
    rt.trace.drop_from(search.trace_mark)
    del frames[search.nframes :]
    frame = search.frame
    frame.pc = search.pc
    frame.regs[:] = search.regs
    frame.handlers[:] = search.handlers
    frame.caught = search.caught
    act.unreceived = search.unreceived


def _answer_register(frame: Frame) -> int:
    """The answer register of the EFFECT the frame is suspended after."""
    return frame.function.function.code[frame.pc - 1][1]
