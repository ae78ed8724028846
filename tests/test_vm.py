"""The VM's control: jumps, calls, TRY, effects, fuel, depth and fault locations."""

from __future__ import annotations

import pytest
from vm_asm import Fn, assemble, run

from avm_vm.errors import AvmError, ErrorKind, vm_error
from avm_vm.instructions import BY_NAME
from avm_vm.opcodes import Op, RegType
from avm_vm.program import FunctionKind
from avm_vm.values import NOTHING, Just, ObjectRef
from avm_vm.vm import Fault, Frame, Fuel, Interpreter, Ret, Vis

MAIN = FunctionKind.MAIN


def test_frame_starts_from_initial_values() -> None:
    vm = Interpreter(assemble(Fn("f", [("RET", 0)], params=1, regs="ANBSL")))
    frame = vm.frame(0, (ObjectRef(1),))
    assert isinstance(frame, Frame)
    assert frame.regs == [ObjectRef(1), 0, False, "", ()]
    assert (frame.pc, frame.handlers, frame.result_reg) == (0, [], None)
    assert frame.function.function is vm.program.functions[0]
    assert frame.function.name == "f"
    assert type(frame.regs[2]) is bool
    with pytest.raises(ValueError, match="takes 1 arguments, not 0"):
        vm.frame(0, ())


# -- jumps and conditions

SUM_TO = Fn(  # sum of 0 .. n-1: 3 + 5n + 3 instructions
    "sum",
    [
        ("LOADK", 1, 0),
        ("LOADK", 2, 0),
        ("LOADK", 4, 1),
        "loop:",
        ("LT", 3, 2, 0),
        ("JMPF", 3, "done"),
        ("ADD", 1, 1, 2),
        ("ADD", 2, 2, 4),
        ("JMP", "loop"),
        "done:",
        ("RET", 1),
    ],
    params=1,
    regs="ANNBN",
)


def test_loop() -> None:
    assert run(assemble(SUM_TO), "sum", 100) == Ret(4950)


@pytest.mark.parametrize("regs", ["A", "B"])
def test_conditional_jumps(regs: str) -> None:
    # JMPT and JMPF on a bool register; both branches taken and not taken.
    code = [
        ("JMPT", 0, "yes"),
        ("LOADK", 1, "f"),
        ("JMPF", 0, "out"),
        ("LOADK", 1, "never"),
        "yes:",
        ("LOADK", 1, "t"),
        "out:",
        ("RET", 1),
    ]
    program = assemble(Fn("f", [("LOADK", 0, True), *code], regs=regs + "A"))
    assert run(program, "f") == Ret("t")
    program = assemble(Fn("f", [("LOADK", 0, False), *code], regs=regs + "A"))
    assert run(program, "f") == Ret("f")


@pytest.mark.parametrize("op", ["JMPT", "JMPF"])
def test_condition_must_be_a_bool(op: str) -> None:
    program = assemble(Fn("f", [(op, 0, "end"), "end:", ("RET", 0)], params=1))
    for value, found in [(1, "a nat"), (NOTHING, "nothing"), ((), "a list")]:
        fault = run(program, "f", value)
        assert isinstance(fault, Fault)
        assert fault.error.kind is ErrorKind.TYPE_MISMATCH
        assert fault.error.message == f"condition must be a bool, found {found}"
        assert fault.pc == 0


def test_many_blocks_dispatch() -> None:
    # 60 blocks visited out of order exercise every level of the dispatch tree.
    order = [(7 * i) % 60 for i in range(60)]  # a permutation of 0..59
    code: list[tuple | str] = [("LOADK", 0, ()), ("JMP", f"b{order[0]}")]
    for block in range(60):
        position = order.index(block)
        target = f"b{order[position + 1]}" if position + 1 < 60 else "end"
        code += [f"b{block}:", ("LOADK", 1, block), ("APPEND", 0, 0, 1), ("JMP", target)]
    code += ["end:", ("RET", 0)]
    assert run(assemble(Fn("f", code)), "f") == Ret(tuple(order))


# -- calls

COUNTDOWN = Fn(  # countdown(n) = if n == 0 then "done" else countdown(n - 1)
    "countdown",
    [
        ("LOADK", 1, 0),
        ("EQ", 2, 0, 1),
        ("JMPF", 2, "recurse"),
        ("LOADK", 3, "done"),
        ("RET", 3),
        "recurse:",
        ("LOADK", 1, 1),
        ("SUB", 3, 0, 1),
        ("CALL", 3, "countdown", (3,)),
        ("RET", 3),
    ],
    params=1,
    regs="ANBA",
)


def test_deep_recursion_uses_frames_not_the_python_stack() -> None:
    assert run(assemble(COUNTDOWN), "countdown", 50_000, max_frames=100_000) == Ret("done")


