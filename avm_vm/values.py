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

# The cost model of docs/semantics.md, "Resource limits". Building a value counts against a
# run's memory budget: BOX_BYTES for the list, string, pair or just value, plus ITEM_BYTES
# per list item or one byte per string character. Copying, comparing or printing items
# costs one extra step of fuel per SIZE_UNIT of them (list items or characters); walking a
# structure part by part (equality, str()) costs WALK_STEPS steps per part.
BOX_BYTES = 48
ITEM_BYTES = 8
SIZE_UNIT = 16
WALK_STEPS = 8
# Fuel an AVM instruction (an EFFECT) costs beyond its own step. Measured on a 2-core
# machine, the runtime's side of one takes 2 to 4 us (an object call, a field's state read
# and write, a pure call) while a VM step takes 15 to 40 ns: 32 more steps keep every unit of
# fuel below about 100 ns of work (docs/semantics.md, "Fuel and time").
EFFECT_STEPS = 32
_UNBOUNDED = 1 << 62


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


_NESTING = frozenset({tuple, Pair, Just})  # the kinds that hold other values


def parts_within(value: Value, budget: int) -> int:
    """How many parts ``value`` has as a tree (a shared part counts each time it is
    reached, as printing or sending it would), counting no further than past ``budget``."""
    count = 0
    stack = [value]
    while stack and count <= budget:
        item = stack.pop()
        count += 1
        t = type(item)
        if t is tuple:
            if _NESTING.isdisjoint(map(type, item)):  # type: ignore[arg-type]
                count += len(item)  # type: ignore[arg-type]  # flat: counted at C speed
            else:
                stack.extend(item)  # type: ignore[arg-type]
        elif t is Pair:
            stack.append(item.first)  # type: ignore[union-attr]
            stack.append(item.second)  # type: ignore[union-attr]
        elif t is Just:
            stack.append(item.value)  # type: ignore[union-attr]
    return count


def values_equal(a: Value, b: Value) -> bool:
    """Structural equality with exact kinds: ``Nat 0 != Bool false``, ``[] != nothing``."""
    return compare_within(a, b, _UNBOUNDED)[0]


def compare_within(a: Value, b: Value, budget: int) -> tuple[bool, int]:
    """``values_equal(a, b)`` and its cost in steps: WALK_STEPS per pair of parts compared
    after the first, plus one per SIZE_UNIT characters of the left one of two strings
    compared. Gives up once the cost exceeds ``budget`` (the answer then means nothing)."""
    cost = -WALK_STEPS
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        cost += WALK_STEPS
        if cost > budget:
            return False, cost
        if x is y:
            continue
        tx = type(x)
        if tx is not type(y):
            return False, cost
        if tx is tuple:
            if len(x) != len(y):
                return False, cost
            stack.extend(zip(x, y, strict=True))
        elif tx is Pair:
            stack.append((x.first, y.first))
            stack.append((x.second, y.second))
        elif tx is Just:
            stack.append((x.value, y.value))
        elif tx is ObjectRef or tx is TxRef:
            if x.id != y.id:
                return False, cost
        elif tx is str:
            cost += len(x) // SIZE_UNIT
            if x != y:
                return False, cost
        elif x != y:
            return False, cost
    return True, max(cost, 0)


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
    return render_within(value, _UNBOUNDED, _UNBOUNDED)[0]  # type: ignore[return-value]


def render_within(value: Value, steps: int, chars: int) -> tuple[str | None, int]:
    """`render` and its cost in steps: WALK_STEPS per part after the first, plus one per
    SIZE_UNIT characters of output. None (with a cost past ``steps``, or not) when the
    cost would exceed ``steps`` or the text ``chars`` characters: a value shared many times
    over can print exponentially long, and is never built."""
    chunks: list[str] = []
    pieces: list[str] = []  # joined into a chunk now and then: a piece costs ~50 bytes
    put = pieces.append
    size = 0  # characters in chunks
    parts = -1

    def flush(extra: str = "") -> bool:
        """Move the pieces (and ``extra``) to the chunks; False once over a budget (the
        cost only grows, so a text over budget now is over budget at its end too)."""
        nonlocal size
        chunk = "".join(pieces)
        pieces.clear()
        size += len(chunk) + len(extra)
        if size > chars or WALK_STEPS * parts + size // SIZE_UNIT > steps:
            return False
        chunks.append(chunk)
        chunks.append(extra)
        return True

    # Work items are values to render or literal text to emit.
    stack: list[object] = [value]
    pop = stack.pop
    while stack:
        item = pop()
        t = type(item)
        if t is _Text:
            put(item.text)  # type: ignore[attr-defined]
            continue
        parts += 1
        if t is int:
            put(str(item))
        elif t is bool:
            put("true" if item else "false")
        elif t is str:
            if len(item) > SIZE_UNIT:  # a long string meets the budgets before it is copied
                if len(item) > chars or not flush(f'"{item}"'):
                    return None, WALK_STEPS * parts + (size + len(item)) // SIZE_UNIT
                continue
            put(f'"{item}"')
        elif t is tuple:
            if item:
                spaced: list[object] = [_COMMA] * (2 * len(item) - 1)  # type: ignore[arg-type]
                spaced[::2] = item  # type: ignore[assignment]
                stack.append(_CLOSE_LIST)
                stack.extend(reversed(spaced))
                put("[")
            else:
                put("[]")
        elif t is Pair:
            stack.extend((_CLOSE_PAIR, item.second, _COMMA, item.first))  # type: ignore[union-attr]
            put("(")
        elif t is NothingType:
            put("nothing")
        elif t is Just:
            stack.append(item.value)  # type: ignore[union-attr]
            put("just ")
        elif t is ObjectRef:
            put(f"obj:{item.id}")  # type: ignore[union-attr]
        elif t is TxRef:
            put(f"tx:{item.id}")  # type: ignore[union-attr]
        else:
            raise TypeError(f"not an AVM value: {item!r}")
        if len(pieces) > 4096 and not flush():
            break
    cost = WALK_STEPS * max(parts, 0) + (size + sum(map(len, pieces))) // SIZE_UNIT
    if stack or not flush():
        return None, cost
    return "".join(chunks), cost


class _Text:
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


_CLOSE_LIST = _Text("]")
_CLOSE_PAIR = _Text(")")
_COMMA = _Text(", ")


def to_text(value: Value) -> str:
    """``str(v)`` of the language: a string as itself, anything else in canonical form."""
    return value if type(value) is str else render(value)  # type: ignore[return-value]
