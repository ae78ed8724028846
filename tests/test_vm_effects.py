"""The VM's fuel accounting and its effects: Vis, resuming, throw, nested runs."""

from __future__ import annotations

import pytest
from vm_asm import COUNTDOWN, EVEN_ODD, SUM_TO, Fn, assemble

from avm_vm.errors import AvmError, ErrorKind, vm_error
from avm_vm.format.instructions import BY_NAME
from avm_vm.format.program import FunctionKind
from avm_vm.values import NOTHING, SIZE_UNIT, ObjectRef
from avm_vm.vm.interpreter import Fault, Fuel, Interpreter, Ret, Vis

MAIN = FunctionKind.MAIN

# -- fuel


def test_fuel_is_exact() -> None:
    program = assemble(SUM_TO)
    steps = 3 + 5 * 10 + 3
    vm = Interpreter(program)
    fuel = Fuel(steps)
    assert vm.run([vm.frame(0, (10,))], fuel) == Ret(45)
    assert (fuel.remaining, fuel.used) == (0, steps)
    fuel = Fuel(steps - 1)
    frames = [vm.frame(0, (10,))]
    fault = vm.run(frames, fuel)
    assert isinstance(fault, Fault)
    assert fault.error.kind is ErrorKind.FUEL_EXHAUSTED
    assert fault.error.message == f"out of fuel after {steps - 1} steps"
    assert fault.pc == 8 and frames[0].pc == 8  # the RET found the budget empty
    assert fuel.remaining == 0


def test_fuel_runs_out_at_the_right_instruction() -> None:
    # The pcs SUM_TO(2) runs, in order; with fuel n the fault is at the (n+1)th.
    trace = [0, 1, 2] + [3, 4, 5, 6, 7] * 2 + [3, 4, 8]
    vm = Interpreter(assemble(SUM_TO))
    for limit in range(len(trace)):
        fault = vm.run([vm.frame(0, (2,))], Fuel(limit))
        assert isinstance(fault, Fault) and fault.pc == trace[limit], limit


@pytest.mark.parametrize("fns", [[COUNTDOWN], EVEN_ODD])
def test_fuel_runs_out_at_the_right_instruction_across_calls(fns: list[Fn]) -> None:
    # (depth, pc) of each instruction countdown(2) runs; even/odd have the same shape.
    level = [0, 1, 2, 5, 6, 7]
    trace = [(1, pc) for pc in level] + [(2, pc) for pc in level]
    trace += [(3, pc) for pc in (0, 1, 2, 3, 4)] + [(2, 8), (1, 8)]
    vm = Interpreter(assemble(*fns))
    for limit in range(len(trace)):
        frames = [vm.frame(0, (2,))]
        fault = vm.run(frames, Fuel(limit))
        assert isinstance(fault, Fault)
        assert (len(frames), fault.pc) == trace[limit], limit


def test_fuel_runs_out_at_the_right_instruction_around_effects() -> None:
    trace = [0, 1, 2, 3] + [4, 5, 6, 7, 8, 9, 10, 11] * 3 + [4, 5, 12]
    vm = Interpreter(assemble(SELF))
    for limit in range(len(trace) + 1):
        frames = [vm.frame(0, ())]
        fuel = Fuel(limit)
        outcome = vm.run(frames, fuel)
        while isinstance(outcome, Vis):
            frames[-1].regs[outcome.dst] = 0
            outcome = vm.run(frames, fuel)
        assert fuel.used == limit
        if limit < len(trace):
            assert isinstance(outcome, Fault) and outcome.pc == trace[limit], limit
        else:
            assert isinstance(outcome, Ret)


@pytest.mark.parametrize("fns", [[COUNTDOWN], EVEN_ODD])
def test_fuel_counts_every_instruction_across_calls(fns: list[Fn]) -> None:
    vm = Interpreter(assemble(*fns))
    fuel = Fuel(10**6)
    outcome = vm.run([vm.frame(0, (20,))], fuel)
    assert isinstance(outcome, Ret)
    steps = 20 * 7 + 5  # seven per level, five at the bottom
    assert fuel.used == steps
    for limit in range(steps):
        fuel = Fuel(limit)
        fault = vm.run([vm.frame(0, (20,))], fuel)
        assert isinstance(fault, Fault) and fault.error.kind is ErrorKind.FUEL_EXHAUSTED
        assert fuel.remaining == 0


def test_failing_instruction_costs_fuel() -> None:
    code = [
        ("TRY", 1, "h"),
        ("LOADK", 2, 0),
        ("DIV", 3, 0, 2),  # fails: the rest of its block is not paid for
        ("LOADK", 3, 1),
        ("RET", 3),
        "h:",
        ("LOADK", 2, "!"),
        ("CONCAT", 1, 1, 2),
        ("RET", 1),
    ]
    vm = Interpreter(assemble(Fn("f", code, params=1)))
    # TRY, LOADK, DIV (failed), then the handler's three, and CONCAT's size charge
    steps = 6 + len("division by zero: 1 / 0!") // SIZE_UNIT
    for limit in range(steps + 3):
        fuel = Fuel(limit)
        outcome = vm.run([vm.frame(0, (1,))], fuel)
        if limit < steps:
            assert isinstance(outcome, Fault) and fuel.remaining == 0, limit
            assert outcome.error.kind is ErrorKind.FUEL_EXHAUSTED
        else:
            assert outcome == Ret("division by zero: 1 / 0!")
            assert fuel.used == steps


