"""Trace entries and the trace itself: stamps, controllers, ducts and the reverted flag.

An entry is stamped with the event counter, the executing controller (spec §10.3), a
`reverted` flag (set when the call that made it failed and was undone) and its duct: the
chain of calls that led to it. Ducts are linked lists of `DuctLink`, so a call a million
levels deep costs one link, not a million-long tuple. An `ObjectCalled` entry's duct ends
with the call it reports.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from avm_vm.trace.events import Event, ObjectCalled, StateUpdated


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
    node, runs interleave while others are parked, and undoing a failed call must touch only
    its own run's entries. A call's mark is the clock when it started, not a position:
    dropping one run's entries (profile R) leaves every other run's marks valid.

    Recording is on the path of every object call, and most runs never read their trace: an
    event is kept as a row of plain fields (`record`, `emit`) and becomes a `TraceEntry`
    when `entries` is first read after it, so a run pays for the entry objects only when
    someone looks at them. The rows sit end to end in one flat list: no object per event
    for the garbage collector to track.
    """

    __slots__ = ("_entries", "clock", "pending", "recording", "run")

    def __init__(self, recording: bool = True) -> None:
        self._entries: list[TraceEntry] = []
        # Events not yet made entries, `ROW` fields each: stamp, controller, duct, run, kind
        # and its fields (`record`), or None and the event (`emit`); or a call's events in
        # one row (`record_call`).
        self.pending: list = []
        self.clock = 0  # the next timestamp; never rolled back
        self.recording = recording  # False: count events but keep no entries (benchmarks)
        self.run = 0  # the number of the run now logging

    @property
    def entries(self) -> list[TraceEntry]:
        """Every entry kept, oldest first: a list its readers may also clear."""
        pending = self.pending
        if pending:
            self._entries.extend(_entries(pending))
            pending.clear()
        return self._entries

    def emit(self, event: Event, controller: str | None, duct_link: DuctLink | None) -> None:
        if self.recording:
            row = (self.clock, controller, duct_link, self.run, None, event, None, None, None)
            self.pending += row
        self.clock += 1

    def record(
        self,
        controller: str | None,
        duct_link: DuctLink | None,
        kind: type,
        a: object,
        b: object,
        c: object = None,
    ) -> None:
        """`emit` of the event ``kind(a, b)``, or ``kind(a, b, c)`` when ``c`` is not None
        (so not for an event whose third field may be None), made only if the trace is
        read."""
        if self.recording:
            self.pending += (self.clock, controller, duct_link, self.run, kind, a, b, c, None)
        self.clock += 1

    def record_call(
        self,
        object_id: int,
        behavior: str,
        call_id: int,
        parent: DuctLink | None,
        message: object,
        value: object,
        states: list,
    ) -> None:
        """What a call outside any transaction that simply returned leaves (a leaf call,
        `Runtime.call_leaf`): a `StateUpdated` of ``object_id`` for each of ``states`` it
        wrote, in order, then its `ObjectCalled`, in the call's duct link (``parent``'s,
        extended by the call). One row holds them all, its kind the behavior's name, its
        controller the state written (a list when not one), and its duct the caller's: the
        entries and the call's link are made only when the trace is read, so a call keeps
        nothing alive but the row."""
        clock = self.clock
        if self.recording:
            written = states[0] if len(states) == 1 else states  # states are tuples
            self.pending += (
                clock, written, parent, self.run, behavior, object_id, message, value, call_id
            )  # fmt: skip
        self.clock = clock + len(states) + 1

    def mark(self) -> int:
        """The stamp the next entry gets: `revert_from` and `drop_from` take it."""
        return self.clock

    def _since(self, mark: int) -> int:
        """The index in `entries` of the first entry stamped ``mark`` or later (stamps only
        grow)."""
        return bisect_left(self.entries, mark, key=_stamp)

    def revert_from(self, mark: int) -> None:
        """Flag the running run's entries since ``mark`` as made by a call that was undone."""
        run = self.run
        for entry in self.entries[self._since(mark) :]:
            if entry.run == run:
                entry.reverted = True

    def drop_from(self, mark: int) -> None:
        """Forget the running run's entries since ``mark`` (profile R drops a failed callee's)."""
        run = self.run
        entries = self.entries
        start = self._since(mark)
        entries[start:] = [entry for entry in entries[start:] if entry.run != run]


ROW = 9  # fields of a row of `Trace.pending`


def _entries(rows: list) -> Iterator[TraceEntry]:
    """The entries of the rows of `Trace.pending`, in order."""
    for at in range(0, len(rows), ROW):
        stamp, controller, duct_link, run, kind, a, b, c, d = rows[at : at + ROW]
        if kind is None:  # kept as it was emitted
            yield TraceEntry(stamp, a, controller, duct_link, run)
        elif type(kind) is str:  # a call's row (`record_call`); no transaction, no controller
            link = DuctLink(a, kind, d, duct_link)
            for state in (controller,) if type(controller) is tuple else controller:
                yield TraceEntry(stamp, StateUpdated(a, state), None, link, run)
                stamp += 1
            yield TraceEntry(stamp, ObjectCalled(a, b, c), None, link, run)
        else:
            event = kind(a, b) if c is None else kind(a, b, c)
            yield TraceEntry(stamp, event, controller, duct_link, run)


def _stamp(entry: TraceEntry) -> int:
    return entry.timestamp
