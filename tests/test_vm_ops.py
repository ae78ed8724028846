"""The meaning and error messages of every value op, on untyped and typed registers.

Each case runs twice: with ANY registers (the VM checks kinds at run time) and with
registers typed by their constants (the VM's typed fast paths); both must agree.
"""

from __future__ import annotations

import pytest
from vm_asm import evaluate

from avm_vm.errors import AvmError, ErrorKind
from avm_vm.values import NAT_MAX, NOTHING, Just, Kind, ObjectRef, Pair, TxRef, values_equal


@pytest.fixture(params=[False, True], ids=["any", "typed"])
def typed(request: pytest.FixtureRequest) -> bool:
    return request.param


def fails(kind: ErrorKind, message: str, op: str, *inputs: object, **options: object) -> None:
    with pytest.raises(AvmError) as caught:
        evaluate(op, *inputs, **options)  # type: ignore[arg-type]
    assert (caught.value.kind, caught.value.message) == (kind, message)


def same(a: object, b: object) -> bool:
    return values_equal(a, b)  # type: ignore[arg-type]


ARITH = ErrorKind.ARITHMETIC
TYPE = ErrorKind.TYPE_MISMATCH
RANGE = ErrorKind.INDEX_OUT_OF_RANGE


@pytest.mark.parametrize(
    ("op", "x", "y", "result"),
    [
        ("ADD", 2, 3, 5),
        ("ADD", NAT_MAX - 1, 1, NAT_MAX),
        ("SUB", 7, 7, 0),
        ("MUL", 2**32, 2**32 - 1, 2**64 - 2**32),
        ("DIV", 7, 2, 3),
        ("MOD", 7, 2, 1),
        ("DIV", 0, 5, 0),
    ],
)
def test_arithmetic(typed: bool, op: str, x: int, y: int, result: int) -> None:
    value = evaluate(op, x, y, typed=typed)
    assert type(value) is int and value == result


@pytest.mark.parametrize(
    ("op", "x", "y", "message"),
    [
        ("ADD", NAT_MAX, 1, "nat overflow: 18446744073709551615 + 1"),
        ("SUB", 2, 3, "nat underflow: 2 - 3"),
        ("MUL", 2**32, 2**32, "nat overflow: 4294967296 * 4294967296"),
        ("DIV", 7, 0, "division by zero: 7 / 0"),
        ("MOD", 7, 0, "division by zero: 7 % 0"),
    ],
)
def test_arithmetic_errors(typed: bool, op: str, x: int, y: int, message: str) -> None:
    fails(ARITH, message, op, x, y, typed=typed)


@pytest.mark.parametrize(
    ("op", "x", "y", "message"),
    [
        ("ADD", "a", 1, "'+' expects two nats, found a string and a nat"),
        ("ADD", True, 1, "'+' expects two nats, found a bool and a nat"),
        ("SUB", 1, False, "'-' expects two nats, found a nat and a bool"),
        ("MUL", (), NOTHING, "'*' expects two nats, found a list and nothing"),
        ("DIV", Just(1), 1, "'/' expects two nats, found a just value and a nat"),
        ("MOD", ObjectRef(1), TxRef(2), "'%' expects two nats, found an object reference "
                                        "and a transaction reference"),
        ("ADD", Pair(1, 2), 1, "'+' expects two nats, found a pair and a nat"),
    ],
)  # fmt: skip
def test_arithmetic_kinds(typed: bool, op: str, x: object, y: object, message: str) -> None:
    fails(TYPE, message, op, x, y, typed=typed)


@pytest.mark.parametrize(
    ("x", "y", "equal"),
    [
        (1, 1, True),
        (1, True, False),
        (0, False, False),
        (True, True, True),
        ("a", "a", True),
        ("1", 1, False),
        ((1, (2,)), (1, (2,)), True),
        ((1,), (True,), False),
        ((), NOTHING, False),
        (Pair(1, "a"), Pair(1, "a"), True),
        (Just(0), Just(False), False),
        (ObjectRef(3), TxRef(3), False),
        (NOTHING, NOTHING, True),
    ],
)
def test_equality_is_kind_exact(typed: bool, x: object, y: object, equal: bool) -> None:
    assert evaluate("EQ", x, y, typed=typed) is equal
    assert evaluate("NE", x, y, typed=typed) is (not equal)
    assert evaluate("EQ", y, x, typed=typed) is equal


