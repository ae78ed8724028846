"""The `.tape` format: round trips, canonical bytes, header checks, loading, code hashes.

`assemble` builds Programs from readable tuples; the verifier, fuzz and disassembler tests
import it from here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from avm_vm.format.bytecode import (
    HEADER_SIZE,
    MAGIC,
    TapeError,
    _encode_body,
    _wrap,
    behavior_hash,
    code_hash,
    content_hash,
    decode,
    encode,
    load,
)
from avm_vm.format.instructions import BY_NAME as INSTRUCTION
from avm_vm.format.opcodes import BY_NAME, OPCODES, Op, RegType
from avm_vm.format.program import Behavior, Function, FunctionKind, Program
from avm_vm.values import NAT_MAX, NOTHING, Just, ObjectRef, Pair, TxRef, values_equal

_TYPES = {"a": RegType.ANY, "n": RegType.NAT, "b": RegType.BOOL, "s": RegType.STR}
_TYPES["l"] = RegType.LIST


def assemble(
    functions: list[tuple],
    constants: tuple = (),
    behaviors: tuple = (),
    main: str | None = None,
    source: str = "test.avm",
) -> Program:
    """A Program from readable tuples.

    A function is ``(name, kind, nparams, regs, code)`` or with ``lines`` appended: ``kind``
    is "pure", "behavior" or "main"; ``regs`` one letter per register (a n b s l: any, nat,
    bool, str, list); ``code`` a list of ``(op name, operand, ...)`` where an F operand may be
    a function name and an E operand an instruction name; an instruction not starting with an
    op name is kept as it is. Lines default to ``(pc + 1, 1)``.
    A behavior is ``(name, function name, fields)``.
    """
    index = {spec[0]: i for i, spec in enumerate(functions)}
    built = []
    for name, kind, nparams, regs, code, *lines in functions:
        instrs = []
        for instr in code:
            if not instr or not isinstance(instr[0], str):
                instrs.append(tuple(instr))  # raw, maybe malformed (verifier tests)
                continue
            op_name, *operands = instr
            info = BY_NAME[op_name]
            for i, letter in enumerate(info.operands):
                if letter == "F" and isinstance(operands[i], str):
                    operands[i] = index[operands[i]]
                elif letter == "E" and isinstance(operands[i], str):
                    operands[i] = INSTRUCTION[operands[i]].number
                elif letter == "L":
                    operands[i] = tuple(operands[i])
            instrs.append((info.op, *operands))
        positions = tuple(lines[0]) if lines else tuple((pc + 1, 1) for pc in range(len(code)))
        built.append(
            Function(
                name,
                FunctionKind[kind.upper()],
                nparams,
                tuple(_TYPES[c] for c in regs),
                tuple(instrs),
                positions,
            )
        )
    return Program(
        source,
        tuple(constants),
        tuple(built),
        tuple(Behavior(name, index[fn], tuple(fields)) for name, fn, fields in behaviors),
        None if main is None else index[main],
    )


def assert_same(a: Program, b: Program) -> None:
    """Equal programs, with constants compared kind-exactly (Python says 1 == True)."""
    assert len(a.constants) == len(b.constants)
    for x, y in zip(a.constants, b.constants, strict=True):
        assert values_equal(x, y), (x, y)
    assert (a.source_name, a.functions, a.behaviors, a.main) == (
        b.source_name,
        b.functions,
        b.behaviors,
        b.main,
    )
    for function in b.functions:
        assert all(type(instr[0]) is Op for instr in function.code)
        assert all(type(t) is RegType for t in function.reg_types)
        assert type(function.kind) is FunctionKind


def roundtrip(program: Program) -> Program:
    data = encode(program)
    back = decode(data, "rt.tape")
    assert_same(program, back)
    assert encode(back) == data  # canonical: one program, one encoding
    return back


def fib_code(two: int, one: int) -> list[tuple]:
    """fib(n) = n < 2 ? n : fib(n - 1) + fib(n - 2), given the constant indices of 2 and 1."""
    return [
        ("LOADK", 1, two),
        ("LT", 2, 0, 1),
        ("JMPF", 2, 4),
        ("RET", 0),
        ("LOADK", 1, one),
        ("SUB", 1, 0, 1),
        ("CALL", 3, "fib", [1]),
        ("LOADK", 1, two),
        ("SUB", 1, 0, 1),
        ("CALL", 4, "fib", [1]),
        ("ADD", 1, 3, 4),
        ("RET", 1),
    ]


FIB = assemble(
    [
        ("fib", "pure", 1, "anbaa", fib_code(0, 1), [(1, 12)] * 4 + [(2, 5)] * 8),
        (
            "main",
            "main",
            0,
            "aa",
            [("LOADK", 0, 2), ("CALL", 1, "fib", [0]), ("RET", 1)],
            [(4, 1), (4, 8), (4, 1)],
        ),
    ],
    constants=(2, 1, 20),
    main="main",
    source="fib.avm",
)

COUNTER = assemble(
    [
        (
            "Counter",
            "behavior",
            1,
            "aaalan",
            [
                ("EFFECT", 1, "get_state", []),
                ("GETFIELD", 2, 1, 0, 0),
                ("LOADK", 5, 1),
                ("ADD", 2, 2, 5),
                ("SETFIELD", 3, 1, 0, 2, 0),
                ("EFFECT", 4, "set_state", [3]),
                ("RET", 2),
            ],
        )
    ],
    constants=((0,), 1),
    behaviors=(("Counter", "Counter", ["count"]),),
)


def every_opcode_program() -> Program:
    """One function using every opcode at least once (not meant to run)."""
    code = [
        ("MOVE", 1, 0),
        ("LOADK", 2, 0),
        *[(name, 2, 2, 2) for name in ("ADD", "SUB", "MUL", "DIV", "MOD")],
        *[(name, 3, 2, 2) for name in ("EQ", "NE", "LT", "LE", "GT", "GE")],
        ("NOT", 3, 3),
        ("CONCAT", 1, 1, 1),
        ("LEN", 2, 1),
        ("INDEX", 1, 1, 2),
        ("SLICE", 1, 1, 2, 2),
        ("APPEND", 4, 4, 1),
        ("MKLIST", 4, [1, 2, 3]),
        ("MKPAIR", 1, 1, 2),
        ("MKJUST", 1, 1),
        ("FST", 1, 1),
        ("SND", 1, 1),
        ("UNWRAP", 1, 1),
        ("ISKIND", 3, 1, 8),
        ("ISLEN", 3, 1, 2),
        ("ISLENGE", 3, 1, NAT_MAX),
        ("DROP", 4, 4, 1),
        ("TOSTR", 5, 1),
        ("GETFIELD", 1, 4, 1, 1),
        ("SETFIELD", 4, 4, 1, 1, 1),
        ("TRY", 5, 35),
        ("JMPT", 3, 0),
        ("JMPF", 3, 0),
        ("CALL", 1, "helper", [1, 2]),
        ("EFFECT", 1, "call", [1, 4]),
        ("EFFECT", 1, "now", []),
        ("ENDTRY",),
        ("FAIL", 5),
        ("JMP", 0),
    ]
    functions = [
        ("everything", "behavior", 1, "aanbls", code),
        ("helper", "pure", 2, "aa", [("RET", 1)]),
    ]
    return assemble(functions, constants=(7, ("x", 0)), behaviors=(("E", "everything", ()),))


def test_every_opcode_is_covered() -> None:
    used = {instr[0] for function in every_opcode_program().functions for instr in function.code}
    assert used == set(OPCODES)


@pytest.mark.parametrize(
    "program",
    [FIB, COUNTER, every_opcode_program()],
    ids=["fib", "counter", "every-opcode"],
)
def test_roundtrip(program: Program) -> None:
    roundtrip(program)


def test_roundtrip_constants_of_every_kind() -> None:
    nested = (
        0,
        NAT_MAX,
        True,
        False,
        "",
        "héllo, 世界 🎉\x00",
        (),
        (1, (True, ("deep", (NOTHING,)))),
        Pair(Just(Pair(1, "a")), NOTHING),
        Just(Just(Just(()))),
        ObjectRef(3),
        TxRef(NAT_MAX),
        Pair(ObjectRef(0), (TxRef(1), False)),
    )
    constants = (*nested, nested, 1, True, (1,), (True,))
    program = assemble(
        [("main", "main", 0, "a", [("LOADK", 0, k) for k in range(len(constants))] + [("RET", 0)])],
        constants=constants,
        main="main",
    )
    back = roundtrip(program)
    assert type(back.constants[-4]) is int and type(back.constants[-3]) is bool
    assert type(back.constants[-1][0]) is bool


def test_roundtrip_wide_function() -> None:
    regs = "a" * 300 + "n" * 300 + "b"
    code = [
        ("LOADK", 599, 0),
        ("ADD", 598, 599, 300),
        ("MOVE", 299, 598),
        ("LT", 600, 300, 599),
        ("MKLIST", 1, [0, 255, 256, 599]),
        ("RET", 299),
    ]
    program = assemble([("wide", "main", 0, regs, code)], constants=(5,), main="wide")
    back = roundtrip(program)
    assert back.functions[0].nregs == 601
    # Exactly 256 registers still fit the narrow form; both sides of the boundary round-trip.
    for nregs in (256, 257, 65535):
        roundtrip(assemble([("f", "main", 0, "a" * nregs, [("RET", nregs - 1)])], main="f"))


def test_unicode_names_and_empty_program() -> None:
    program = assemble(
        [("ƒ→λ", "behavior", 1, "a", [("RET", 0)])],
        behaviors=(("Çounter✓", "ƒ→λ", ["fïeld", ""]),),
        source="dir/ünï.avm",
    )
    roundtrip(program)
    roundtrip(Program("empty.avm", (), (), (), None))


def test_line_table_runs() -> None:
    lines = [(0, 0), (0, 0), (3, 1), (3, 2), (3, 2), (2**32 - 1, 7)]
    program = assemble([("f", "pure", 0, "a", [("JMP", 5)] * 5 + [("RET", 0)], lines)])
    assert roundtrip(program).functions[0].lines == tuple(lines)


def test_header_layout() -> None:
    data = encode(FIB)
    assert data.startswith(MAGIC)
    assert len(data) == HEADER_SIZE + int.from_bytes(data[10:14], "little")
    assert data[14:46] == content_hash(FIB)
    assert data == _wrap(_encode_body(FIB))


def error_of(data: bytes, filename: str = "pp.tape") -> TapeError:
    with pytest.raises(TapeError) as info:
        decode(data, filename)
    return info.value


def test_header_errors_each_have_their_message() -> None:
    data = encode(FIB)
    assert "bad magic" in str(error_of(b"AVMT" + data[4:]))
    assert "bad magic" in str(error_of(data.replace(b"\r\n", b"\n", 1)))  # text-mode damage
    version = data[:8] + (7).to_bytes(2, "little") + data[10:]
    assert "unsupported version 7" in str(error_of(version))
    assert f"expected {len(data)} bytes found {len(data) - 1}" in str(error_of(data[:-1]))
    assert f"expected at least {HEADER_SIZE} bytes found 20" in str(error_of(data[:20]))
    assert "truncated" in str(error_of(b""))
    assert "trailing bytes: 2 bytes" in str(error_of(data + b"\0\0"))
    damaged = data[:-1] + bytes([data[-1] ^ 1])
    err = error_of(damaged)
    assert str(err) == "pp.tape: offset 14: content hash mismatch: the body is damaged"
    assert err.filename == "pp.tape" and err.offset == 14


def test_decode_default_filename_and_bytes_like() -> None:
    data = encode(FIB)
    assert_same(decode(bytearray(data)), FIB)
    assert str(error_of(data[:3], "<bytes>")).startswith("<bytes>: offset 3: truncated file")


def test_load(tmp_path) -> None:
    path = tmp_path / "fib.tape"
    path.write_bytes(encode(FIB))
    assert_same(load(path), FIB)
    assert_same(load(str(path)), FIB)
    missing = tmp_path / "missing.tape"
    with pytest.raises(TapeError, match=r"missing\.tape: cannot read the file: No such file"):
        load(missing)
    with pytest.raises(TapeError, match="cannot read the file"):
        load(tmp_path)
    path.write_bytes(b"hello")
    with pytest.raises(TapeError, match=r"fib\.tape: offset 0: bad magic"):
        load(path)


def test_encode_refuses_an_invalid_program() -> None:
    bad = assemble([("f", "pure", 0, "a", [("RET", 3)])], source="bad.avm")
    with pytest.raises(TapeError, match=r"bad\.avm: function 'f' pc 0: register 3 is outside"):
        encode(bad)


def _relined(program: Program, line: int) -> Program:
    functions = tuple(
        Function(f.name, f.kind, f.nparams, f.reg_types, f.code, ((line, 1),) * len(f.code))
        for f in program.functions
    )
    return Program(program.source_name, program.constants, functions, program.behaviors, None)


def test_code_hash_ignores_lines_and_layout() -> None:
    assert code_hash(FIB, 0) == code_hash(_relined(FIB, 99), 0)
    # The same code with its function table and constant pool in another order.
    moved = assemble(
        [
            ("main", "main", 0, "aa", [("LOADK", 0, 0), ("CALL", 1, "fib", [0]), ("RET", 1)]),
            ("fib", "pure", 1, "anbaa", fib_code(1, 2)),
        ],
        constants=(20, 2, 1),
    )
    assert code_hash(moved, 1) == code_hash(FIB, 0)
    assert code_hash(moved, 0) == code_hash(FIB, 1)
    assert len(code_hash(FIB, 0)) == 32


def test_code_hash_sees_constants_callees_and_types() -> None:
    base = code_hash(FIB, 1)
    other_constant = Program(FIB.source_name, (2, 1, 21), FIB.functions, (), FIB.main)
    assert code_hash(other_constant, 1) != base
    # A change in the callee changes the caller's hash; 1 and True are different constants.
    callee_changed = Program(FIB.source_name, (2, True, 20), FIB.functions, (), FIB.main)
    assert code_hash(callee_changed, 1) != base
    assert code_hash(callee_changed, 0) != code_hash(FIB, 0)
    typed, untyped = (assemble([("f", "pure", 0, regs, [("RET", 0)])]) for regs in ("an", "aa"))
    assert code_hash(typed, 0) != code_hash(untyped, 0)


def test_behavior_hash() -> None:
    behavior = COUNTER.behaviors[0]
    assert behavior_hash(COUNTER, behavior) == behavior_hash(_relined(COUNTER, 5), behavior)
    renamed = Behavior("Counter", 0, ("total",))
    assert behavior_hash(COUNTER, renamed) != behavior_hash(COUNTER, behavior)
    changed = Program("c.avm", ((1,), 1), COUNTER.functions, COUNTER.behaviors, None)
    assert behavior_hash(changed, behavior) != behavior_hash(COUNTER, behavior)


def test_docs_opcode_table_matches_opcodes() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "bytecode.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\d+) \| ([A-Z]+) \| ([A-Z-]+) \| ([^|]+) \|$", doc, re.MULTILINE)
    table = {int(n): (name, ops.strip("-"), writes.strip()) for n, name, ops, writes in rows}
    assert set(table) == {int(op) for op in OPCODES}
    for op, info in OPCODES.items():
        name, operands, writes = table[op]
        assert (name, operands) == (info.name, info.operands)
        if op not in (Op.MOVE, Op.LOADK):
            assert writes == (info.result.name.lower() if info.writes else "-")


def test_docs_examples() -> None:
    add = assemble([("f", "pure", 0, "aaaaa", [("ADD", 1, 3, 4), ("RET", 0)])])
    call = assemble([("fib", "pure", 0, "aaaa", [("CALL", 3, "fib", [1]), ("RET", 0)])])
    assert bytes([2, 1, 3, 4]) in _encode_body(add)
    assert bytes.fromhex("23 03 00 01 01") in _encode_body(call)
    wide = assemble([("f", "pure", 0, "a" * 257, [("ADD", 1, 3, 4), ("RET", 0)])])
    assert bytes.fromhex("02 01 00 03 00 04 00") in _encode_body(wide)
