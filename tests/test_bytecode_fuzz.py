"""Hostile `.tape` files: whatever the bytes, decoding returns a program or raises TapeError.

The content hash catches any damage to a file, so the structural checks behind it are also
tested on bodies carrying a recomputed, valid hash: hand-built hostile bodies, every byte of
real bodies changed, and hypothesis-driven mutations.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_bytecode import COUNTER, FIB, assemble, every_opcode_program
from value_strategies import values

from avm_vm.format.bytecode import (
    HEADER_SIZE,
    TapeError,
    _encode_body,
    _varint,
    _wrap,
    decode,
    encode,
)
from avm_vm.format.program import Program
from avm_vm.values import NAT_MAX, NOTHING, Just, ObjectRef, Pair, TxRef, values_equal

SAMPLES = {
    "fib": FIB,
    "counter": COUNTER,
    "every-opcode": every_opcode_program(),
    "constants": assemble(
        [("m", "main", 0, "an", [("LOADK", 1, 0), ("LOADK", 0, 1), ("RET", 0)])],
        constants=(NAT_MAX, (True, Pair("é", Just(NOTHING)), ObjectRef(1), TxRef(2))),
        main="m",
    ),
    "wide": assemble(
        [("w", "main", 0, "a" * 300, [("MKLIST", 299, [0, 298]), ("RET", 299)])], main="w"
    ),
}


def decodes_or_fails_cleanly(data: bytes) -> None:
    """Decoding succeeds, and the program encodes back to the same bytes, or raises TapeError."""
    try:
        program = decode(data, "fuzz.tape")
    except TapeError as exc:
        assert exc.offset is not None and 0 <= exc.offset <= len(data)
        return
    assert encode(program) == data


@pytest.mark.parametrize("name", SAMPLES)
def test_truncation_at_every_byte(name: str) -> None:
    data = encode(SAMPLES[name])
    for end in range(len(data)):
        with pytest.raises(TapeError):
            decode(data[:end])


@pytest.mark.parametrize("name", SAMPLES)
def test_flipping_every_byte(name: str) -> None:
    data = encode(SAMPLES[name])
    for i in range(len(data)):
        with pytest.raises(TapeError):
            decode(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :])


@pytest.mark.parametrize("name", SAMPLES)
def test_every_body_byte_changed_behind_a_valid_hash(name: str) -> None:
    body = _encode_body(SAMPLES[name])
    for i in range(len(body)):
        old = body[i]
        for new in {0x00, 0x01, 0x7F, 0x80, 0xFF, old ^ 0xFF, old ^ 0x01, (old + 1) & 0xFF}:
            decodes_or_fails_cleanly(_wrap(body[:i] + bytes([new]) + body[i + 1 :]))
        decodes_or_fails_cleanly(_wrap(body[:i] + body[i + 1 :]))  # deleted
        decodes_or_fails_cleanly(_wrap(body[:i] + b"\x00" + body[i:]))  # inserted


_FILES = st.sampled_from([encode(program) for program in SAMPLES.values()])
_EDITS = st.lists(
    st.tuples(st.sampled_from(["flip", "insert", "delete"]), st.integers(0), st.integers(0, 255)),
    min_size=1,
    max_size=8,
)


def _apply(data: bytes, edits: list[tuple[str, int, int]]) -> bytes:
    buffer = bytearray(data)
    for action, where, byte in edits:
        i = where % (len(buffer) + 1)
        if action == "insert":
            buffer[i:i] = bytes([byte])
        elif i < len(buffer):
            if action == "delete":
                del buffer[i]
            else:
                buffer[i] ^= byte or 0xFF
    return bytes(buffer)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_FILES, _EDITS)
def test_random_damage_to_a_file_is_always_caught(data: bytes, edits: list) -> None:
    damaged = _apply(data, edits)
    if damaged != data:
        with pytest.raises(TapeError):
            decode(damaged)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_FILES, _EDITS)
def test_random_body_mutations_behind_a_valid_hash(data: bytes, edits: list) -> None:
    decodes_or_fails_cleanly(_wrap(_apply(data[HEADER_SIZE:], edits)))


_VALUES = values(max_leaves=20)


@settings(deadline=None)
@given(st.lists(_VALUES, max_size=6))
def test_random_constants_round_trip(constants: list) -> None:
    program = assemble([("f", "pure", 0, "a", [("RET", 0)])], constants=tuple(constants))
    back = decode(encode(program))
    assert all(values_equal(a, b) for a, b in zip(program.constants, back.constants, strict=True))


# ---------------------------------------------------------------- hand-built hostile bodies


def v(n: int) -> bytes:
    out = bytearray()
    _varint(out, n)
    return bytes(out)


def s(raw: bytes) -> bytes:
    return v(len(raw)) + raw


RET0 = bytes([36, 0])
ONE_RUN = v(1) + v(1) + v(1) + v(1)  # one run: 1 instruction at 1:1


def fn(
    name: bytes = b"f",
    kind: int = 0,
    flags: int = 0,
    nparams: int = 0,
    types: bytes = b"\x00",
    nregs: bytes | None = None,
    ncode: bytes = v(1),
    code: bytes = RET0,
    lines: bytes = ONE_RUN,
) -> bytes:
    """One function entry, each field raw bytes or a small int."""
    count = v(len(types)) if nregs is None else nregs
    return s(name) + bytes([kind, flags]) + v(nparams) + count + types + ncode + code + lines


def body(
    constants: bytes = v(0),
    functions: bytes = v(1) + fn(),
    behaviors: bytes = v(0),
    main: bytes = v(0),
    source: bytes = s(b"t.avm"),
) -> bytes:
    return constants + functions + behaviors + main + source


def consts(*raw: bytes) -> bytes:
    return v(len(raw)) + b"".join(raw)


BIG = 2**40
DEEP_OK = b"\x06" * 200 + b"\x05"  # just^200 nothing

HOSTILE = {
    # opcodes and operands
    "unknown-opcode": (body(functions=v(1) + fn(code=b"\xee")), "unknown opcode 238"),
    "opcode-past-table": (body(functions=v(1) + fn(code=b"\x29")), "unknown opcode 41"),
    "register": (body(functions=v(1) + fn(code=bytes([36, 5]))), "register 5 is outside"),
    "constant": (
        body(
            functions=v(1)
            + fn(ncode=v(2), code=bytes([1, 0, 3, 36, 0]), lines=v(1) + v(2) + v(1) + v(1))
        ),
        "constant 3 is outside the constant pool (0 constants)",
    ),
    "jump": (body(functions=v(1) + fn(code=bytes([32, 7]))), "jump target 7 is outside"),
    "function": (
        body(functions=v(1) + fn(code=bytes([35, 0, 4, 0]))),
        "function 4 is outside the function table (1 functions)",
    ),
    "effect": (body(functions=v(1) + fn(code=bytes([37, 0, 200, 0]))), "AVM instruction 200"),
    "effect-arity": (body(functions=v(1) + fn(code=bytes([37, 0, 2, 0]))), "takes 2 arguments"),
    "call-arity": (
        body(functions=v(1) + fn(code=bytes([35, 0, 0, 1, 0]))),
        "CALL passes 1 arguments to 'f', which takes 0",
    ),
    "falls-off": (body(functions=v(1) + fn(code=bytes([0, 0, 0]))), "can run off its end"),
    "register-list-count": (
        body(functions=v(1) + fn(code=bytes([19, 0]) + v(BIG))),
        "register list count 1099511627776 needs",
    ),
    # function headers and tables
    "type-table": (body(functions=v(1) + fn(types=b"\x05")), "unknown register type 5"),
    "kind": (body(functions=v(1) + fn(kind=3)), "unknown kind 3"),
    "flags": (body(functions=v(1) + fn(flags=2)), "has flags 2, expected 0"),
    "wide-flag-on-narrow": (body(functions=v(1) + fn(flags=1)), "has flags 1, expected 0"),
    "narrow-wide-function": (
        body(functions=v(1) + fn(types=bytes(257))),
        "has flags 0, expected 1 for 257 registers",
    ),
    "too-many-registers": (
        body(functions=v(1) + fn(flags=1, types=bytes(65536))),
        "65536 registers (the limit is 65535)",
    ),
    "register-count": (body(functions=v(1) + fn(nregs=v(BIG))), "register type count"),
    "code-count": (body(functions=v(1) + fn(ncode=v(BIG))), "instruction count"),
    "empty-code": (body(functions=v(1) + fn(ncode=v(0), code=b"", lines=v(0))), "has no code"),
    "function-count": (body(functions=v(BIG)), "function count 1099511627776 needs"),
    "duplicate-function": (body(functions=v(2) + fn() * 2), "duplicate function name 'f'"),
    "nparams": (body(functions=v(1) + fn(nparams=2)), "has 2 parameters but 1 registers"),
    # line tables
    "line-runs-count": (body(functions=v(1) + fn(lines=v(BIG))), "line table run count"),
    "line-run-zero": (body(functions=v(1) + fn(lines=v(1) + v(0) + v(1) + v(1))), "run of 0"),
    "line-run-long": (body(functions=v(1) + fn(lines=v(1) + v(2) + v(1) + v(1))), "run of 2"),
    "line-run-short": (
        body(functions=v(1) + fn(ncode=v(2), code=RET0 * 2)),
        "line table covers 1 of 2 instructions",
    ),
    "line-repeat": (
        body(functions=v(1) + fn(ncode=v(2), code=RET0 * 2, lines=v(2) + (v(1) * 3) * 2)),
        "repeats the previous position",
    ),
    "line-range": (
        body(functions=v(1) + fn(lines=v(1) + v(1) + v(2**32) + v(0))),
        "position 4294967296:0 is out of range",
    ),
    # constants
    "constant-count": (body(constants=v(BIG)), "constant count 1099511627776 needs"),
    "list-count": (body(constants=consts(b"\x03" + v(BIG))), "list element count"),
    "string-length": (body(constants=consts(b"\x02" + v(BIG))), "string constant byte count"),
    "deep-just": (body(constants=consts(b"\x06" + DEEP_OK)), "deeper than 200 levels"),
    "deep-list": (body(constants=consts(b"\x03\x01" * 100_000 + b"\x05")), "deeper than 200"),
    "deep-pair": (body(constants=consts(b"\x04" * 100_000)), "deeper than 200"),
    "tag": (body(constants=consts(b"\x09")), "unknown value tag 9"),
    "bool": (body(constants=consts(b"\x01\x02")), "bool byte 2 is neither 0 nor 1"),
    "varint-long": (body(constants=consts(b"\x00" + b"\xff" * 10 + b"\x01")), "longer than 10"),
    "varint-padded": (body(constants=consts(b"\x00\x80\x00")), "not minimally encoded"),
    "nat-too-big": (body(constants=consts(b"\x00" + b"\xff" * 9 + b"\x7f")), "larger than 2**64"),
    "object-id": (body(constants=consts(b"\x07" + b"\x80" * 9 + b"\x02")), "larger than 2**64"),
    "overlong-utf8": (body(constants=consts(b"\x02" + s(b"\xc0\x80"))), "is not valid UTF-8"),
    "surrogate-utf8": (body(constants=consts(b"\x02" + s(b"\xed\xa0\x80"))), "not valid UTF-8"),
    # names
    "function-name": (body(functions=v(1) + fn(name=b"\xff")), "function name is not valid"),
    "behavior-name": (
        body(functions=v(1) + fn(kind=1, nparams=1), behaviors=v(1) + s(b"\xfe") + v(0) + v(0)),
        "behavior name is not valid UTF-8",
    ),
    "field-name": (
        body(
            functions=v(1) + fn(kind=1, nparams=1),
            behaviors=v(1) + s(b"B") + v(0) + v(1) + s(b"a\x80"),
        ),
        "field name is not valid UTF-8",
    ),
    "source-name": (body(source=s(b"\xff.avm")), "source name is not valid UTF-8"),
    # behaviors and main
    "behavior-count": (body(behaviors=v(BIG)), "behavior count"),
    "field-count": (body(behaviors=v(1) + s(b"B") + v(0) + v(BIG)), "field count"),
    "behavior-function": (
        body(behaviors=v(1) + s(b"B") + v(9) + v(0)),
        "behavior 'B' refers to function 9",
    ),
    "behavior-kind": (
        body(behaviors=v(1) + s(b"B") + v(0) + v(0)),
        "needs a behavior function of one parameter, not 'f'",
    ),
    "duplicate-behavior": (
        body(
            functions=v(1) + fn(kind=1, nparams=1),
            behaviors=v(2) + (s(b"B") + v(0) + v(0)) * 2,
        ),
        "duplicate behavior name 'B'",
    ),
    "main-index": (body(main=v(5)), "main refers to function 4"),
    "main-kind": (body(main=v(1)), "main needs a main function of no parameters, not 'f'"),
    # the body as a whole
    "body-trailing": (body() + b"\x00", "1 unexpected bytes after the last section"),
    "body-truncated": (body()[:-1], "source name byte count 5 needs at least 5 bytes, 4 remain"),
    "empty-body": (b"", "unexpected end of the body"),
}


def test_hand_built_baselines_decode() -> None:
    """The builders make valid bodies, so each hostile case breaks exactly what it names."""
    decode(_wrap(body()))
    decode(_wrap(body(constants=consts(DEEP_OK, b"\x03" + v(0), b"\x01\x01"))))
    decode(_wrap(body(functions=v(1) + fn(kind=2), main=v(1))))
    decode(_wrap(body(functions=v(1) + fn(flags=1, types=bytes(257), code=bytes([36, 0, 1])))))
    behaviors = v(1) + s(b"B") + v(0) + v(1) + s(b"count")
    decode(_wrap(body(functions=v(1) + fn(kind=1, nparams=1), behaviors=behaviors)))


@pytest.mark.parametrize(("data", "reason"), HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_body(data: bytes, reason: str) -> None:
    file = _wrap(data)
    with pytest.raises(TapeError) as info:
        decode(file, "evil.tape")
    assert reason in info.value.reason
    assert str(info.value).startswith("evil.tape: offset ")
    assert HEADER_SIZE <= info.value.offset <= len(file)


def test_hostile_program_types_do_not_escape_as_other_errors() -> None:
    # A hostile file can only produce well-typed values; decoding keeps 1 and true apart.
    program = decode(_wrap(body(constants=consts(b"\x00\x01", b"\x01\x01"))))
    assert type(program.constants[0]) is int and type(program.constants[1]) is bool
    assert isinstance(program, Program)
