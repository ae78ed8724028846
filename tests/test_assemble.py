"""Assembly of IR into the loaded-program form: layout, operands, constants, line table."""

from __future__ import annotations

import pytest

from avm_vm.diagnostics import Span
from avm_vm.format.opcodes import OPCODES, Op, RegType
from avm_vm.format.program import FunctionKind, Program
from avm_vm.values import NOTHING, Just, Pair, values_equal
from avmc.assemble import assemble
from avmc.ir import BasicBlock, IrBehavior, IrFunction, IrInstr, IrProgram
from avmc.lower import lower
from avmc.parser import parse
from avmc.passes import optimize
from avmc.regalloc import allocate_program
from avmc.types import infer_program_types

SOURCE = """
behavior Counter {
  field count = 0
  on ["inc"] { count += 1; return count }
  on ["is", n] { return count == n }
}
fn fib(n) { if n < 2 { return n } return fib(n - 1) + fib(n - 2) }
fn flags() { return [1, true, 1, true, [1], [true], just 1, just true, (1, true)] }
main {
  let c = create Counter
  let i = 0
  while i < 3 { call(c, ["inc"]) i += 1 }
  atomic { call(c, ["inc"]) } else (e) { return e }
  return [call!(c, ["is", 4]), fib(10), flags()]
}
"""


def compile_source(source: str = SOURCE, optimized: bool = True) -> Program:
    program = lower(parse(source, "t.avm"), "t.avm")
    if optimized:
        program = optimize(program)
    return assemble(allocate_program(infer_program_types(program)))


@pytest.mark.parametrize("optimized", [False, True])
def test_code_invariants(optimized: bool) -> None:
    program = compile_source(optimized=optimized)
    for function in program.functions:
        code = function.code
        assert code, function.name
        last = OPCODES[code[-1][0]]
        assert last.ends_block, f"{function.name} can run off its end"
        assert len(function.lines) == len(code)
        for instr in code:
            info = OPCODES[instr[0]]
            assert len(instr) == 1 + len(info.operands)
            for letter, operand in zip(info.operands, instr[1:], strict=True):
                if letter == "J":
                    assert 0 <= operand < len(code)
                elif letter == "R":
                    assert 0 <= operand < function.nregs
                elif letter == "L":
                    assert all(0 <= r < function.nregs for r in operand)
                elif letter == "K":
                    assert 0 <= operand < len(program.constants)
                elif letter == "F":
                    assert 0 <= operand < len(program.functions)


def test_functions_behaviors_and_main_are_indexed() -> None:
    program = compile_source()
    names = [f.name for f in program.functions]
    assert names == ["Counter", "fib", "flags", "main"]
    assert program.main == 3
    [counter] = program.behaviors
    assert (counter.name, counter.function, counter.fields) == ("Counter", 0, ("count",))
    fib = program.function_named("fib")
    assert fib is not None and fib.kind is FunctionKind.PURE and fib.nparams == 1
    calls = [i for i in fib.code if i[0] is Op.CALL]
    assert calls and all(i[2] == 1 for i in calls)


def test_constants_are_pooled_kind_exactly() -> None:
    values = [1, True, 1, (1,), (True,), (1,), Just(1), Just(True), Pair(1, True), Pair(True, 1)]
    values += [True, 0, False, "", (), NOTHING, Pair(True, 1), 0]
    loads = [I(Op.LOADK, 1, value) for value in values]
    program = assemble(IrProgram("t.avm", [_function([*loads, I(Op.RET, 1)])], [], None))
    pool = program.constants
    assert len(pool) == 13
    for a in range(len(pool)):
        for b in range(a + 1, len(pool)):
            assert not values_equal(pool[a], pool[b])
    code = program.functions[0].code
    for value, instr in zip(values, code, strict=False):
        assert values_equal(pool[instr[2]], value)
    assert type(pool[code[1][2]]) is bool and type(pool[code[0][2]]) is int


def test_constants_of_a_compiled_program_are_distinct() -> None:
    pool = compile_source(optimized=False).constants
    assert any(type(c) is bool and c for c in pool) and 1 in [c for c in pool if type(c) is int]
    for a in range(len(pool)):
        for b in range(a + 1, len(pool)):
            assert not values_equal(pool[a], pool[b])


def test_register_types_and_parameters() -> None:
    program = compile_source()
    for function in program.functions:
        assert all(isinstance(t, RegType) for t in function.reg_types)
        assert function.nregs >= function.nparams
        assert all(function.reg_types[p] is RegType.ANY for p in range(function.nparams))
    main = program.function_named("main")
    assert main is not None
    for instr in main.code:  # LOADK writes a register of the constant's type or ANY
        if instr[0] is Op.LOADK:
            kind = main.reg_types[instr[1]]
            value = program.constants[instr[2]]
            assert kind is RegType.ANY or kind is {
                int: RegType.NAT,
                bool: RegType.BOOL,
                str: RegType.STR,
                tuple: RegType.LIST,
            }.get(type(value))


def test_line_table_follows_the_source() -> None:
    fib = compile_source().function_named("fib")
    assert fib is not None
    assert all(line == 7 for line, _ in fib.lines)
    assert all(col > 0 for _, col in fib.lines)


def _function(*blocks: list[IrInstr]) -> IrFunction:
    return IrFunction(
        "f",
        FunctionKind.PURE,
        1,
        [BasicBlock(label * 10, list(instrs)) for label, instrs in enumerate(blocks)],
        {0: RegType.ANY, 1: RegType.NAT},
    )


def I(op: Op, *operands: object, line: int = 0) -> IrInstr:  # noqa: E743
    return IrInstr(op, tuple(operands), Span("t.avm", line, 2) if line else None)


def _assemble(function: IrFunction) -> tuple:
    return assemble(IrProgram("t.avm", [function], [], None)).functions[0].code


def test_jump_to_the_next_block_is_dropped_and_branches_inverted() -> None:
    code = _assemble(
        _function(
            [I(Op.JMP, 10)],
            [I(Op.JMPT, 0, 20), I(Op.JMP, 30)],  # next block is the taken side: invert
            [I(Op.LOADK, 1, 1), I(Op.RET, 1)],
            [I(Op.JMPF, 0, 20), I(Op.JMP, 40)],  # next block is the fall-through: drop
            [I(Op.RET, 0)],
        )
    )
    assert code == (
        (Op.JMPF, 0, 3),
        (Op.LOADK, 1, 0),
        (Op.RET, 1),
        (Op.JMPF, 0, 1),
        (Op.RET, 0),
    )


def test_last_block_keeps_its_jump() -> None:
    code = _assemble(_function([I(Op.JMP, 10)], [I(Op.JMP, 0)]))
    assert code == ((Op.JMP, 0),)
    code = _assemble(
        _function([I(Op.LOADK, 1, 2), I(Op.JMP, 10)], [I(Op.JMPT, 0, 0), I(Op.JMP, 0)])
    )
    assert code[-1][0] is Op.JMP and code[-1][1] == 0


def test_lines_of_instructions_without_a_span_are_unknown() -> None:
    program = assemble(
        IrProgram(
            "t.avm",
            [_function([I(Op.LOADK, 1, NOTHING, line=4), I(Op.RET, 1)])],
            [IrBehavior("B", "f", ("x",))],
            "f",
        )
    )
    function = program.functions[0]
    assert function.lines == ((4, 2), (0, 0))
    assert function.reg_types == (RegType.ANY, RegType.NAT)
    assert program.behaviors[0].function == 0 and program.main == 0
    assert program.source_name == "t.avm"
