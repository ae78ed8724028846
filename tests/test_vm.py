"""The VM's control: frames, jumps, calls, depth, TRY, fault locations and translation."""

from __future__ import annotations

import pytest
from vm_asm import COUNTDOWN, EVEN_ODD, SUM_TO, Fn, assemble, run

from avm_vm.errors import ErrorKind
from avm_vm.format.opcodes import Op, RegType
from avm_vm.format.program import FunctionKind
from avm_vm.values import NOTHING, Just, ObjectRef
from avm_vm.vm.interpreter import Fault, Frame, Fuel, Interpreter, Ret

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


def test_self_call_passes_arguments_simultaneously() -> None:
    # swap(a, b, n) = if n == 0 then [a, b] else swap(b, a, n - 1)
    code = [
        ("LOADK", 3, 0),
        ("EQ", 4, 2, 3),
        ("JMPF", 4, "recurse"),
        ("MKLIST", 5, (0, 1)),
        ("RET", 5),
        "recurse:",
        ("LOADK", 3, 1),
        ("SUB", 5, 2, 3),
        ("CALL", 5, "swap", (1, 0, 5)),
        ("RET", 5),
    ]
    program = assemble(Fn("swap", code, params=3, regs="AAANBA"))
    assert run(program, "swap", "a", "b", 3) == Ret(("b", "a"))
    assert run(program, "swap", "a", "b", 4) == Ret(("a", "b"))


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
