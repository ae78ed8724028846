"""The AVM value model (spec §2.1) and its canonical text form (spec §2.2).

Values are plain Python objects chosen so the VM's hot paths stay cheap:

| AVM value   | Python                     |
|-------------|----------------------------|
| Nat         | ``int`` (0 .. 2**64-1)     |
| Bool        | ``bool``                   |
| Str         | ``str``                    |
| List        | ``tuple`` of values        |
| Pair        | ``Pair(first, second)``    |
| Nothing     | the singleton ``NOTHING``  |
| Just        | ``Just(value)``            |
| ObjectRef   | ``ObjectRef(id)``          |
| TxRef       | ``TxRef(id)``              |

Python's ``1 == True`` would make ``Nat 1`` equal ``Bool true``, which the spec forbids, so
structural equality is ``values_equal``, never ``==`` on raw values. Every function here is
iterative: values nested a million deep (ping-pong answers are) never hit the recursion limit.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Union

NAT_MAX = 2**64 - 1


class Kind(IntEnum):
    """The variant of a value; numbers are stable (used by the ISKIND opcode)."""

    NAT = 0
    BOOL = 1
    STR = 2
    LIST = 3
    PAIR = 4
    NOTHING = 5
    JUST = 6
    OBJECT = 7
    TX = 8


class NothingType:
    """The type of ``NOTHING``: absent optional and unit."""

    __slots__ = ()
    _instance: NothingType | None = None

    def __new__(cls) -> NothingType:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NOTHING"

    def __reduce__(self) -> str:
        return "NOTHING"


NOTHING = NothingType()


class _Boxed:
    """Shared equality and hashing for the wrapper variants (structural, kind-exact)."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return values_equal(self, other)  # type: ignore[arg-type]

    def __ne__(self, other: object) -> bool:
        return not values_equal(self, other)  # type: ignore[arg-type]

    def __hash__(self) -> int:
        return value_hash(self)  # type: ignore[arg-type]


class Pair(_Boxed):
    __slots__ = ("first", "second")

    def __init__(self, first: Value, second: Value) -> None:
        self.first = first
        self.second = second

    def __repr__(self) -> str:
        return f"Pair({self.first!r}, {self.second!r})"


class Just(_Boxed):
    __slots__ = ("value",)

    def __init__(self, value: Value) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"Just({self.value!r})"


class ObjectRef(_Boxed):
    __slots__ = ("id",)

    def __init__(self, id: int) -> None:
        self.id = id

    def __repr__(self) -> str:
        return f"ObjectRef({self.id})"


class TxRef(_Boxed):
    __slots__ = ("id",)

    def __init__(self, id: int) -> None:
        self.id = id

    def __repr__(self) -> str:
        return f"TxRef({self.id})"


Value = Union[int, bool, str, tuple, Pair, NothingType, Just, ObjectRef, TxRef]  # noqa: UP007

# The sentinel "no object" id used as `self` at top level (spec §5.2).
NO_OBJECT_ID = NAT_MAX
NO_OBJECT = ObjectRef(NO_OBJECT_ID)

_KIND_OF_TYPE: dict[type, Kind] = {
    int: Kind.NAT,
    bool: Kind.BOOL,
    str: Kind.STR,
    tuple: Kind.LIST,
    Pair: Kind.PAIR,
    NothingType: Kind.NOTHING,
    Just: Kind.JUST,
    ObjectRef: Kind.OBJECT,
    TxRef: Kind.TX,
}


def kind_of(value: Value) -> Kind:
    """The variant of ``value``; raises ``TypeError`` for a Python object that is no value."""
    try:
        return _KIND_OF_TYPE[type(value)]
    except KeyError:
        raise TypeError(f"not an AVM value: {value!r}") from None


