"""Parked runs (docs/semantics.md, "Nodes: parked runs"): a run waiting on another machine
is set aside with its transaction and its own undo entries, other runs start meanwhile, and
any parked run resumes with its answer, in any order. Driven here without a network: the test
answers."""

from __future__ import annotations

import pytest

from avm_vm.errors import AvmError, ErrorKind
from avm_vm.runtime.core import Runtime, RuntimeOptions
from avm_vm.runtime.runs import (
    Decision,
    Done,
    Failed,
    Outcome,
    Parked,
    Prepare,
    RemoteCall,
    RemoteFailure,
    Teleport,
)
from avm_vm.trace import LogRecorded, ObjectCalled, StateUpdated, Trace
from avm_vm.values import NOTHING, Just, ObjectRef, render
from avmc.compiler import compile_source

FAR = 1 << 48  # an object id another machine made

SOURCE = f"""
behavior Cell {{
  on ["get"] {{ return get_state() }}
  on ["set", v] {{ set_state([v]); return v }}
  on ["remote"] {{ return call(obj:{FAR}, "hi") }}
  on ["set_then_remote", v] {{ set_state([v]); let r = call(obj:{FAR}, "hi"); fail "after" }}
  on ["outer", inner, v] {{ set_state([v]); let r = call(inner, ["set_then_remote", v]); return r }}
  on ["hop"] {{ teleport("far"); return "hopped" }}
}}
main {{
  let c = create Cell
  let t = begin()
  let d = create Cell
  let r = call(obj:{FAR}, 1)
  commit(t)
  return [c, d, r]
}}
"""


class Network:
    """Everything with prefix 1 lives on "far"."""

    def locate(self, object_id: int) -> str | None:
        return "far" if object_id >> 48 == 1 else None

    def is_peer(self, machine: str) -> bool:
        return machine == "far"

    def cannot_join(self, machine: str) -> str | None:
        return None


def _runtime() -> Runtime:
    program = compile_source(SOURCE, "park.avm")
    return Runtime(program, RuntimeOptions(jit="off", machine="here"), network=Network())


def _main(rt: Runtime):
    interpreter = rt.interpreters[0]
    return rt.start(interpreter, interpreter.program.main)


def _committed(rt: Runtime, outcome: Outcome) -> Outcome:
    """Past main's commit: its call to "far" joined the transaction, so the commit parks
    until the decision, here that "far" voted yes and changed something."""
    assert type(outcome) is Parked and type(outcome.request) is Prepare
    assert outcome.request.participants == {"far"}
    return rt.resume(outcome.run, Decision(True, writers=frozenset({"far"})))


def _cell(rt: Runtime) -> int:
    """A committed Cell, made by a run that parks on its remote call."""
    outcome = rt.start(rt.interpreters[0], rt.interpreters[0].program.main)
    assert type(outcome) is Parked
    done = _committed(rt, rt.resume(outcome.run, 0))
    assert type(done) is Done
    return done.value[0].id  # type: ignore[index,union-attr]


def test_a_remote_call_parks_and_resumes_with_the_answer() -> None:
    rt = _runtime()
    outcome = _main(rt)
    assert type(outcome) is Parked
    request = outcome.request
    assert type(request) is RemoteCall
    assert (request.machine, request.target, request.message) == ("far", FAR, 1)
    assert rt.run is None and list(rt.parked.values()) == [outcome.run]
    assert rt.tx is None  # set aside with the run
    assert request.tx == outcome.run.tx.id and request.coordinator == "here"  # it joins
    done = _committed(rt, rt.resume(outcome.run, "pong"))
    assert type(done) is Done and rt.decided == [(request.tx, True, {"far"})]
    assert render(done.value) == '[obj:0, obj:1, just "pong"]'
    called = [e for e in rt.trace.entries if type(e.event) is ObjectCalled]
    assert [e.event for e in called] == [ObjectCalled(FAR, 1, "pong")]
    assert called[0].duct[-1][:2] == (FAR, "@far")
    assert rt.journal.entries == [] and rt.tx is None and 1 in rt.store


def test_a_failed_remote_call_fails_the_caller() -> None:
    rt = _runtime()
    outcome = _main(rt)
    failed = rt.resume(outcome.run, AvmError(ErrorKind.MACHINE_UNREACHABLE, machine="far (x)"))
    assert type(failed) is Failed
    assert str(failed.failure) == "MachineUnreachable: machine unreachable: machine:far (x)"
    assert rt.tx is not None  # as in `avm run`, the open transaction survives (§9.3)
    assert rt.abort_open_tx() is not None and rt.tx is None
    assert 1 not in rt.store


def test_parked_runs_resume_in_any_order() -> None:
    rt = _runtime()
    cell = _cell(rt)
    first = _main(rt)
    second = rt.start_call(cell, ("remote",), 5, 900, None)
    assert type(first) is Parked and type(second) is Parked
    outer = _committed(rt, rt.resume(first.run, 3))  # the older run first: the newer stays
    assert type(outer) is Done and outer.value[2] == Just(3)  # type: ignore[index]
    with pytest.raises(RuntimeError, match="only a parked run"):
        rt.resume(first.run, 4)  # it is no longer parked
    inner = rt.resume(second.run, 2)
    assert type(inner) is Done and inner.value == Just(2)
    assert rt.parked == {} and rt.journal.entries == []


