"""The disassembler's listing: header, constants, behaviors, functions and source lines."""

from __future__ import annotations

from test_bytecode import COUNTER, FIB, assemble, every_opcode_program

from avm_vm.format.bytecode import code_hash, content_hash, decode, encode
from avmc.disasm import disassemble

FIB_SOURCE = """fn fib(n) { if n < 2 { return n }
  return fib(n - 1) + fib(n - 2) }

main { return fib(20) }
"""


def lines_of(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines()]


def test_header_and_constants() -> None:
    listing = lines_of(disassemble(FIB))
    assert listing[0] == "; fib.avm"
    assert listing[1] == f"; content hash {content_hash(FIB).hex()}"
    assert listing[2] == "; 3 constants, 2 functions, 0 behaviors, main: main"
    assert "constants:" in listing
    assert "  k2     20" in listing


def test_function_header_types_and_instructions() -> None:
    listing = lines_of(disassemble(FIB))
    assert "function 0: pure fib (1 param, 5 registers)" in listing
    assert "  types: r1 nat, r2 bool" in listing
    assert "function 1: main main (0 params, 2 registers)" in listing
    assert "     2  JMPF      r2, -> 4                       ; line 1" in listing
    assert "     6  CALL      r3, fib, [r1]                  ; line 2" in listing
    assert "     0  LOADK     r0, 20                         ; line 4" in listing


def test_source_lines_shown_when_the_line_changes() -> None:
    listing = lines_of(disassemble(FIB, FIB_SOURCE))
    shown = [line for line in listing if line.startswith("        ; ")]
    assert shown == [
        "        ; 1 | fn fib(n) { if n < 2 { return n }",
        "        ; 2 | return fib(n - 1) + fib(n - 2) }",
        "        ; 4 | main { return fib(20) }",
    ]
    first = listing.index(shown[1])
    assert listing[first + 1].startswith("     4  LOADK     r1, 1")
    assert not any("; 1 |" in line for line in lines_of(disassemble(FIB)))


def test_behaviors_effects_and_constants_by_value() -> None:
    listing = lines_of(disassemble(COUNTER))
    prefix = code_hash(COUNTER, 0).hex()[:16]
    assert f"  Counter: function Counter, fields [count], code {prefix}" in listing
    text = "\n".join(listing)
    assert "EFFECT    r1, get_state, []" in text
    assert "EFFECT    r4, set_state, [r3]" in text
    assert "SETFIELD  r3, r1, 0, r2, [0]" in text


def test_every_opcode_disassembles_and_long_constants_are_cut() -> None:
    text = disassemble(every_opcode_program())
    for name in ("ENDTRY", "TRY       r5, -> 35", "ISLENGE   r3, r1, 18446744073709551615"):
        assert name in text
    long = "x" * 100
    program = assemble([("f", "pure", 0, "s", [("LOADK", 0, 0), ("RET", 0)])], constants=(long,))
    text = disassemble(program)
    assert f'"{long}"' in text  # in full in the constant pool
    assert f'LOADK     r0, "{"x" * 36}...' in text


def test_unknown_lines_and_decoded_programs() -> None:
    program = assemble([("f", "pure", 0, "a", [("RET", 0)], [(0, 0)])])
    assert "     0  RET       r0" in lines_of(disassemble(program, "source"))
    assert disassemble(decode(encode(FIB)), FIB_SOURCE) == disassemble(FIB, FIB_SOURCE)