# -- effects


SELF = Fn(  # main: [self, input] through two EFFECTs in a loop of three rounds
    "main",
    [
        ("LOADK", 0, ()),
        ("LOADK", 1, 0),
        ("LOADK", 2, 3),
        ("LOADK", 4, 1),
        "loop:",
        ("EQ", 3, 1, 2),
        ("JMPT", 3, "done"),
        ("EFFECT", 5, "self", ()),
        ("EFFECT", 6, "input", ()),
        ("MKPAIR", 5, 5, 6),
        ("APPEND", 0, 0, 5),
        ("ADD", 1, 1, 4),
        ("JMP", "loop"),
        "done:",
        ("RET", 0),
    ],
    kind=MAIN,
    regs="LNNBNAA",
)


def test_effects_suspend_and_resume() -> None:
    vm = Interpreter(assemble(SELF))
    frames = [vm.frame(0, ())]
    fuel = Fuel(1000)
    answers = iter(range(100, 106))
    outcome = vm.run(frames, fuel)
    seen = []
    while isinstance(outcome, Vis):
        seen.append((outcome.instruction, outcome.args, outcome.dst, frames[-1].pc))
        frames[-1].regs[outcome.dst] = next(answers)
        outcome = vm.run(frames, fuel)
    assert seen == [(4, (), 5, 7), (5, (), 6, 8)] * 3
    assert isinstance(outcome, Ret)
    assert [(p.first, p.second) for p in outcome.value] == [(100, 101), (102, 103), (104, 105)]
    assert frames == []
    assert fuel.used == 4 + 3 * 8 + 3


def test_effect_arguments() -> None:
    code = [("LOADK", 0, "B"), ("LOADK", 1, NOTHING), ("EFFECT", 2, "create_obj", (0, 1)),
            ("RET", 2)]  # fmt: skip
    vm = Interpreter(assemble(Fn("main", code, kind=MAIN)))
    frames = [vm.frame(0, ())]
    outcome = vm.run(frames, Fuel(10))
    assert outcome == Vis(0, ("B", NOTHING), 2)
    frames[-1].regs[2] = ObjectRef(9)
    assert vm.run(frames, Fuel(10)) == Ret(ObjectRef(9))


CATCHER = [
    Fn("ask", [("EFFECT", 0, "entropy", ()), ("RET", 0)], regs="A"),
    Fn(
        "main",
        [("TRY", 0, "caught"), ("CALL", 1, "ask", ()), ("ENDTRY",), ("RET", 1), "caught:",
         ("RET", 0)],
        kind=MAIN,
        line=20,
    ),
]  # fmt: skip


def test_throw_reaches_a_handler_across_a_callee_frame() -> None:
    vm = Interpreter(assemble(*CATCHER))
    frames = [vm.frame(1, ())]
    fuel = Fuel(100)
    assert vm.run(frames, fuel) == Vis(BY_NAME["entropy"].number, (), 0)
    assert len(frames) == 2
    error = vm_error(ErrorKind.TYPE_MISMATCH, "no entropy today")
    assert vm.throw(frames, error, fuel) == Ret("no entropy today")
    assert fuel.used == 4  # TRY, CALL, EFFECT, RET


def test_throw_without_handler_faults_at_the_effect() -> None:
    vm = Interpreter(assemble(*CATCHER))
    frames = [vm.frame(0, ())]
    assert isinstance(vm.run(frames, Fuel(100)), Vis)
    error = AvmError(ErrorKind.OBJ_NOT_FOUND, id=3)
    fault = vm.throw(frames, error, Fuel(100))
    assert fault == Fault(error, "ask", 0, 1, 1)


def test_throw_of_a_fatal_error_skips_handlers() -> None:
    vm = Interpreter(assemble(*CATCHER))
    frames = [vm.frame(1, ())]
    assert isinstance(vm.run(frames, Fuel(100)), Vis)
    error = AvmError(ErrorKind.FUEL_EXHAUSTED, steps=7)
    fault = vm.throw(frames, error, Fuel(100))
    assert isinstance(fault, Fault) and fault.error is error and fault.function == "ask"


def test_a_nested_run_during_an_effect_shares_the_fuel() -> None:
    vm = Interpreter(assemble(*CATCHER, SUM_TO))
    frames = [vm.frame(1, ())]
    fuel = Fuel(1000)
    assert isinstance(vm.run(frames, fuel), Vis)  # TRY, CALL, EFFECT
    assert vm.call_function(2, (4,), fuel) == 6  # 3 + 20 + 3 steps
    frames[-1].regs[0] = 5
    assert vm.run(frames, fuel) == Ret(5)
    assert fuel.used == 3 + 26 + 3  # then RET, ENDTRY, RET


def test_call_function() -> None:
    vm = Interpreter(assemble(COUNTDOWN, *CATCHER))
    assert vm.call_function(0, (10,), Fuel(1000)) == "done"
    with pytest.raises(AvmError) as caught:
        vm.call_function(0, (10,), Fuel(10))
    assert caught.value.kind is ErrorKind.FUEL_EXHAUSTED
    with pytest.raises(AvmError) as caught:
        vm.call_function(1, (), Fuel(10))  # performs an effect
    assert caught.value.kind is ErrorKind.TYPE_MISMATCH