def test_the_middle_of_three_parked_runs_resumes_first_and_undoes_only_its_callee() -> None:
    rt = _runtime()
    outers = [_cell(rt) for _ in range(3)]
    inners = [_cell(rt) for _ in range(3)]
    runs = []
    for i in range(3):  # each parks inside a callee that wrote its inner cell
        outcome = rt.start_call(outers[i], ("outer", ObjectRef(inners[i]), i + 1), 5, 900 + i, None)
        assert type(outcome) is Parked
        runs.append(outcome.run)
    assert [rt.store.state(c) for c in outers + inners] == [(1,), (2,), (3,)] * 2
    assert all(run.entries for run in runs)  # each holds its own undo entries
    middle = rt.resume(runs[1], "answer")  # the callee fails after its answer: undone
    assert type(middle) is Done and middle.value is NOTHING
    assert [rt.store.state(c) for c in outers] == [(1,), (2,), (3,)]
    assert [rt.store.state(c) for c in inners] == [(1,), (), (3,)]
    reverted = [e for e in rt.trace.entries if e.reverted]
    assert {e.run for e in reverted} == {runs[1].number}  # not the others', logged between
    assert [e.event.id for e in reverted if type(e.event) is StateUpdated] == [inners[1]]
    assert list(rt.parked) == [runs[0].number, runs[2].number]
    last = rt.resume(runs[2], AvmError(ErrorKind.MACHINE_UNREACHABLE, machine="far"))
    assert type(last) is Done and rt.store.state(inners[2]) == ()  # its call failed: undone
    first = rt.resume(runs[0], "answer")
    assert type(first) is Done and rt.store.state(inners[0]) == ()
    assert [rt.store.state(c) for c in outers] == [(1,), (2,), (3,)]
    assert rt.parked == {} and rt.journal.entries == []


def test_transactions_of_runs_resumed_out_of_order_stay_their_own() -> None:
    rt = _runtime()
    first, second = _main(rt), _main(rt)  # both parked inside their own transaction
    assert type(first) is Parked and type(second) is Parked
    assert first.run.tx is not None and second.run.tx is not None
    assert first.run.tx is not second.run.tx and rt.tx is None
    late = _committed(rt, rt.resume(second.run, "b"))
    assert type(late) is Done and rt.tx is None  # committed its own transaction
    early = rt.resume(first.run, AvmError(ErrorKind.MACHINE_UNREACHABLE, machine="far"))
    assert type(early) is Failed and rt.tx is not None  # its transaction is back, open
    assert rt.abort_open_tx() is not None and rt.tx is None
    created = [v.id for v in late.value[:2]]  # type: ignore[index,union-attr]
    assert all(object_id in rt.store for object_id in created)
    assert len(rt.store) == 3  # and the first run's create outside its transaction


def test_dropping_a_runs_trace_leaves_another_runs_marks_valid() -> None:
    trace = Trace()
    trace.run = 1
    first = trace.mark()
    trace.emit(LogRecorded(1), None, None)
    trace.run = 2
    second = trace.mark()
    trace.emit(LogRecorded(2), None, None)
    trace.run = 1
    trace.emit(LogRecorded(3), None, None)
    trace.drop_from(first)  # run 1's callee failed under profile R: its entries go
    trace.run = 2
    trace.emit(LogRecorded(4), None, None)
    trace.revert_from(second)  # run 2's callee failed: exactly its two entries
    assert [(e.event.value, e.run, e.reverted) for e in trace.entries] == [
        (2, 2, True),
        (4, 2, True),
    ]


def test_a_run_nested_on_a_parked_transaction_runs_outside_it() -> None:
    rt = _runtime()
    cell = _cell(rt)
    parked = _main(rt)  # parked inside its transaction, with a pending create
    served = rt.start_call(cell, ("set", 9), 5, 900, None)
    assert type(served) is Done and rt.store.state(cell) == (9,)  # committed at once
    done = _committed(rt, rt.resume(parked.run, 0))
    assert type(done) is Done
    created = done.value[1].id  # type: ignore[index,union-attr]
    assert created in rt.store and rt.tx is None


def test_undoing_a_parked_callee_leaves_the_nested_runs_work_alone() -> None:
    rt = _runtime()
    cell, other = _cell(rt), _cell(rt)
    outer = rt.start_call(cell, ("set_then_remote", 1), 5, 900, None)
    assert type(outer) is Parked and rt.store.state(cell) == (1,)
    nested = rt.start_call(other, ("set", 2), 5, 901, None)
    assert type(nested) is Done
    failed = rt.resume(outer.run, "answer")
    assert type(failed) is Failed  # the served callee failed: its own effects are undone
    assert rt.store.state(cell) == () and rt.store.state(other) == (2,)
    updates = [e for e in rt.trace.entries if type(e.event) is StateUpdated]
    assert [(e.event.id, e.reverted) for e in updates[-2:]] == [(cell, True), (other, False)]
    assert rt.journal.entries == []


def test_teleport_parks_and_the_activation_finishes_elsewhere() -> None:
    rt = _runtime()
    cell = _cell(rt)
    outcome = rt.start_call(cell, ("hop",), 5, 900, None)
    assert type(outcome) is Parked and type(outcome.request) is Teleport
    assert outcome.request.activation.self_id == cell
    done = rt.resume(outcome.run, "hopped")
    assert type(done) is Done and done.value == "hopped"
    outcome = rt.start_call(cell, ("hop",), 5, 901, None)
    failed = rt.resume(outcome.run, RemoteFailure(AvmError(ErrorKind.OBJ_NOT_FOUND, id=3)))
    assert type(failed) is Failed and failed.failure.error.kind is ErrorKind.OBJ_NOT_FOUND
    outcome = rt.start_call(cell, ("hop",), 5, 902, None)
    refused = rt.resume(outcome.run, AvmError(ErrorKind.MACHINE_UNREACHABLE, machine="far"))
    assert type(refused) is Failed  # the teleport instruction itself failed, here


def test_run_function_refuses_a_run_that_parks() -> None:
    rt = _runtime()
    with pytest.raises(RuntimeError, match="start/resume"):
        rt.run_main()
