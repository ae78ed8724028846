"""The Mermaid rendering of a trace: a sequence diagram that tells what happened.

Participants are objects (``main`` for the top level); an object created in the trace
appears where it was created. Calls are solid arrows with their message and an activation
bar, answers dashed arrows, failed calls ``--x`` arrows with the failure's reason.
Transactions are coloured boxes around what ran inside them (green committed, red aborted
or rolled back) with a note saying how they ended; state updates, log entries and the
other events are notes over the object that made them. Values are elided as in the text
trace (`avm_vm.value_text.elide`), so a 40-hop PingPong stays readable.
"""

from __future__ import annotations

from collections.abc import Iterable

from avm_vm.trace.events import (
    LogRecorded,
    ObjectCalled,
    ObjectCreated,
    StateUpdated,
    TransactionAborted,
    TransactionCommitted,
    TransactionStarted,
)
from avm_vm.trace.record import DuctLink, TraceEntry
from avm_vm.value_text import ELIDE_WIDTH, cut_text, elide

_MERMAID_ESCAPES = str.maketrans(
    {
        "#": "#35;",
        '"': "#quot;",
        ";": "#59;",
        "%": "#37;",
        "<": "#lt;",
        ">": "#gt;",
        "\n": " ",
        "\r": " ",
    }
)
# Box colours: light enough that arrows and text stay readable on top.
COMMITTED_FILL = "rgba(46, 160, 67, 0.15)"
ABORTED_FILL = "rgba(220, 53, 69, 0.15)"


def mermaid_text(text: str) -> str:
    """Escape what Mermaid's sequence-diagram labels cannot hold literally."""
    return text.translate(_MERMAID_ESCAPES)


class _Diagram:
    """The diagram under construction: declared participants, open calls and open boxes."""

    def __init__(self, outcomes: dict[int, str], inputs: dict[DuctLink, str]) -> None:
        self.outcomes = outcomes  # tx id -> "committed" / "aborted", from a first pass
        self.inputs = inputs  # a call's message, known from its ObjectCalled entry
        self.header = ["sequenceDiagram", "    participant main"]
        self.body: list[str] = []
        self.known: set[int] = set()  # object ids already declared
        self.calls: list[DuctLink] = []  # the open calls, outermost first
        self.depth: dict[DuctLink, int] = {}  # an open call -> its index in ``calls``
        self.boxes: list[tuple[int, int]] = []  # open transactions: (tx id, open calls then)

    def name(self, object_id: int | None, behavior: str = "") -> str:
        """The participant of an object, declared at the top when first seen in a call."""
        if object_id is None:
            return "main"
        if object_id not in self.known:
            self.known.add(object_id)
            label = mermaid_text(f"obj:{object_id} ({behavior})")
            self.header.append(f"    participant o{object_id} as {label}")
        return f"o{object_id}"

    def here(self) -> str:
        """The participant now running: the innermost open call's object, else main."""
        if not self.calls:
            return "main"
        return self.name(self.calls[-1].object_id, self.calls[-1].behavior)

    def note(self, text: str) -> None:
        self.body.append(f"    Note over {self.here()}: {mermaid_text(text)}")

    def follow(self, duct: DuctLink | None) -> None:
        """Bring the open calls to ``duct``: open calls not on it ended without an answer in
        the trace (their run failed); calls new on it start here. Only the new part of the
        duct is walked, so deep call chains cost no more than their calls."""
        new: list[DuctLink] = []
        while duct is not None and duct not in self.depth:
            new.append(duct)
            duct = duct.parent
        keep = 0 if duct is None else self.depth[duct] + 1
        while len(self.calls) > keep:
            self.answer(self.calls[-1], "--x", "no answer")
        for link in reversed(new):
            caller = self.here()
            callee = self.name(link.object_id, link.behavior)
            self.depth[link] = len(self.calls)
            self.calls.append(link)
            self.body.append(f"    {caller}->>+{callee}: {self.inputs.get(link, '')}")

    def answer(self, link: DuctLink, arrow: str, text: str) -> None:
        """Close the innermost call (``link``) and the boxes opened inside it."""
        depth = len(self.calls) - 1
        while self.boxes and self.boxes[-1][1] > depth:
            self.close_box(self.boxes[-1][0], "rolled back (its call ended)")
        del self.depth[self.calls.pop()]
        callee = self.name(link.object_id, link.behavior)
        self.body.append(f"    {callee}{arrow}-{self.here()}: {mermaid_text(text)}")

    def open_box(self, tx: int) -> None:
        fill = COMMITTED_FILL if self.outcomes.get(tx) == "committed" else ABORTED_FILL
        self.body.append(f"    rect {fill}")
        self.boxes.append((tx, len(self.calls)))
        self.note(f"tx:{tx} started")

    def close_box(self, tx: int, how: str) -> None:
        """End the box of ``tx`` (and any box opened inside it and left open)."""
        while self.boxes:
            inner, _ = self.boxes.pop()
            ending = how if inner == tx else "rolled back"
            self.note(f"tx:{inner} {ending}")
            self.body.append("    end")
            if inner == tx:
                return

    def created(self, entry: TraceEntry, event: ObjectCreated) -> None:
        reverted = " (reverted)" if entry.reverted else ""
        if event.id in self.known:  # already drawn (Mermaid creates a participant once)
            self.note(event.text() + reverted)
            return
        creator = self.here()
        self.known.add(event.id)
        label = mermaid_text(f"obj:{event.id} ({event.behavior_name})")
        self.body.append(f"    create participant o{event.id} as {label}")
        self.body.append(f"    {creator}-)o{event.id}: create{reverted}")