def test_depth_limit() -> None:
    vm = Interpreter(assemble(COUNTDOWN))
    frames = [vm.frame(0, (50_000,))]
    fault = vm.run(frames, Fuel(10**7), max_frames=1000)
    assert isinstance(fault, Fault)
    assert fault.error.kind is ErrorKind.DEPTH_EXCEEDED
    assert fault.error.message == "call depth limit of 1000 exceeded"
    assert (fault.function, fault.pc) == ("countdown", 7)
    assert len(frames) == 1000  # left as they were: the CALL that failed is on top
    assert frames[-1].pc == 7
    assert run(assemble(COUNTDOWN), "countdown", 999, max_frames=1000) == Ret("done")
    assert isinstance(run(assemble(COUNTDOWN), "countdown", 1000, max_frames=1000), Fault)


EVEN_ODD = [  # mutual recursion: the calls between two functions go through the trampoline
    Fn(
        name,
        [
            ("LOADK", 1, 0),
            ("EQ", 2, 0, 1),
            ("JMPF", 2, "recurse"),
            ("LOADK", 3, name == "even"),
            ("RET", 3),
            "recurse:",
            ("LOADK", 1, 1),
            ("SUB", 3, 0, 1),
            ("CALL", 3, other, (3,)),
            ("RET", 3),
        ],
        params=1,
        regs="ANBA",
    )
    for name, other in [("even", "odd"), ("odd", "even")]
]


def test_mutual_recursion() -> None:
    assert run(assemble(*EVEN_ODD), "even", 30_001) == Ret(False)
    assert run(assemble(*EVEN_ODD), "odd", 30_001) == Ret(True)


@pytest.mark.parametrize("callee", ["self", "other"])
def test_call_keeps_caller_registers(callee: str) -> None:
    # f(n): if n == 0 return [] else [n, f(n-1)..., n]: registers survive the call.
    body = [
        ("LOADK", 1, 0),
        ("EQ", 2, 0, 1),
        ("JMPF", 2, "recurse"),
        ("LOADK", 3, ()),
        ("RET", 3),
        "recurse:",
        ("LOADK", 1, 1),
        ("SUB", 3, 0, 1),
        ("MKLIST", 4, (0,)),
        ("CALL", 3, "f" if callee == "self" else "g", (3,)),
        ("CONCAT", 4, 4, 3),
        ("MKLIST", 3, (0,)),
        ("CONCAT", 4, 4, 3),
        ("RET", 4),
    ]
    f = Fn("f", body, params=1, regs="ANBAA")
    g = Fn("g", [("CALL", 0, "f", (0,)), ("RET", 0)], params=1)
    assert run(assemble(f, g), "f", 3) == Ret((3, 2, 1, 1, 2, 3))


def test_call_with_several_arguments() -> None:
    sub = Fn("sub", [("SUB", 2, 0, 1), ("RET", 2)], params=2)
    main = Fn(
        "main",
        [("LOADK", 0, 10), ("LOADK", 1, 3), ("CALL", 2, "sub", (1, 0)), ("RET", 2)],
        kind=MAIN,
    )
    fault = run(assemble(sub, main), "main")
    assert isinstance(fault, Fault) and fault.error.message == "nat underflow: 3 - 10"
    main.code[2] = ("CALL", 2, "sub", (0, 1))
    assert run(assemble(sub, main), "main") == Ret(7)


# -- failures, TRY and fault locations


def test_fault_location() -> None:
    inner = Fn("inner", [("LOADK", 1, 0), ("DIV", 2, 0, 1), ("RET", 2)], params=1, line=40)
    outer = Fn("outer", [("LOADK", 0, 5), ("CALL", 0, "inner", (0,)), ("RET", 0)], line=10)
    vm = Interpreter(assemble(inner, outer))
    frames = [vm.frame(1, ())]
    fault = vm.run(frames, Fuel(100))
    assert fault == Fault(fault.error, "inner", 1, 41, 2)  # type: ignore[union-attr]
    assert fault.error.kind is ErrorKind.ARITHMETIC  # type: ignore[union-attr]
    assert [(f.function.name, f.pc) for f in frames] == [("outer", 2), ("inner", 1)]
    assert frames[-1].regs[:2] == [5, 0]


def test_fail_with_any_value() -> None:
    code = [("LOADK", 0, (1, "a")), ("FAIL", 0)]
    fault = run(assemble(Fn("f", code)), "f")
    assert isinstance(fault, Fault)
    assert (fault.error.kind, fault.error.message) == (ErrorKind.FAILED, '[1, "a"]')
    assert (fault.pc, fault.line) == (1, 2)