@pytest.mark.parametrize(
    ("x", "y", "less"),
    [
        (1, 2, True),
        (2, 2, False),
        (3, 2, False),
        ("B", "a", True),
        ("z", "é", True),
        ("", "a", True),
    ],
)
def test_order(typed: bool, x: object, y: object, less: bool) -> None:
    equal = x == y
    assert evaluate("LT", x, y, typed=typed) is less
    assert evaluate("LE", x, y, typed=typed) is (less or equal)
    assert evaluate("GT", x, y, typed=typed) is (not less and not equal)
    assert evaluate("GE", x, y, typed=typed) is (not less)


@pytest.mark.parametrize(
    ("op", "x", "y", "message"),
    [
        ("LT", 1, "a", "'<' expects two nats or two strings, found a nat and a string"),
        ("LE", True, False, "'<=' expects two nats or two strings, found a bool and a bool"),
        ("GT", (), (), "'>' expects two nats or two strings, found a list and a list"),
        ("GE", "a", 1, "'>=' expects two nats or two strings, found a string and a nat"),
    ],
)
def test_order_kinds(typed: bool, op: str, x: object, y: object, message: str) -> None:
    fails(TYPE, message, op, x, y, typed=typed)


def test_not(typed: bool) -> None:
    assert evaluate("NOT", True, typed=typed) is False
    assert evaluate("NOT", False, typed=typed) is True
    fails(TYPE, "condition must be a bool, found a nat", "NOT", 1, typed=typed)


def test_concat(typed: bool) -> None:
    assert evaluate("CONCAT", "ab", "c", typed=typed) == "abc"
    assert same(evaluate("CONCAT", (1,), (2, 3), typed=typed), (1, 2, 3))
    message = "'++' expects two strings or two lists, found a string and a list"
    fails(TYPE, message, "CONCAT", "a", ("a",), typed=typed)


def test_len(typed: bool) -> None:
    assert evaluate("LEN", "héllo😀", typed=typed) == 6
    assert evaluate("LEN", (1, (2, 3)), typed=typed) == 2
    fails(TYPE, "'len' expects a string or a list, found a nat", "LEN", 5, typed=typed)


def test_index(typed: bool) -> None:
    assert evaluate("INDEX", (10, 20, 30), 2, typed=typed) == 30
    assert evaluate("INDEX", "héllo", 1, typed=typed) == "é"
    fails(RANGE, "index 5 out of range for a list of length 3", "INDEX", (1, 2, 3), 5, typed=typed)
    fails(RANGE, "index 2 out of range for a string of length 2", "INDEX", "ab", 2, typed=typed)
    fails(TYPE, "an index must be a nat, found a bool", "INDEX", (1, 2), True, typed=typed)
    fails(TYPE, "indexing expects a string or a list, found a nat", "INDEX", 7, 0, typed=typed)


def test_slice(typed: bool) -> None:
    assert same(evaluate("SLICE", (1, 2, 3, 4), 1, 3, typed=typed), (2, 3))
    assert evaluate("SLICE", "héllo", 1, 5, typed=typed) == "éllo"
    assert evaluate("SLICE", "ab", 2, 2, typed=typed) == ""
    message = "slice [2:1] out of range for a list of length 3"
    fails(RANGE, message, "SLICE", (1, 2, 3), 2, 1, typed=typed)
    message = "slice [0:4] out of range for a string of length 3"
    fails(RANGE, message, "SLICE", "abc", 0, 4, typed=typed)
    message = "slice bounds must be nats, found a nat and a string"
    fails(TYPE, message, "SLICE", "abc", 0, "1", typed=typed)