def render_mermaid(entries: Iterable[TraceEntry]) -> str:
    """A sequence diagram of the trace's entries, in the order they were logged.

    Entries inside a call carry its duct; a call's own ObjectCalled entry comes when it
    ends. So a call's arrow is drawn at its first entry (walking each entry's duct) and its
    answer at its ObjectCalled entry.
    """
    entries = list(entries)
    outcomes: dict[int, str] = {}
    for entry in entries:
        if type(entry.event) is TransactionCommitted:
            outcomes[entry.event.tx] = "committed"
        elif type(entry.event) is TransactionAborted:
            outcomes[entry.event.tx] = "aborted"
    inputs = {
        entry.duct_link: mermaid_text(elide(entry.event.input))
        for entry in entries
        if type(entry.event) is ObjectCalled and entry.duct_link is not None
    }
    diagram = _Diagram(outcomes, inputs)
    for entry in entries:
        event = entry.event
        kind = type(event)
        diagram.follow(entry.duct_link)
        reverted = " (reverted)" if entry.reverted else ""
        if kind is ObjectCalled and entry.duct_link is not None:
            if event.output is not None:
                diagram.answer(entry.duct_link, "-->>", elide(event.output) + reverted)
            elif event.failure is not None:
                reason = cut_text(event.failure.text(), ELIDE_WIDTH)
                diagram.answer(entry.duct_link, "--x", f"failed: {reason}")
            else:
                diagram.answer(entry.duct_link, "--x", "failed")
        elif kind is ObjectCreated:
            diagram.created(entry, event)
        elif kind is TransactionStarted:
            diagram.open_box(event.tx)
        elif kind in (TransactionCommitted, TransactionAborted):
            how = "committed" if kind is TransactionCommitted else "aborted"
            if any(tx == event.tx for tx, _ in diagram.boxes):
                diagram.close_box(event.tx, how)
            else:
                diagram.note(f"tx:{event.tx} {how}")
        elif kind is StateUpdated:
            diagram.note(f"state = {elide(event.state)}{reverted}")
        elif kind is LogRecorded:
            diagram.note(f"log: {elide(event.value)}{reverted}")
        else:
            diagram.note(cut_text(event.text(), ELIDE_WIDTH) + reverted)
    diagram.follow(None)
    while diagram.boxes:
        diagram.close_box(diagram.boxes[-1][0], "not finished")
    return "\n".join(diagram.header + diagram.body)
