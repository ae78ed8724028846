"""The value-level meaning of every fallible Tape op, with the VM's error messages.

Each function takes and returns AVM values and raises `AvmError` exactly as the op does. The
VM inlines a fast path for its hottest ops and falls back to these for anything unusual, so
the semantics and the messages live here once; the compiler's constant folding can call
them too, except `drop_shared` and `slice_shared`: the VM's DROP and SLICE, whose result may be
a `ListView` sharing the source's storage (never a constant of a program).
"""

from __future__ import annotations

from avm_vm.errors import AvmError, ErrorKind, vm_error
from avm_vm.values import LISTS, NAT_MAX, Just, Kind, ListView, Pair, Value, kind_of, plain, sublist

__all__ = [
    "add",
    "append",
    "concat",
    "describe",
    "div",
    "drop",
    "drop_shared",
    "first",
    "ge",
    "get_field",
    "gt",
    "index",
    "le",
    "length",
    "lt",
    "mod",
    "mul",
    "second",
    "set_field",
    "slice_",
    "slice_shared",
    "sub",
    "truth",
    "unwrap",
]

_PHRASES = {
    Kind.NAT: "a nat",
    Kind.BOOL: "a bool",
    Kind.STR: "a string",
    Kind.LIST: "a list",
    Kind.PAIR: "a pair",
    Kind.NOTHING: "nothing",
    Kind.JUST: "a just value",
    Kind.OBJECT: "an object reference",
    Kind.TX: "a transaction reference",
}


def describe(value: Value) -> str:
    """The value's kind as a message names it: ``a nat``, ``nothing``, ``an object reference``."""
    return _PHRASES[kind_of(value)]


def _type_error(detail: str) -> AvmError:
    return vm_error(ErrorKind.TYPE_MISMATCH, detail)


def _two_nats(symbol: str, x: Value, y: Value) -> None:
    if type(x) is not int or type(y) is not int:
        raise _type_error(f"'{symbol}' expects two nats, found {describe(x)} and {describe(y)}")


# Checked nat arithmetic: a result outside 0 .. 2**64-1 is an error, never a wrap-around.


def add(x: Value, y: Value) -> int:
    _two_nats("+", x, y)
    result = x + y  # type: ignore[operator]
    if result > NAT_MAX:
        raise vm_error(ErrorKind.ARITHMETIC, f"nat overflow: {x} + {y}")
    return result


def sub(x: Value, y: Value) -> int:
    _two_nats("-", x, y)
    result = x - y  # type: ignore[operator]
    if result < 0:
        raise vm_error(ErrorKind.ARITHMETIC, f"nat underflow: {x} - {y}")
    return result


def mul(x: Value, y: Value) -> int:
    _two_nats("*", x, y)
    result = x * y  # type: ignore[operator]
    if result > NAT_MAX:
        raise vm_error(ErrorKind.ARITHMETIC, f"nat overflow: {x} * {y}")
    return result


def div(x: Value, y: Value) -> int:
    _two_nats("/", x, y)
    if y == 0:
        raise vm_error(ErrorKind.ARITHMETIC, f"division by zero: {x} / 0")
    return x // y  # type: ignore[operator]


def mod(x: Value, y: Value) -> int:
    _two_nats("%", x, y)
    if y == 0:
        raise vm_error(ErrorKind.ARITHMETIC, f"division by zero: {x} % 0")
    return x % y  # type: ignore[operator]


def _ordered(symbol: str, x: Value, y: Value) -> None:
    """Order is defined on two nats, or two strings (by code point)."""
    tx = type(x)
    if tx is not type(y) or (tx is not int and tx is not str):
        raise _type_error(
            f"'{symbol}' expects two nats or two strings, found {describe(x)} and {describe(y)}"
        )


def lt(x: Value, y: Value) -> bool:
    _ordered("<", x, y)
    return x < y  # type: ignore[operator]


def le(x: Value, y: Value) -> bool:
    _ordered("<=", x, y)
    return x <= y  # type: ignore[operator]


def gt(x: Value, y: Value) -> bool:
    _ordered(">", x, y)
    return x > y  # type: ignore[operator]


def ge(x: Value, y: Value) -> bool:
    _ordered(">=", x, y)
    return x >= y  # type: ignore[operator]


