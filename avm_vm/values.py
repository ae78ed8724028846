"""The AVM value model (spec §2.1) and its canonical text form (spec §2.2).

Values are plain Python objects chosen so the VM's hot paths stay cheap:

| AVM value   | Python                     |
|-------------|----------------------------|
| Nat         | ``int`` (0 .. 2**64-1)     |
| Bool        | ``bool``                   |
| Str         | ``str``                    |
| List        | ``tuple`` of values        |
|             | (or ``ListView``, in VM    |
|             | registers only; see below) |
| Pair        | ``Pair(first, second)``    |
| Nothing     | the singleton ``NOTHING``  |
| Just        | ``Just(value)``            |
| ObjectRef   | ``ObjectRef(id)``          |
| TxRef       | ``TxRef(id)``              |

Python's ``1 == True`` would make ``Nat 1`` equal ``Bool true``, which the spec forbids, so
structural equality is ``values_equal``, never ``==`` on raw values. Every function here is
iterative: values nested a million deep (ping-pong answers are) never hit the recursion limit.

Dropping or slicing a long list in the VM (``[x, ..rest]``) makes a ``ListView``, a run of
another list's items sharing its storage, so recursion over a list takes linear time and
memory. A view lives only in the registers of a running program: every op that stores a
value inside another value, or hands one out of the VM (an instruction's arguments, a run's
result), turns a view into a tuple first (``plain``). Everything outside the VM therefore
sees tuples only; the functions here accept views anyway.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
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


_VIEW_MIN_DEFAULT = 64


def _view_min() -> int:
    """``$AVM_LIST_VIEW_MIN``: empty, or not a count of 0 or more, means the default."""
    text = os.environ.get("AVM_LIST_VIEW_MIN", "").strip()
    if text.isdigit():
        return int(text)
    if text:
        import logging  # only on this path: start-up stays lean

        logging.getLogger("avm.vm").warning(
            "AVM_LIST_VIEW_MIN=%r is not a count of list items; using %d",
            text,
            _VIEW_MIN_DEFAULT,
        )
    return _VIEW_MIN_DEFAULT


# A slice of a list shares its source's storage (a ListView) when it has at least VIEW_MIN
# items (below that a copy is as cheap) and at least half the storage's items (so a view
# never keeps alive more than twice what it holds). Read at each slice, so tests may patch
# it; 0 makes every slice that keeps half its storage a view.
VIEW_MIN = _view_min()


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


class ListView:
    """A list that is ``base[start:stop]`` without the copy (see the module docstring).
    Reads as a tuple would (len, indexing, slicing, iteration, ``+``); ``plain`` gives the
    tuple. Its items are never views: views do not nest."""

    __slots__ = ("base", "start", "stop")

    def __init__(self, base: tuple, start: int, stop: int) -> None:
        self.base = base
        self.start = start
        self.stop = stop

    def plain(self) -> tuple:
        """The items as a tuple. The copy becomes the view's storage, so a view copied
        once (nested in several values, say) is never copied again, and no longer keeps
        the larger list it came from alive."""
        base = self.base
        if self.start or self.stop != len(base):
            base = self.base = base[self.start : self.stop]
            self.start, self.stop = 0, len(base)
        return base

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, index: int | slice) -> Value | tuple:
        if type(index) is int:
            n = self.stop - self.start
            if not -n <= index < n:
                raise IndexError("list index out of range")
            return self.base[self.start + index % n]
        run = range(self.start, self.stop)[index]  # type: ignore[index]
        if run.step == 1:
            return self.base[run.start : run.stop]
        return tuple(map(self.base.__getitem__, run))

    def items(self) -> tuple:
        """The items as a new tuple, which the view does not keep (reading it through)."""
        return self.base[self.start : self.stop]

    def __iter__(self) -> Iterator[Value]:
        return iter(self.items())

    def __add__(self, other: object) -> tuple:
        if type(other) is tuple:
            return self.items() + other
        if type(other) is ListView:
            return self.items() + other.items()
        return NotImplemented

    def __radd__(self, other: object) -> tuple:
        if type(other) is tuple:
            return other + self.items()
        return NotImplemented

    def __eq__(self, other: object) -> bool:
        return values_equal(self, other)  # type: ignore[arg-type]

    def __ne__(self, other: object) -> bool:
        return not values_equal(self, other)  # type: ignore[arg-type]

    def __hash__(self) -> int:
        return hash(self.items())  # as the tuple's: a view finds the tuple's dictionary entry

    def __repr__(self) -> str:
        return f"ListView({self.items()!r})"

    def __reduce__(self) -> tuple:
        return tuple, (self.items(),)


def plain(value: Value) -> Value:
    """``value`` with a view made a tuple: what leaves the VM's registers."""
    return value.plain() if type(value) is ListView else value  # type: ignore[union-attr]


