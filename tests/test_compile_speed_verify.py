"""The verifier's quick path gives exactly the verdict of its full checks.

`check_code` accepts an op of scalar operands without a rule of its own straight away when
each operand is an int within its bound and the register type rule holds; anything else goes
through `_operand_problem` and `rule_problem`. Emptying `_QUICK` sends every instruction the
full way, which gives the reference verdict: for programs broken one operand, one opcode or
one register type at a time, both must raise the same error (or none).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_bytecode import every_opcode_program

from avm_vm.format import verify as verifier
from avm_vm.format.opcodes import RegType
from avm_vm.format.program import Function, Program
from avm_vm.format.verify import TapeError, verify
from avmc.compiler import build

# Operands around every bound a small program has, and values of the wrong Python type.
ODD_OPERANDS = (-1, 0, 1, 2, 3, 5, 6, 35, 36, 37, 255, 256, 2**64 - 1, 2**64)
WRONG_TYPES = (True, False, 1.5, None, "r1", (0,), ())


def verdict(program: Program) -> str | None:
    try:
        verify(program)
    except TapeError as error:
        return str(error)
    return None


def with_code(program: Program, index: int, function: Function, pc: int, instr: object) -> Program:
    code = (*function.code[:pc], instr, *function.code[pc + 1 :])
    functions = list(program.functions)
    functions[index] = function._replace(code=code)
    return program._replace(functions=tuple(functions))


def with_type(program: Program, index: int, reg: int, reg_type: RegType) -> Program:
    function = program.functions[index]
    types = list(function.reg_types)
    types[reg] = reg_type
    functions = list(program.functions)
    functions[index] = function._replace(reg_types=tuple(types))
    return program._replace(functions=tuple(functions))


def broken(program: Program) -> Iterator[Program]:
    """``program`` with one instruction or one register type changed, every way in turn."""
    for index, function in enumerate(program.functions):
        for pc, instr in enumerate(function.code):
            for i in range(1, len(instr)):
                for odd in (*ODD_OPERANDS, *WRONG_TYPES):
                    changed = (*instr[:i], odd, *instr[i + 1 :])
                    yield with_code(program, index, function, pc, changed)
            yield with_code(program, index, function, pc, (int(instr[0]), *instr[1:]))
            yield with_code(program, index, function, pc, instr[:-1])
            yield with_code(program, index, function, pc, (*instr, 0))
            yield with_code(program, index, function, pc, list(instr))
        for reg in range(len(function.reg_types)):
            for reg_type in RegType:
                yield with_type(program, index, reg, reg_type)


def compiled() -> Program:
    source = """
    fn f(a, b) { let x = a + 1; if x > b { return [x, "s", just b] } return (x, true) }
    behavior Counter { field count = 0
      on ["inc", n] { count += n; return f(count, n) } on _ { fail "no" } }
    main { let c = create Counter; return call!(c, ["inc", 2]) }
    """
    return build(source, "t.avm").program


@pytest.mark.parametrize("make", [every_opcode_program, compiled], ids=["opcodes", "compiled"])
def test_quick_path_agrees_with_the_full_checks(
    make: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    programs = list(broken(make()))  # type: ignore[operator]
    quick = [verdict(program) for program in programs]
    monkeypatch.setattr(verifier, "_QUICK", {})
    full = [verdict(program) for program in programs]
    assert quick == full
    # The mutations reach both verdicts, and the quick path ran on the unbroken ops.
    assert sum(v is None for v in full) > 100 and sum(v is not None for v in full) > 1000


@pytest.mark.parametrize("entry", [None, (1,), (1, 2, 3), [1, 2], (1, -1), (True, 1)])
@pytest.mark.parametrize("where", [0, 1])
def test_each_malformed_line_entry_is_refused(entry: object, where: int) -> None:
    """The line table is checked once per run of one entry: a malformed entry is refused
    wherever it stands, the first place (before which there is no entry) included."""
    program = every_opcode_program()
    function = program.functions[0]
    lines = list(function.lines)
    lines[where] = entry  # type: ignore[call-overload]
    broken = program._replace(
        functions=(function._replace(lines=tuple(lines)), *program.functions[1:])
    )
    message = verdict(broken)
    assert message is not None and "line table entry" in message