def is_value(obj: object) -> bool:
    """True when ``obj`` (and everything inside it) is an AVM value with nats in range."""
    stack = [obj]
    while stack:
        item = stack.pop()
        kind = _KIND_OF_TYPE.get(type(item))
        if kind is None:
            return False
        if kind is Kind.NAT and not 0 <= item <= NAT_MAX:  # type: ignore[operator]
            return False
        if kind is Kind.LIST:
            stack.extend(item)  # type: ignore[arg-type]
        elif kind is Kind.PAIR:
            stack.extend((item.first, item.second))  # type: ignore[union-attr]
        elif kind is Kind.JUST:
            stack.append(item.value)  # type: ignore[union-attr]
        elif kind in (Kind.OBJECT, Kind.TX) and not 0 <= item.id <= NAT_MAX:  # type: ignore[union-attr]
            return False
    return True


def values_equal(a: Value, b: Value) -> bool:
    """Structural equality with exact kinds: ``Nat 0 != Bool false``, ``[] != nothing``."""
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        if x is y:
            continue
        tx = type(x)
        if tx is not type(y):
            return False
        if tx is tuple:
            if len(x) != len(y):
                return False
            stack.extend(zip(x, y, strict=True))
        elif tx is Pair:
            stack.append((x.first, y.first))
            stack.append((x.second, y.second))
        elif tx is Just:
            stack.append((x.value, y.value))
        elif tx is ObjectRef or tx is TxRef:
            if x.id != y.id:
                return False
        elif x != y:
            return False
    return True


def value_hash(value: Value) -> int:
    """A hash consistent with ``values_equal`` (kinds are mixed in, so 1 and true differ)."""
    acc = 0x345678
    stack = [value]
    while stack:
        item = stack.pop()
        kind = _KIND_OF_TYPE[type(item)]
        acc = (acc * 1000003) ^ int(kind)
        if kind is Kind.LIST:
            acc = (acc * 1000003) ^ len(item)
            stack.extend(item)
        elif kind is Kind.PAIR:
            stack.extend((item.second, item.first))
        elif kind is Kind.JUST:
            stack.append(item.value)
        elif kind in (Kind.OBJECT, Kind.TX):
            acc = (acc * 1000003) ^ hash(item.id)
        elif kind is not Kind.NOTHING:
            acc = (acc * 1000003) ^ hash(item)
        acc &= 0xFFFFFFFFFFFFFFFF
    return acc


def render(value: Value) -> str:
    """The canonical text form of spec §2.2 (strings quoted, content not escaped)."""
    out: list[str] = []
    # Work items are values to render or literal text to emit.
    stack: list[object] = [value]
    while stack:
        item = stack.pop()
        if type(item) is _Text:
            out.append(item.text)  # type: ignore[attr-defined]
            continue
        t = type(item)
        if t is bool:
            out.append("true" if item else "false")
        elif t is int:
            out.append(str(item))
        elif t is str:
            out.append(f'"{item}"')
        elif t is tuple:
            if not item:
                out.append("[]")
                continue
            stack.append(_CLOSE_LIST)
            for index in range(len(item) - 1, -1, -1):  # type: ignore[arg-type]
                stack.append(item[index])  # type: ignore[index]
                if index:
                    stack.append(_COMMA)
            stack.append(_OPEN_LIST)
        elif t is Pair:
            stack.extend((_CLOSE_PAIR, item.second, _COMMA, item.first, _OPEN_PAIR))  # type: ignore[union-attr]
        elif t is NothingType:
            out.append("nothing")
        elif t is Just:
            out.append("just ")
            stack.append(item.value)  # type: ignore[union-attr]
        elif t is ObjectRef:
            out.append(f"obj:{item.id}")  # type: ignore[union-attr]
        elif t is TxRef:
            out.append(f"tx:{item.id}")  # type: ignore[union-attr]
        else:
            raise TypeError(f"not an AVM value: {item!r}")
    return "".join(out)


class _Text:
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


_OPEN_LIST, _CLOSE_LIST = _Text("["), _Text("]")
_OPEN_PAIR, _CLOSE_PAIR = _Text("("), _Text(")")
_COMMA = _Text(", ")


def to_text(value: Value) -> str:
    """``str(v)`` of the language: a string as itself, anything else in canonical form."""
    return value if type(value) is str else render(value)  # type: ignore[return-value]
