"""The trace (spec §10): events, entries with their duct, and the text/JSON/Mermaid renderings.

An entry is stamped with the event counter, the executing controller (spec §10.3), a
`reverted` flag (set when the call that made it failed and was undone, DESIGN.md §12) and
its duct: the chain of calls that led to it (DESIGN.md §7). Ducts are linked lists of
`DuctLink`, so a call a million levels deep costs one link, not a million-long tuple.
An `ObjectCalled` entry's duct ends with the call it reports.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import NamedTuple

from avm_vm.values import Just, NothingType, ObjectRef, Pair, TxRef, Value, render

# ------------------------------------------------------------------------------ events


class ObjectCreated(NamedTuple):
    id: int
    behavior_name: str

    def text(self) -> str:
        return f"created obj:{self.id} (behavior: {self.behavior_name})"


class ObjectDestroyed(NamedTuple):
    id: int

    def text(self) -> str:
        return f"destroyed obj:{self.id}"


class ObjectCalled(NamedTuple):
    id: int
    input: Value
    output: Value | None  # None: the callee failed

    def text(self) -> str:
        arrow = "" if self.output is None else f" -> {render(self.output)}"
        return f"called obj:{self.id} with {render(self.input)}{arrow}"


class MessageReceived(NamedTuple):
    id: int
    input: Value

    def text(self) -> str:
        return f"obj:{self.id} received {render(self.input)}"


class ObjectMoved(NamedTuple):
    id: int
    from_: str
    to: str

    def text(self) -> str:
        return f"moved obj:{self.id} from machine:{self.from_} to machine:{self.to}"


class ExecutionMoved(NamedTuple):
    from_: str
    to: str

    def text(self) -> str:
        return f"execution moved from machine:{self.from_} to machine:{self.to}"


class ObjectFetched(NamedTuple):
    id: int
    machine: str

    def text(self) -> str:
        return f"fetched obj:{self.id} to machine:{self.machine}"


class ObjectTransferred(NamedTuple):
    id: int
    from_: str  # "none" when the object had no controller
    to: str

    def text(self) -> str:
        return f"transferred obj:{self.id} from ctrl:{self.from_} to ctrl:{self.to}"


class ObjectFrozen(NamedTuple):
    id: int
    controller: str

    def text(self) -> str:
        return f"froze obj:{self.id} via ctrl:{self.controller}"


class FunctionUpdated(NamedTuple):
    name: str

    def text(self) -> str:
        return f"updated function {self.name}"


class BehaviorUpgraded(NamedTuple):
    """A code load replaced a behavior's code (`avm load`); hashes in hex. A node's event,
    outside spec §10.4's catalogue (`Event`): no instruction emits it."""

    behavior: str
    old_hash: str
    new_hash: str

    def text(self) -> str:
        return f"upgraded behavior {self.behavior}: {self.old_hash[:12]} -> {self.new_hash[:12]}"


class TransactionStarted(NamedTuple):
    tx: int

    def text(self) -> str:
        return f"tx started: tx:{self.tx}"


class TransactionCommitted(NamedTuple):
    tx: int

    def text(self) -> str:
        return f"tx committed: tx:{self.tx}"


class TransactionAborted(NamedTuple):
    tx: int

    def text(self) -> str:
        return f"tx aborted: tx:{self.tx}"


class StateUpdated(NamedTuple):
    id: int

    def text(self) -> str:
        return f"state updated: obj:{self.id}"


Event = (
    ObjectCreated
    | ObjectDestroyed
    | ObjectCalled
    | MessageReceived
    | ObjectMoved
    | ExecutionMoved
    | ObjectFetched
    | ObjectTransferred
    | ObjectFrozen
    | FunctionUpdated
    | TransactionStarted
    | TransactionCommitted
    | TransactionAborted
    | StateUpdated
)

# Fields that hold values (JSON-encoded per spec §2.6); the others are ids or names.
_VALUE_FIELDS = frozenset({"input", "output"})

# ------------------------------------------------------------------------------ entries


class DuctLink:
    """One call in a duct: the called object, its behavior, the call id, and the caller's link."""

    __slots__ = ("behavior", "call_id", "object_id", "parent")

    def __init__(
        self, object_id: int, behavior: str, call_id: int, parent: DuctLink | None
    ) -> None:
        self.object_id = object_id
        self.behavior = behavior
        self.call_id = call_id
        self.parent = parent

    def chain(self) -> tuple[tuple[int, str, int], ...]:
        """The duct from the outermost call inward."""
        links = []
        link: DuctLink | None = self
        while link is not None:
            links.append((link.object_id, link.behavior, link.call_id))
            link = link.parent
        return tuple(reversed(links))


class TraceEntry:
    __slots__ = ("controller", "duct_link", "event", "reverted", "run", "timestamp")

    def __init__(
        self,
        timestamp: int,
        event: Event,
        controller: str | None,
        duct_link: DuctLink | None,
        run: int = 0,
    ) -> None:
        self.timestamp = timestamp
        self.event = event
        self.controller = controller
        self.duct_link = duct_link
        self.reverted = False
        self.run = run  # the top-level run that logged it (a node interleaves parked runs)

    @property
    def duct(self) -> tuple[tuple[int, str, int], ...]:
        return () if self.duct_link is None else self.duct_link.chain()

    def __repr__(self) -> str:
        return f"TraceEntry({self.timestamp}, {self.event!r}, reverted={self.reverted})"


