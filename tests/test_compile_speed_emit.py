"""The bytecode writer's shortcut gives exactly the per-operand encoding, and the assembler's
renaming of registers gives exactly the program of the register-allocated IR.

`encode` writes an op of a narrow function without a register list, whose numbers are all
below 0x80, as its own bytes; every other op goes operand by operand through the letters of
its opcode. Passing `_code` a constant writer that is not `_varint` turns the shortcut off,
which gives the reference bytes.
"""

from __future__ import annotations

import pytest
from program_corpus import programs
from test_bytecode import every_opcode_program

from avm_vm.diagnostics import DiagnosticError
from avm_vm.format.bytecode import _code, _same, _varint
from avm_vm.format.opcodes import Op, RegType
from avm_vm.format.program import Function, FunctionKind
from avm_vm.format.verify import WIDE_ABOVE
from avm_vm.values import Value
from avmc.assemble import assemble
from avmc.compiler import build


def per_operand(out: bytearray, value: Value) -> None:
    _varint(out, value)  # type: ignore[arg-type]


def both(function: Function) -> tuple[bytes, bytes]:
    fast, reference = bytearray(), bytearray()
    _code(fast, function, _varint, _same)
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
        for function in program.functions:
            fast, reference = both(function)
            assert fast == reference, (name, function.name)
            checked += 1
    assert checked > 100


def test_every_opcode() -> None:
    for function in every_opcode_program().functions:
        fast, reference = both(function)
        assert fast == reference, function.name


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