def sublist(items: tuple | ListView, start: int, stop: int) -> tuple | ListView:
    """``items[start:stop]`` (bounds already checked), sharing storage when it is long."""
    count = stop - start
    if count == len(items):
        return items  # the whole of it: nothing to copy or share
    base, offset = (items.base, items.start) if type(items) is ListView else (items, 0)
    if count < VIEW_MIN or 2 * count < len(base):
        return base[offset + start : offset + stop]
    return ListView(base, offset + start, offset + stop)


Value = Union[int, bool, str, tuple, ListView, Pair, NothingType, Just, ObjectRef, TxRef]  # noqa: UP007

# The sentinel "no object" id used as `self` at top level (spec §5.2).
NO_OBJECT_ID = NAT_MAX
NO_OBJECT = ObjectRef(NO_OBJECT_ID)

_KIND_OF_TYPE: dict[type, Kind] = {
    int: Kind.NAT,
    bool: Kind.BOOL,
    str: Kind.STR,
    tuple: Kind.LIST,
    ListView: Kind.LIST,
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


NESTING = frozenset({tuple, ListView, Pair, Just})  # the kinds that hold other values


def parts_within(value: Value, budget: int) -> int:
    """How many parts ``value`` has as a tree (a shared part counts each time it is
    reached, as printing or sending it would), counting no further than past ``budget``."""
    count = 0
    stack = [value]
    while stack and count <= budget:
        item = stack.pop()
        count += 1
        t = type(item)
        if t is tuple or t is ListView:
            if NESTING.isdisjoint(map(type, item)):  # type: ignore[arg-type]
                count += len(item)  # type: ignore[arg-type]  # flat: counted at C speed
            else:
                stack.extend(item)  # type: ignore[arg-type]
        elif t is Pair:
            stack.append(item.first)  # type: ignore[union-attr]
            stack.append(item.second)  # type: ignore[union-attr]
        elif t is Just:
            stack.append(item.value)  # type: ignore[union-attr]
    return count


LISTS = (tuple, ListView)  # the Python types of an AVM list


def walk_steps(value: Value, budget: int) -> int:
    """What walking ``value`` as a tree costs: WALK_STEPS per part after the first, counted
    no further than past ``budget`` parts (`parts_within`). A flat list of scalars, the
    commonest state, is counted without a walk."""
    if type(value) is tuple and (
        type(value[0]) not in NESTING  # a state of one field, quickly
        if len(value) == 1
        else NESTING.isdisjoint(map(type, value))
    ):
        return WALK_STEPS * len(value)
    return WALK_STEPS * (parts_within(value, budget) - 1)


def _copy_of(view: Value, items: Value) -> bool:
    """Whether ``items`` is ``view``'s own copy (`ListView.plain`). Where views are copies,
    the view and its copy are one tuple, whose comparison with itself costs nothing."""
    return type(view) is ListView and view.base is items and view.stop - view.start == len(items)


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
        if tx is not type(y) or tx is ListView:
            if tx not in LISTS or type(y) not in LISTS:
                return False, cost
            if _copy_of(x, y) or _copy_of(y, x):
                continue  # the same list as far as `is` goes where views are copies
            tx = tuple  # a view and a list, or two views: compared as lists
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
        elif t is tuple or t is ListView:
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
