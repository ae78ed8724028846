"""The bytecode writer's shortcuts give exactly the per-operand encoding, and the assembler's
renaming of registers gives exactly the program of the register-allocated IR.

`encode` writes each distinct op of the narrow functions once and reuses its bytes, across
the functions of a program; wide functions go operand by operand through the letters of each
opcode. Passing `_code` a constant writer that is not `_varint` turns the shortcut off,
which gives the reference bytes. The line table's common runs are written in one step: the
result must be the per-number varints.
"""

from __future__ import annotations

import pytest
from program_corpus import programs
from test_bytecode import every_opcode_program

from avm_vm.diagnostics import DiagnosticError
from avm_vm.format.bytecode import _code, _lines, _NarrowCode, _same, _varint
from avm_vm.format.opcodes import Op, RegType
from avm_vm.format.program import Function, FunctionKind
from avm_vm.format.verify import WIDE_ABOVE
from avm_vm.values import Value
from avmc.assemble import assemble
from avmc.compiler import build


def per_operand(out: bytearray, value: Value) -> None:
    _varint(out, value)  # type: ignore[arg-type]


def both(function: Function, narrow: _NarrowCode | None = None) -> tuple[bytes, bytes]:
    fast, reference = bytearray(), bytearray()
    _code(fast, function, _varint, _same, narrow)
    _code(reference, function, per_operand, _same)
    return bytes(fast), bytes(reference)


@pytest.mark.slow  # the per-opcode tests below cover the encoders in the default run
def test_every_program_of_the_repository() -> None:
    checked = 0
    for name, source in programs().items():
        try:
            program = build(source, name).program
        except DiagnosticError:
            continue
        narrow = _NarrowCode()  # shared by the program's functions, as `encode` does
        for function in program.functions:
            fast, reference = both(function, narrow)
            assert fast == reference, (name, function.name)
            checked += 1
    assert checked > 100


def test_every_opcode() -> None:
    narrow = _NarrowCode()
    for function in every_opcode_program().functions:
        assert both(function) == both(function, narrow), function.name
        fast, reference = both(function, narrow)
        assert fast == reference, function.name


def test_ops_reused_across_narrow_and_wide_functions() -> None:
    """One op in a narrow and then a wide function: the narrow bytes are not reused where
    registers take two bytes."""
    code = ((Op.LOADK, 1, 2), (Op.RET, 1))
    narrow_fn, wide_fn = (
        Function("f", FunctionKind.PURE, 0, (RegType.ANY,) * n, code, ((1, 1),) * 2)
        for n in (3, WIDE_ABOVE + 1)
    )
    narrow = _NarrowCode()
    assert both(narrow_fn, narrow)[0] == bytes([Op.LOADK, 1, 2, Op.RET, 1])
    fast, reference = both(wide_fn, narrow)
    assert fast == reference == bytes([Op.LOADK, 1, 0, 2, Op.RET, 1, 0])


def _per_number_lines(lines: tuple[tuple[int, int], ...]) -> bytes:
    runs: list[list] = []
    for position in lines:
        if runs and runs[-1][1] == position:
            runs[-1][0] += 1
        else:
            runs.append([1, position])
    out = bytearray()
    _varint(out, len(runs))
    for count, (line, column) in runs:
        for number in (count, line, column):
            _varint(out, number)
    return bytes(out)


@pytest.mark.parametrize("line", [0, 1, 0x7F, 0x80, 0x3FFF, 0x4000, 2**32 - 1])
@pytest.mark.parametrize("column", [0, 0x7F, 0x80])
@pytest.mark.parametrize("repeat", [1, 0x7F, 0x80, 0x100])
def test_line_runs_match_the_per_number_encoding(line: int, column: int, repeat: int) -> None:
    lines = ((line, column),) * repeat + ((line, column + 1),) + ((line, column),) * 2
    out = bytearray()
    _lines(out, lines)
    assert bytes(out) == _per_number_lines(lines)
    empty = bytearray()
    _lines(empty, ())
    assert bytes(empty) == _per_number_lines(()) == b"\x00"


@pytest.mark.parametrize("nregs", [3, 0x7F, 0x80, 0xFF, WIDE_ABOVE, WIDE_ABOVE + 1])
@pytest.mark.parametrize("number", [0, 1, 0x7F, 0x80, 0xFF, 0x100, 0x3FFF, 0x4000])
def test_numbers_on_either_side_of_one_byte(nregs: int, number: int) -> None:
    """Registers, constants, jump targets and counts around the one-byte limits, in narrow
    and wide functions."""
    reg = min(number, nregs - 1)
    code = (
        (Op.LOADK, reg, number),
        (Op.MOVE, 0, reg),
        (Op.JMP, number),
        (Op.MKLIST, 0, (reg, 0, reg)),
        (Op.RET, reg),
    )
    function = Function(
        "f", FunctionKind.PURE, 0, (RegType.ANY,) * nregs, code, ((1, 1),) * len(code)
    )
    fast, reference = both(function)
    assert fast == reference


@pytest.mark.parametrize("optimize", [True, False])
def test_renaming_while_assembling_matches_the_allocated_ir(optimize: bool) -> None:
    """The compiler assembles the IR over virtual registers with each function's allocation;
    the same IR renamed first (`Compilation.ir`, by `allocate_program`) must assemble to the
    very same program."""
    checked = 0
    for name, source in programs().items():
        try:
            compilation = build(source, name, optimize_ir=optimize)
        except DiagnosticError:
            continue
        assert assemble(compilation.ir) == compilation.program, name
        checked += 1
    assert checked > 100
