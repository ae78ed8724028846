"""AVM values as JSON (spec §2.6): the externally tagged form the wire protocol carries.

| value        | JSON                  |
|--------------|-----------------------|
| Nat 5        | ``{"Nat":5}``         |
| Bool true    | ``{"Bool":true}``     |
| Str "x"      | ``{"Str":"x"}``       |
| List [..]    | ``{"List":[...]}``    |
| Pair (a, b)  | ``{"Pair":[a,b]}``    |
| Nothing      | ``"Nothing"``         |
| Just v       | ``{"Just":v}``        |
| ObjectRef 7  | ``{"ObjectRef":7}``   |
| TxRef 3      | ``{"TxRef":3}``       |

Both directions are iterative, so the depth of a value costs memory, never Python stack:
ping-pong answers nest one ``just`` per hop. Values nested deeper than ``MAX_VALUE_DEPTH``
containers are refused both ways, which bounds the memory one frame can make a peer spend.

``WireError`` lives here, the lowest layer that raises it; ``wire`` re-exports it.
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Callable

from avm_vm.values import (
    NAT_MAX,
    NOTHING,
    Just,
    NothingType,
    ObjectRef,
    Pair,
    TxRef,
    Value,
    plain,
)

# Above the VM's default call-depth limit (250,000), so every answer built by nested calls fits.
MAX_VALUE_DEPTH = 300_000

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother, _SHORT.maxlong = 3, 60, 60, 60


class WireError(Exception):
    """A frame, message or value that breaks the wire protocol; the message says what."""


def has_lone_surrogate(text: str) -> bool:
    """True when ``text`` cannot be UTF-8 encoded (only JSON ``\\ud800`` escapes produce these)."""
    return not text.isascii() and _LONE_SURROGATE.search(text) is not None


def snippet(obj: object) -> str:
    """A short ``repr`` of ``obj`` for error messages (bounded depth, so never recursive)."""
    text = _SHORT.repr(obj)
    return text if len(text) <= 80 else text[:77] + "..."


def _nat(payload: object, tag: str) -> int:
    if type(payload) is not int or not 0 <= payload <= NAT_MAX:
        raise WireError(f"{tag} must be an integer in 0..{NAT_MAX}, got {snippet(payload)}")
    return payload


# Values nested at most this deep take the recursive fast paths below; deeper ones, and any
# value with a problem, the iterative conversions (which name the problem).
_FAST_DEPTH = 48


class _Slow(Exception):
    """The fast path gives up: too deep, or something the careful path must explain."""


def _to_json_fast(value: object, depth: int) -> object:
    t = type(value)
    if t is int:
        if value > NAT_MAX or value < 0:  # type: ignore[operator]
            raise _Slow
        return {"Nat": value}
    if t is str:
        if not value.isascii():  # type: ignore[union-attr]
            raise _Slow  # the careful path checks for lone surrogates
        return {"Str": value}
    if t is tuple:
        if depth > _FAST_DEPTH:
            raise _Slow
        return {"List": [_to_json_fast(item, depth + 1) for item in value]}  # type: ignore[union-attr]
    if t is Just:
        if depth > _FAST_DEPTH:
            raise _Slow
        return {"Just": _to_json_fast(value.value, depth + 1)}  # type: ignore[attr-defined]
    if t is bool:
        return {"Bool": value}
    if t is NothingType:
        return "Nothing"
    if t is ObjectRef or t is TxRef:
        if not 0 <= value.id <= NAT_MAX:  # type: ignore[attr-defined]
            raise _Slow
        return {t.__name__: value.id}  # type: ignore[attr-defined]
    if t is Pair:
        if depth > _FAST_DEPTH:
            raise _Slow
        first = _to_json_fast(value.first, depth + 1)  # type: ignore[attr-defined]
        return {"Pair": [first, _to_json_fast(value.second, depth + 1)]}  # type: ignore[attr-defined]
    raise _Slow


def value_to_json(value: Value) -> object:
    """The JSON form of ``value`` (dicts, lists, ints, bools, strings), ready for ``json``."""
    try:
        return _to_json_fast(value, 0)
    except (_Slow, RecursionError):
        return _value_to_json(value)


def _value_to_json(value: Value) -> object:
    value = plain(value)  # a register of a suspended activation may hold a list view
    root: list[object] = [None]
    # Work items: (value, container to fill, index or key in it, depth of the value).
    stack: list[tuple[object, list | dict, int | str, int]] = [(value, root, 0, 0)]
    while stack:
        item, parent, key, depth = stack.pop()
        t = type(item)
        if t is int:
            parent[key] = {"Nat": _nat(item, "Nat")}  # type: ignore[index]
        elif t is bool:
            parent[key] = {"Bool": item}  # type: ignore[index]
        elif t is str:
            if has_lone_surrogate(item):  # type: ignore[arg-type]
                raise WireError("Str holds a lone surrogate, which UTF-8 cannot carry")
            parent[key] = {"Str": item}  # type: ignore[index]
        elif t is NothingType:
            parent[key] = "Nothing"  # type: ignore[index]
        elif t is ObjectRef or t is TxRef:
            parent[key] = {t.__name__: _nat(item.id, t.__name__)}  # type: ignore[attr-defined,index]
        elif t is tuple or t is Pair or t is Just:
            if depth >= MAX_VALUE_DEPTH:
                raise WireError(f"value nests containers deeper than {MAX_VALUE_DEPTH} levels")
            if t is Just:
                box: dict[str, object] = {"Just": None}
                parent[key] = box  # type: ignore[index]
                stack.append((item.value, box, "Just", depth + 1))  # type: ignore[attr-defined]
                continue
            children = item if t is tuple else (item.first, item.second)  # type: ignore[attr-defined]
            slots: list[object] = [None] * len(children)  # type: ignore[arg-type]
            parent[key] = {"List" if t is tuple else "Pair": slots}  # type: ignore[index]
            stack.extend(
                (child, slots, index, depth + 1)
                for index, child in enumerate(children)  # type: ignore[arg-type]
            )
        else:
            raise WireError(f"not an AVM value: {snippet(item)}")
    return root[0]


def _finish_list(slots: list[Value]) -> Value:
    return tuple(slots)


def _finish_pair(slots: list[Value]) -> Value:
    return Pair(slots[0], slots[1])


def _finish_just(slots: list[Value]) -> Value:
    return Just(slots[0])


class _Finish:
    """A work item: every child of a container is decoded, so build the container."""

    __slots__ = ("build", "key", "parent", "slots")

    def __init__(
        self, build: Callable[[list[Value]], Value], slots: list[Value], parent: list, key: int
    ) -> None:
        self.build, self.slots, self.parent, self.key = build, slots, parent, key


def _from_json_fast(obj: object, depth: int) -> Value:
    if type(obj) is not dict or len(obj) != 1:  # type: ignore[arg-type]
        if obj == "Nothing":
            return NOTHING
        raise _Slow
    ((tag, payload),) = obj.items()  # type: ignore[union-attr]
    kind = type(payload)
    if tag == "Nat":
        if kind is not int or not 0 <= payload <= NAT_MAX:
            raise _Slow
        return payload
    if tag == "Str":
        if kind is not str or not payload.isascii():
            raise _Slow  # the careful path checks for lone surrogates
        return payload
    if depth > _FAST_DEPTH:
        raise _Slow
    if tag == "List":
        if kind is not list:
            raise _Slow
        return tuple([_from_json_fast(item, depth + 1) for item in payload])
    if tag == "Just":
        return Just(_from_json_fast(payload, depth + 1))
    if tag == "ObjectRef" or tag == "TxRef":
        if kind is not int or not 0 <= payload <= NAT_MAX:
            raise _Slow
        return ObjectRef(payload) if tag == "ObjectRef" else TxRef(payload)
    if tag == "Bool":
        if kind is not bool:
            raise _Slow
        return payload
    if tag == "Pair":
        if kind is not list or len(payload) != 2:
            raise _Slow
        return Pair(_from_json_fast(payload[0], depth + 1), _from_json_fast(payload[1], depth + 1))
    raise _Slow


# A node decodes a value twice: to check it when its frame arrives (it keeps the JSON form,
# which it logs and forwards), then when its event is applied. The first decoding is kept
# for the second, by the identity of the JSON object (held here, so its id cannot be reused
# meanwhile); replay, which never checked, decodes as usual. Bounded: past the limit the
# oldest entries are simply decoded again.
_CHECKED: dict[int, tuple[object, Value]] = {}
_CHECKED_MAX = 4096


def checked_value(obj: object) -> Value:
    """`value_from_json`, keeping the answer for the next decoding of this very ``obj``."""
    value = value_from_json(obj)
    if type(obj) is dict:
        if len(_CHECKED) >= _CHECKED_MAX:
            _CHECKED.clear()
        _CHECKED[id(obj)] = (obj, value)
    return value


def value_from_json(obj: object) -> Value:
    """The value whose JSON form is ``obj``; ``WireError`` naming the problem otherwise."""
    kept = _CHECKED.pop(id(obj), None) if _CHECKED else None
    if kept is not None and kept[0] is obj:
        return kept[1]
    try:
        return _from_json_fast(obj, 0)
    except (_Slow, RecursionError):
        return _value_from_json(obj)


def _value_from_json(obj: object) -> Value:
    root: list[Value] = [NOTHING]
    # Work items: (JSON to decode, list to put the value in, index, depth) or a `_Finish`.
    stack: list[tuple[object, list, int, int] | _Finish] = [(obj, root, 0, 0)]
    while stack:
        work = stack.pop()
        if type(work) is _Finish:
            work.parent[work.key] = work.build(work.slots)
            continue
        item, parent, key, depth = work  # type: ignore[misc]
        if type(item) is str:
            if item != "Nothing":
                raise WireError(f'bad value {snippet(item)}: the only bare string is "Nothing"')
            parent[key] = NOTHING
            continue
        if type(item) is not dict or len(item) != 1:
            raise WireError(
                f'bad value {snippet(item)}: expected an object with one tag or "Nothing"'
            )
        ((tag, payload),) = item.items()
        if tag == "Nat":
            parent[key] = _nat(payload, "Nat")
        elif tag == "Bool":
            if type(payload) is not bool:
                raise WireError(f"Bool must be true or false, got {snippet(payload)}")
            parent[key] = payload
        elif tag == "Str":
            if type(payload) is not str:
                raise WireError(f"Str must be a string, got {snippet(payload)}")
            if has_lone_surrogate(payload):
                raise WireError("Str holds a lone surrogate, which is not Unicode text")
            parent[key] = payload
        elif tag == "ObjectRef":
            parent[key] = ObjectRef(_nat(payload, "ObjectRef"))
        elif tag == "TxRef":
            parent[key] = TxRef(_nat(payload, "TxRef"))
        elif tag in _CONTAINERS:
            if depth >= MAX_VALUE_DEPTH:
                raise WireError(f"value nests containers deeper than {MAX_VALUE_DEPTH} levels")
            build, arity = _CONTAINERS[tag]
            children = [payload] if tag == "Just" else payload
            if type(children) is not list or (arity is not None and len(children) != arity):
                shape = "an array" if arity is None else f"an array of {arity}"
                raise WireError(f"{tag} must be {shape}, got {snippet(payload)}")
            slots: list[Value] = [NOTHING] * len(children)
            stack.append(_Finish(build, slots, parent, key))
            stack.extend((child, slots, index, depth + 1) for index, child in enumerate(children))
        else:
            raise WireError(f"bad value: unknown tag {snippet(tag)}")
    return root[0]


# Container tags: how to build the value from its decoded children, and how many there are.
_CONTAINERS: dict[str, tuple[Callable[[list[Value]], Value], int | None]] = {
    "List": (_finish_list, None),
    "Pair": (_finish_pair, 2),
    "Just": (_finish_just, 1),
}
