"""The JSON-lines rendering of a trace: values in the externally tagged form of spec §2.6."""

from __future__ import annotations

import json
from collections.abc import Iterable

from avm_vm.trace.events import VALUE_FIELDS, Event
from avm_vm.trace.record import TraceEntry
from avm_vm.values import Just, NothingType, ObjectRef, Pair, TxRef, Value


def value_json(value: Value) -> str:
    """The externally tagged JSON of spec §2.6, built without recursion."""
    out: list[str] = []
    stack: list[object] = [value]
    while stack:
        item = stack.pop()
        if type(item) is _Raw:
            out.append(item.text)  # type: ignore[attr-defined]
        elif type(item) is bool:
            out.append('{"Bool":true}' if item else '{"Bool":false}')
        elif type(item) is int:
            out.append(f'{{"Nat":{item}}}')
        elif type(item) is str:
            out.append(f'{{"Str":{json.dumps(item)}}}')
        elif type(item) is tuple:
            out.append('{"List":[')
            stack.append(_CLOSE2)
            for index in range(len(item) - 1, -1, -1):
                stack.append(item[index])
                if index:
                    stack.append(_COMMA)
        elif type(item) is Pair:
            out.append('{"Pair":[')
            stack.extend((_CLOSE2, item.second, _COMMA, item.first))
        elif type(item) is NothingType:
            out.append('"Nothing"')
        elif type(item) is Just:
            out.append('{"Just":')
            stack.extend((_CLOSE1, item.value))
        elif type(item) is ObjectRef:
            out.append(f'{{"ObjectRef":{item.id}}}')
        elif type(item) is TxRef:
            out.append(f'{{"TxRef":{item.id}}}')
        else:
            raise TypeError(f"not an AVM value: {item!r}")
    return "".join(out)


class _Raw:
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


_CLOSE1, _CLOSE2, _COMMA = _Raw("}"), _Raw("]}"), _Raw(",")


def event_json(event: Event) -> str:
    """``{"ObjectCreated":{"id":0,"behavior_name":"ping"}}``; one-field events are bare."""
    name = type(event).__name__
    fields = []
    for key, item in zip(event._fields, event, strict=True):
        if key in VALUE_FIELDS:
            text = "null" if item is None else value_json(item)
        elif key == "failure":  # an addition to the §10.6 shape: present only on a failure
            if item is None:
                continue
            text = json.dumps(item._asdict(), separators=(",", ":"))
        else:
            text = json.dumps(item)
        fields.append((key.rstrip("_"), text))
    if len(fields) == 1:
        return f'{{"{name}":{fields[0][1]}}}'
    body = ",".join(f'"{key}":{text}' for key, text in fields)
    return f'{{"{name}":{{{body}}}}}'


def entry_json(entry: TraceEntry) -> str:
    """One JSON line: the §10.6 shape plus ``duct`` and ``reverted``."""
    return (
        f'{{"timestamp":{entry.timestamp},"event_type":{event_json(entry.event)},'
        f'"executing_controller":{json.dumps(entry.controller)},'
        f'"duct":{json.dumps(entry.duct, separators=(",", ":"))},'
        f'"reverted":{json.dumps(entry.reverted)}}}'
    )


def render_json_lines(entries: Iterable[TraceEntry]) -> str:
    return "\n".join(entry_json(entry) for entry in entries)
