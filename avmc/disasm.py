"""A readable listing of a compiled `Program`: what `avmc disasm` prints.

Operands are rendered by one loop over each op's operand letters in `opcodes.OPCODES`:
registers as ``r3``, constants by value, jump targets as ``-> 12``, functions by name and
AVM instructions by their IR name. With the `.avm` source at hand, each change of source
line is preceded by that line's text.
"""

from __future__ import annotations

from avm_vm.format.bytecode import code_hash, content_hash
from avm_vm.format.instructions import INSTRUCTIONS
from avm_vm.format.opcodes import OPCODES, RegType
from avm_vm.format.program import Function, Program
from avm_vm.values import render

_VALUE_WIDTH = 40  # longer constants are cut short in operand position


def disassemble(program: Program, source: str | None = None) -> str:
    """The listing of ``program``; ``source`` is the text of the `.avm` file it came from."""
    source_lines = source.splitlines() if source is not None else None
    main = "none" if program.main is None else program.functions[program.main].name
    out = [
        f"; {program.source_name}",
        f"; content hash {content_hash(program).hex()}",
        f"; {_count(len(program.constants), 'constant')}, "
        f"{_count(len(program.functions), 'function')}, "
        f"{_count(len(program.behaviors), 'behavior')}, main: {main}",
    ]
    if program.constants:
        out += ["", "constants:"]
        out += [f"  k{k:<5} {render(value)}" for k, value in enumerate(program.constants)]
    if program.behaviors:
        out += ["", "behaviors:"]
        for behavior in program.behaviors:
            function = program.functions[behavior.function].name
            out.append(
                f"  {behavior.name}: function {function}, fields [{', '.join(behavior.fields)}], "
                f"code {code_hash(program, behavior.function).hex()[:16]}"
            )
    for index, function in enumerate(program.functions):
        out.append("")
        out += _function_listing(program, index, function, source_lines)
    return "\n".join(out) + "\n"


def _function_listing(
    program: Program, index: int, function: Function, source_lines: list[str] | None
) -> list[str]:
    out = [
        f"function {index}: {function.kind.name.lower()} {function.name} "
        f"({_count(function.nparams, 'param')}, {_count(function.nregs, 'register')})"
    ]
    typed = [
        f"r{r} {t.name.lower()}" for r, t in enumerate(function.reg_types) if t is not RegType.ANY
    ]
    if typed:
        out.append(f"  types: {', '.join(typed)}")
    shown_line = None
    for pc, (instr, (line, _column)) in enumerate(zip(function.code, function.lines, strict=True)):
        if source_lines is not None and line != shown_line and 0 < line <= len(source_lines):
            out.append(f"        ; {line} | {source_lines[line - 1].strip()}")
            shown_line = line
        text = f"  {pc:>4}  {instr[0].name:<9} {_operands(program, instr)}"
        out.append(f"{text:<48} ; line {line}" if line else text.rstrip())
    return out


def _operands(program: Program, instr: tuple) -> str:
    shown = []
    for letter, operand in zip(OPCODES[instr[0]].operands, instr[1:], strict=True):
        if letter == "R":
            shown.append(f"r{operand}")
        elif letter == "L":
            shown.append("[" + ", ".join(f"r{r}" for r in operand) + "]")
        elif letter == "K":
            shown.append(_short(render(program.constants[operand])))
        elif letter == "J":
            shown.append(f"-> {operand}")
        elif letter == "F":
            shown.append(program.functions[operand].name)
        elif letter == "E":
            shown.append(INSTRUCTIONS[operand].name)
        else:  # U
            shown.append(str(operand))
    return ", ".join(shown)


def _short(text: str) -> str:
    return text if len(text) <= _VALUE_WIDTH else text[: _VALUE_WIDTH - 3] + "..."


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