class Trace:
    """The entries of a run and the event counter that stamps them (spec §10.1, §10.2).

    Entries carry the number of the run that logged them (`run`, set by the runtime): on a
    node, runs served while another is parked log between its entries, and undoing a failed
    call must touch only its own run's entries.
    """

    __slots__ = ("clock", "entries", "recording", "run")

    def __init__(self, recording: bool = True) -> None:
        self.entries: list[TraceEntry] = []
        self.clock = 0  # the next timestamp; never rolled back
        self.recording = recording  # False: count events but keep no entries (benchmarks)
        self.run = 0  # the number of the run now logging

    def emit(self, event: Event, controller: str | None, duct_link: DuctLink | None) -> None:
        if self.recording:
            self.entries.append(TraceEntry(self.clock, event, controller, duct_link, self.run))
        self.clock += 1

    def mark(self) -> int:
        return len(self.entries)

    def revert_from(self, mark: int) -> None:
        """Flag the running run's entries since ``mark`` as made by a call that was undone."""
        run = self.run
        for entry in self.entries[mark:]:
            if entry.run == run:
                entry.reverted = True

    def drop_from(self, mark: int) -> None:
        """Forget the running run's entries since ``mark`` (profile R drops a failed callee's)."""
        run = self.run
        self.entries[mark:] = [entry for entry in self.entries[mark:] if entry.run != run]


# ------------------------------------------------------------------------------ text


def entry_text(entry: TraceEntry, duct: bool = False) -> str:
    """``[4] called obj:1 with ...`` (spec §10.6), then the controller, reverted mark, duct."""
    parts = [f"[{entry.timestamp}] {entry.event.text()}"]
    if entry.controller is not None:
        parts.append(f" @ctrl:{entry.controller}")
    if entry.reverted:
        parts.append(" (reverted)")
    if duct:
        parts.append(f"  {{{duct_text(entry.duct)}}}")
    return "".join(parts)


def render_text(entries: Iterable[TraceEntry], duct: bool = False) -> str:
    return "\n".join(entry_text(entry, duct) for entry in entries)


def duct_text(chain: tuple[tuple[int, str, int], ...], keep: int = 2) -> str:
    """``main > #0 obj:0 ping > #1 obj:1 pong``, eliding the middle of long chains."""
    links = [f"#{call_id} obj:{obj} {behavior}" for obj, behavior, call_id in chain]
    if len(links) > 2 * keep + 1:
        links = [*links[:keep], f"..{len(links) - 2 * keep} more..", *links[-keep:]]
    return " > ".join(["main", *links])


# ------------------------------------------------------------------------------ JSON


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
        if key in _VALUE_FIELDS:
            text = "null" if item is None else value_json(item)
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


# ------------------------------------------------------------------------------ Mermaid


_MERMAID_ESCAPES = str.maketrans({"#": "#35;", '"': "#quot;", ";": "#59;", "\n": " "})


def mermaid_text(text: str) -> str:
    """Escape what Mermaid's sequence-diagram labels cannot hold literally."""
    return text.translate(_MERMAID_ESCAPES)


def render_mermaid(entries: Iterable[TraceEntry]) -> str:
    """A sequence diagram of the calls: an arrow per call, a dashed arrow per answer.

    ObjectCalled entries come in post-order; their call ids number the calls in the order
    they started, so sorting by call id and keeping a stack of open calls gives the arrows
    in the order they happened.
    """
    calls = sorted(
        (e for e in entries if type(e.event) is ObjectCalled and e.duct_link is not None),
        key=lambda e: e.duct_link.call_id,  # type: ignore[union-attr]
    )
    names: dict[int | None, str] = {None: "main"}
    lines = ["sequenceDiagram", "    participant main"]
    body: list[str] = []

    def participant(link: DuctLink | None) -> str:
        key = None if link is None else link.object_id
        if key not in names:
            names[key] = f"o{key}"
            lines.append(
                f"    participant o{key} as {mermaid_text(f'obj:{key} ({link.behavior})')}"
            )  # type: ignore[union-attr]
        return names[key]

    open_calls: list[TraceEntry] = []

    def close(entry: TraceEntry) -> None:
        link = entry.duct_link
        callee, caller = participant(link), participant(link.parent)  # type: ignore[union-attr]
        event: ObjectCalled = entry.event  # type: ignore[assignment]
        if event.output is None:
            body.append(f"    {callee}--x{caller}: failed")
        else:
            note = " (reverted)" if entry.reverted else ""
            body.append(f"    {callee}-->>{caller}: {mermaid_text(render(event.output))}{note}")

    for entry in calls:
        link = entry.duct_link
        while open_calls and open_calls[-1].duct_link is not link.parent:  # type: ignore[union-attr]
            close(open_calls.pop())
        caller, callee = participant(link.parent), participant(link)  # type: ignore[union-attr]
        event = entry.event
        body.append(f"    {caller}->>{callee}: {mermaid_text(render(event.input))}")  # type: ignore[union-attr]
        open_calls.append(entry)
    while open_calls:
        close(open_calls.pop())
    return "\n".join(lines + body)