def test_try_catches_and_endtry_pops() -> None:
    code = [
        ("TRY", 1, "handler"),
        ("LOADK", 2, "boom"),
        ("JMPF", 0, "skip"),
        ("FAIL", 2),
        "skip:",
        ("ENDTRY",),
        ("LOADK", 2, "after"),
        ("FAIL", 2),
        "handler:",
        ("MKJUST", 1, 1),
        ("RET", 1),
    ]
    program = assemble(Fn("f", code, params=1, regs="AAA"))
    assert run(program, "f", True) == Ret(Just("boom"))
    fault = run(program, "f", False)  # the handler was popped: "after" is not caught
    assert isinstance(fault, Fault) and fault.error.message == "after" and fault.pc == 6


def test_nested_try_and_registers_seen_by_the_handler() -> None:
    code = [
        ("TRY", 1, "outer"),
        ("TRY", 1, "inner"),
        ("LOADK", 3, 7),
        ("ADD", 2, 0, 0),  # fails: nat overflow
        ("RET", 2),
        "inner:",
        ("MKLIST", 2, (1, 3)),  # the handler sees r3 written before the error
        ("FAIL", 2),  # caught by the outer handler
        "outer:",
        ("RET", 1),
    ]
    program = assemble(Fn("f", code, params=1, regs="ASAA"))
    assert run(program, "f", 2**63) == Ret(
        '["nat overflow: 9223372036854775808 + 9223372036854775808", 7]'
    )


def test_endtry_without_try() -> None:
    fault = run(assemble(Fn("f", [("ENDTRY",), ("RET", 0)], regs="A")), "f")
    assert isinstance(fault, Fault)
    assert fault.error.kind is ErrorKind.TYPE_MISMATCH and fault.pc == 0


def test_try_catches_a_pure_callee_failure_across_frames() -> None:
    # The callee recurses before failing: every frame above the handler's is popped.
    down = Fn(
        "down",
        [
            ("LOADK", 1, 0),
            ("EQ", 2, 0, 1),
            ("JMPF", 2, "recurse"),
            ("FAIL", 0),
            "recurse:",
            ("LOADK", 1, 1),
            ("SUB", 3, 0, 1),
            ("CALL", 3, "down", (3,)),
            ("RET", 3),
        ],
        params=1,
        regs="ANBA",
    )
    main = Fn(
        "main",
        [("TRY", 0, "caught"), ("LOADK", 1, 100), ("CALL", 1, "down", (1,)), "caught:", ("RET", 0)],
        kind=MAIN,
    )
    vm = Interpreter(assemble(down, main))
    frames = [vm.frame(1, ())]
    assert vm.run(frames, Fuel(10**5)) == Ret("0")
    assert frames == []


def test_fatal_errors_skip_handlers() -> None:
    main = Fn(
        "main",
        [("TRY", 0, "caught"), ("LOADK", 1, 100), ("CALL", 1, "countdown", (1,)), "caught:",
         ("RET", 0)],
        kind=MAIN,
    )  # fmt: skip
    fault = run(assemble(COUNTDOWN, main), "main", max_frames=50)
    assert isinstance(fault, Fault) and fault.error.kind is ErrorKind.DEPTH_EXCEEDED
    fault = run(assemble(COUNTDOWN, main), "main", fuel=200)
    assert isinstance(fault, Fault) and fault.error.kind is ErrorKind.FUEL_EXHAUSTED


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
    code = [("TRY", 1, "h"), ("LOADK", 2, 0), ("DIV", 3, 0, 2), ("RET", 3), "h:", ("RET", 1)]
    vm = Interpreter(assemble(Fn("f", code, params=1)))
    fuel = Fuel(100)
    assert vm.run([vm.frame(0, (1,))], fuel) == Ret("division by zero: 1 / 0")
    assert fuel.used == 4  # TRY, LOADK, DIV (failed), RET


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


# -- translation


def test_typed_registers_skip_kind_checks() -> None:
    vm = Interpreter(assemble(SUM_TO))
    source = vm.procs[0].source()
    assert "type(r1)" not in source and "type(r2)" not in source  # NAT registers
    assert "type(r0) is int" in source  # the ANY parameter is checked


def test_only_ints_reach_the_generated_source() -> None:
    program = assemble(Fn("f", [("LOADK", 0, "x"), ("RET", 0)]))
    function = program.functions[0]
    bad = type(function)(
        function.name, function.kind, 0, (RegType.ANY,), ((Op.RET, "0; import os"),), ((1, 1),)
    )
    vm = Interpreter(type(program)("x", (), (bad,), (), None))
    with pytest.raises(ValueError, match="bad operand"):
        vm.run([vm.frame(0, ())], Fuel(10))