def test_lists_and_pairs(typed: bool) -> None:
    assert same(evaluate("APPEND", (1,), (2,), typed=typed), (1, (2,)))
    fails(TYPE, "'append' expects a list, found a string", "APPEND", "a", 1, typed=typed)
    assert same(evaluate("MKLIST", 1, "a", True, typed=typed), (1, "a", True))
    assert same(evaluate("MKLIST", typed=typed), ())
    pair = evaluate("MKPAIR", 1, "a", typed=typed)
    assert same(pair, Pair(1, "a"))
    assert evaluate("FST", pair, typed=typed) == 1
    assert evaluate("SND", pair, typed=typed) == "a"
    fails(TYPE, "'fst' expects a pair, found a list", "FST", (1, 2), typed=typed)
    fails(TYPE, "'snd' expects a pair, found nothing", "SND", NOTHING, typed=typed)


def test_maybe(typed: bool) -> None:
    assert same(evaluate("MKJUST", 0, typed=typed), Just(0))
    assert evaluate("UNWRAP", Just("x"), typed=typed) == "x"
    message = "expected just a value, found nothing"
    fails(ErrorKind.UNWRAP_NOTHING, message, "UNWRAP", NOTHING, typed=typed)
    fails(TYPE, "expected just a value, found a nat", "UNWRAP", 3, typed=typed)


SAMPLES = {
    Kind.NAT: 1,
    Kind.BOOL: True,
    Kind.STR: "1",
    Kind.LIST: (1,),
    Kind.PAIR: Pair(1, 1),
    Kind.NOTHING: NOTHING,
    Kind.JUST: Just(1),
    Kind.OBJECT: ObjectRef(1),
    Kind.TX: TxRef(1),
}


@pytest.mark.parametrize("kind", list(Kind))
def test_iskind_is_exact(typed: bool, kind: Kind) -> None:
    for sample_kind, sample in SAMPLES.items():
        result = evaluate("ISKIND", sample, imm=[int(kind)], typed=typed)
        assert result is (sample_kind is kind), (sample, kind)


def test_list_shapes(typed: bool) -> None:
    assert evaluate("ISLEN", (1, 2), imm=[2], typed=typed) is True
    assert evaluate("ISLEN", (1, 2), imm=[1], typed=typed) is False
    assert evaluate("ISLEN", "ab", imm=[2], typed=typed) is False
    assert evaluate("ISLENGE", (1, 2), imm=[2], typed=typed) is True
    assert evaluate("ISLENGE", (1, 2), imm=[3], typed=typed) is False
    assert evaluate("ISLENGE", Pair(1, 2), imm=[0], typed=typed) is False
    assert same(evaluate("DROP", (1, 2, 3), imm=[1], typed=typed), (2, 3))
    assert same(evaluate("DROP", (1,), imm=[3], typed=typed), ())
    fails(TYPE, "drop expects a list, found a string", "DROP", "abc", imm=[1], typed=typed)


def test_tostr(typed: bool) -> None:
    assert evaluate("TOSTR", "plain", typed=typed) == "plain"
    assert evaluate("TOSTR", 42, typed=typed) == "42"
    assert evaluate("TOSTR", (1, "a", True), typed=typed) == '[1, "a", true]'
    assert (
        evaluate("TOSTR", Just(Pair(ObjectRef(2), NOTHING)), typed=typed) == "just (obj:2, nothing)"
    )


def test_fields(typed: bool) -> None:
    defaults = (0, "x", ())
    assert evaluate("GETFIELD", (5, "y"), imm=[1, defaults], typed=typed) == "y"
    assert evaluate("GETFIELD", (5,), imm=[1, defaults], typed=typed) == "x"
    assert evaluate("GETFIELD", NOTHING, imm=[0, defaults], typed=typed) == 0
    assert same(evaluate("SETFIELD", (5,), True, imm=[2, defaults], typed=typed), (5, "x", True))
    assert same(
        evaluate("SETFIELD", (5, "y", 7, 8), 1, imm=[0, defaults], typed=typed), (1, "y", 7, 8)
    )
    message = "a field update expects a list, found a nat"
    fails(TYPE, message, "SETFIELD", 3, 1, imm=[0, defaults], typed=typed)