def truth(x: Value) -> bool:
    """A condition (NOT, JMPT, JMPF): it must be a bool."""
    if type(x) is not bool:
        raise _type_error(f"condition must be a bool, found {describe(x)}")
    return x


def concat(x: Value, y: Value) -> Value:
    if type(x) is str and type(y) is str:
        return x + y
    if type(x) in LISTS and type(y) in LISTS:
        return x + y  # type: ignore[operator]  # a view adds as its tuple
    raise _type_error(
        f"'++' expects two strings or two lists, found {describe(x)} and {describe(y)}"
    )


def _sequence(what: str, x: Value) -> None:
    if type(x) is not str and type(x) not in LISTS:
        raise _type_error(f"{what} expects a string or a list, found {describe(x)}")


def length(x: Value) -> int:
    _sequence("'len'", x)
    return len(x)  # type: ignore[arg-type]


def index(x: Value, i: Value) -> Value:
    """A list's element, or a string's one-character string."""
    _sequence("indexing", x)
    if type(i) is not int:
        raise _type_error(f"an index must be a nat, found {describe(i)}")
    if i >= len(x):  # type: ignore[arg-type]
        raise vm_error(
            ErrorKind.INDEX_OUT_OF_RANGE,
            f"index {i} out of range for {describe(x)} of length {len(x)}",  # type: ignore[arg-type]
        )
    return x[i]  # type: ignore[index]


def slice_(x: Value, start: Value, end: Value) -> Value:
    _slice_bounds(x, start, end)
    return x[start:end]  # type: ignore[index]


def slice_shared(x: Value, start: Value, end: Value) -> Value:
    """`slice_`, sharing a list's storage when the slice is long (`sublist`)."""
    _slice_bounds(x, start, end)
    if type(x) is str:
        return x[start:end]  # type: ignore[misc]
    return sublist(x, start, end)  # type: ignore[arg-type]


def _slice_bounds(x: Value, start: Value, end: Value) -> None:
    _sequence("slicing", x)
    if type(start) is not int or type(end) is not int:
        raise _type_error(f"slice bounds must be nats, found {describe(start)} and {describe(end)}")
    if not start <= end <= len(x):  # type: ignore[arg-type]
        raise vm_error(
            ErrorKind.INDEX_OUT_OF_RANGE,
            f"slice [{start}:{end}] out of range for {describe(x)} of length {len(x)}",  # type: ignore[arg-type]
        )


def _list(what: str, x: Value) -> tuple | ListView:
    if type(x) not in LISTS:
        raise _type_error(f"{what} expects a list, found {describe(x)}")
    return x  # type: ignore[return-value]


def append(xs: Value, item: Value) -> tuple:
    return (*_list("'append'", xs), plain(item))


def drop(xs: Value, count: int) -> tuple:
    return _list("drop", xs)[count:]  # type: ignore[return-value]


def drop_shared(xs: Value, count: int) -> tuple | ListView:
    """`drop`, sharing the list's storage when what is left is long (`sublist`)."""
    items = _list("drop", xs)
    return sublist(items, min(count, len(items)), len(items))


def first(pair: Value) -> Value:
    if type(pair) is not Pair:
        raise _type_error(f"'fst' expects a pair, found {describe(pair)}")
    return pair.first


def second(pair: Value) -> Value:
    if type(pair) is not Pair:
        raise _type_error(f"'snd' expects a pair, found {describe(pair)}")
    return pair.second


def unwrap(maybe: Value) -> Value:
    if type(maybe) is Just:
        return maybe.value
    kind = ErrorKind.UNWRAP_NOTHING if kind_of(maybe) is Kind.NOTHING else ErrorKind.TYPE_MISMATCH
    raise vm_error(kind, f"expected just a value, found {describe(maybe)}")


def get_field(state: Value, field: int, defaults: tuple) -> Value:
    """Field ``field`` of an object's state list, or its default when the list is shorter."""
    if type(state) in LISTS and len(state) > field:  # type: ignore[arg-type]
        return state[field]  # type: ignore[index]
    return defaults[field]


def set_field(state: Value, field: int, value: Value, defaults: tuple) -> tuple:
    """The state list padded with the defaults it lacks, with field ``field`` replaced."""
    padded = plain(_list("a field update", state)) + defaults[len(state) :]  # type: ignore[arg-type, operator]
    return (*padded[:field], plain(value), *padded[field + 1 :])
