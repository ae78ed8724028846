"""A node's data directory (`avm node --data DIR`): recording events, restarting, replaying.

DIR holds ``node.json`` (the settings the state depends on: name, id prefix, fuel), the
event log's segments (`avm_vm.node.eventlog`) and snapshots (`avm_vm.node.snapshot`). A live
node hands every event to `Recorder.record`, which stamps its time, appends it and applies
it; the node lets the event's outputs out only once it is durable (`Recorder.flush`, or at
once with `Recorder.sync_each`). `replay` re-executes a directory's log offline and checks
it against what the log recorded. docs/durability.md describes the formats and the rules.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from avm_vm.node import snapshot
from avm_vm.node.directory import Directory
from avm_vm.node.engine import Engine, Step
from avm_vm.node.eventlog import Event, EventLog, LogTail, LogWriteError, read_log, segments
from avm_vm.node.logs import logger
from avm_vm.node.snapshot import Snapshot
from avm_vm.node.state import StateError, capture, full_hash, restore, state_hash
from avm_vm.runtime.core import RuntimeOptions

META_NAME = "node.json"
ENTROPY_EVERY = 10_000  # events between fresh entropy events (one is logged at each start)
RESTARTED = {"fail": "the node restarted"}  # the answer a run parked before a restart gets


class DataError(Exception):
    """The data directory cannot be used; the message says why."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Meta:
    """What a node's state depends on besides its events."""

    name: str
    prefix: int
    fuel: int

    def options(self, jit: str = RuntimeOptions.jit, record_trace: bool = False) -> RuntimeOptions:
        return RuntimeOptions(
            fuel=self.fuel,
            machine=self.name,
            node_prefix=self.prefix,
            record_trace=record_trace,
            jit=jit,
        )


def read_meta(data: Path) -> Meta | None:
    path = data / META_NAME
    if not path.exists():
        return None
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
        return Meta(str(obj["name"]), int(obj["prefix"]), int(obj["fuel"]))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"{path} is unreadable: {error}") from None


def settle_meta(data: Path, name: str, prefix: int | None, port_prefix: int, fuel: int) -> Meta:
    """The directory's settings, written on first use; a restart must not change them
    (``prefix`` None: keep the stored one)."""
    data.mkdir(parents=True, exist_ok=True)
    stored = read_meta(data)
    if stored is None:
        meta = Meta(name, port_prefix if prefix is None else prefix, fuel)
        tmp = data / (META_NAME + ".tmp")
        tmp.write_text(json.dumps(vars(meta)), encoding="utf-8")
        os.replace(tmp, data / META_NAME)
        return meta
    wanted = {"name": name, "prefix": stored.prefix if prefix is None else prefix, "fuel": fuel}
    for key, value in wanted.items():
        if getattr(stored, key) != value:
            raise DataError(
                f"{data} belongs to a node with {key} {getattr(stored, key)!r}, not {value!r}"
            )
    return stored


@dataclass
class Recorder:
    """Applies events, logging each first when there is a log (`--data`).

    Group commit: with ``sync_each`` (the default) `record` makes each event durable before
    it applies it, one fsync per event. With ``sync_each`` off, `record` appends the event to
    the log's buffer and applies it, and `flush` makes every event recorded so far durable
    with one write and one fsync; the caller must flush before any output of those events
    (an answer, a request, a notice) leaves the node. `pending` tells whether a flush is due.
    `flush` may run on another thread than `record`, but never at the same time as it (or
    as `snapshot`): whoever flushes holds the VM meanwhile.
    """

    engine: Engine
    log: EventLog | None = None
    data: Path | None = None
    snapshot_every: int = 10_000
    checkpoint_every: int = 1_000
    sync_each: bool = True
    # A node writes its log on its VM thread while the loop records: it takes snapshots
    # there too, when it sees `snapshot_wanted`, so that no two writers meet in the log.
    defer_snapshots: bool = False
    last: bytes | None = None  # the digest of the last applied event's step
    since_snapshot: int = 0
    since_checkpoint: int = 0
    snapshot_wanted: bool = False

    @property
    def pending(self) -> bool:
        """Whether recorded events await `flush` (their outputs must wait too)."""
        return self.log is not None and self.log.pending

    def record(self, event: Event) -> Step:
        """Log ``event`` (durably, with ``sync_each``), then apply it."""
        event["t"] = now_ms()
        if self.log is not None:
            event["o"] = None if self.last is None else self.last.hex()
            self.log.append(event)
            if self.sync_each:
                self.log.flush()  # if this fails, the event is dropped before it is applied
        return self._applied(self.engine.apply(event))

    def proceed(self, sliced: bool = False) -> Step:
        """Go on with the run the last step left preempted (`Engine.proceed`)."""
        return self._applied(self.engine.proceed(sliced))

    def _applied(self, step: Step) -> Step:
        """Book an applied event's step, once its run has stopped (not while preempted)."""
        if step.preempted:
            return step
        self.since_snapshot += 1
        self.since_checkpoint += 1
        if self.log is not None:  # digests are for replay: without a log nobody reads them
            self.last = step.digest()
            self._housekeeping()
        return step

    def flush(self) -> None:
        """Make every recorded event durable with one write and one fsync (nothing to do
        without a log or pending events). If that fails, the log is left as it was before
        and `LogWriteError` says why; those events were applied here but are not in the
        log, so the log refuses everything after: restart the node to go on from its log."""
        self.seal()()

    def seal(self) -> Callable[[], None]:
        """Take what was recorded so far; calling the answer makes it durable, as `flush`
        does. It may run on another thread while more is recorded, so a node computes its
        next batch during the fsync; calls run one at a time, in the order of their seals."""
        log = self.log
        if log is None or not log.pending:
            return _nothing
        data, count = log.seal()

        def write() -> None:
            try:
                log.write(data, count)
            except LogWriteError as error:
                log.broken = f"this node applied events its log could not keep ({error})"
                raise

        return write

    def _housekeeping(self) -> None:
        """Entropy, checkpoint and snapshot events that fall due after an event."""
        engine = self.engine
        applied = engine.applied
        if applied % ENTROPY_EVERY == 0:
            self.record({"k": "entropy", "bytes": os.urandom(32).hex(), "boot": False})
        if engine.runtime.parked:
            return  # checkpoints and snapshots wait for a quiescent point
        if self.since_checkpoint >= self.checkpoint_every:
            self.since_checkpoint = 0
            self.record({"k": "checkpoint", "full": full_hash(capture(engine))})
        if self.snapshot_wanted or self.since_snapshot >= self.snapshot_every:
            if self.defer_snapshots:
                self.snapshot_wanted = True
                return
            try:
                self.snapshot()
            except OSError as error:  # the log still has every event: only restarts slow down
                self.since_snapshot, self.snapshot_wanted = 0, False
                logger.warning("warning: a snapshot could not be completed: %s", error)

    def snapshot(self) -> Snapshot | None:
        """Write a snapshot now if the engine is quiescent, else on the next quiescent step.
        The events it covers are made durable first; then the log starts a new segment, so
        a restart from this snapshot reads nothing older."""
        if self.data is None or self.engine.runtime.parked:
            self.snapshot_wanted = self.data is not None
            return None
        self.flush()
        state = capture(self.engine)
        snap = Snapshot(self.engine.applied, state, state_hash(state), full_hash(state))
        snapshot.write(self.data, snap)
        self.since_snapshot = 0
        self.snapshot_wanted = False
        if self.log is not None:
            self.log.rotate()
        return snap

    def close(self) -> None:
        """Flush and close the log (what a failed flush lost stays lost)."""
        if self.log is not None:
            self.log.close()


def _nothing() -> None:
    pass


def _start_point(
    data: Path, snaps: Iterable[Snapshot], repair: bool
) -> tuple[Snapshot | None, LogTail]:
    """The first of ``snaps`` the log continues from, or None for the start of the log;
    and the log from there on, read only from the segment that holds that event."""
    for snap in snaps:
        tail = read_log(data, snap.index, repair)
        if tail.start <= snap.index <= tail.end:
            return snap, tail
        why = (
            f"the log ends before it, at event {tail.end}"
            if snap.index > tail.end
            else f"the log's segments before event {tail.start} are gone"
        )
        logger.warning("warning: not using the snapshot at event %d: %s", snap.index, why)
    tail = read_log(data, 0, repair)
    if tail.start > 0:
        raise DataError(
            f"the log of {data} begins at event {tail.start} (the segments before it are "
            "gone) and no intact snapshot it continues from is left: the state cannot be "
            "rebuilt"
        )
    return None, tail


def open_data(
    data: Path, meta: Meta, jit: str, trace: bool, trace_out: Path | None, directory: Directory
) -> tuple[Recorder, int]:
    """Load the newest valid snapshot and replay the log after it (reading only the
    segments from the snapshot on); answers the recorder (ready to log the next event) and
    how many events were replayed. The replayed events' trace was written when they were
    live, so replay records none."""
    snap, tail = _start_point(data, snapshot.newest_first(data), repair=True)
    engine = Engine(meta.options(jit, record_trace=False), directory)
    if snap is not None:
        restore(engine, snap.state)
    start = engine.applied
    last = None
    for event in tail.since(start):
        last = engine.apply(event).digest()
    replayed = tail.end - start
    engine.runtime.trace.recording, engine.trace_out = trace, trace_out
    log = EventLog(data, tail.end)
    return Recorder(engine, log, data, last=last, since_snapshot=replayed), replayed


# --------------------------------------------------------------------------- avm replay


@dataclass
class ReplayReport:
    replayed: int = 0
    start: int = 0  # the index replay began at (a snapshot's, or 0)
    checked_outputs: int = 0
    checked_states: int = 0
    final_hash: str | None = None
    divergence: str | None = None  # the first difference found, in words
    notes: list[str] = field(default_factory=list)


def replay(data: Path, from_start: bool = False) -> ReplayReport:
    """Re-execute the log of ``data`` without a network, checking each event's outputs
    against the digest the next event recorded, each checkpoint's and snapshot's hash."""
    meta = read_meta(data)
    if meta is None or not segments(data):
        raise DataError(f"{data} is not a node data directory (no {META_NAME} or event log)")
    snaps = list(snapshot.newest_first(data))
    report = ReplayReport()
    if from_start:
        tail, origin = read_log(data), None
        if tail.start > 0:  # the oldest segments were removed: begin as early as possible
            report.notes.append(
                f"the log no longer holds events 0 to {tail.start - 1} (their segments were "
                "removed): replay began at the oldest snapshot the log continues from"
            )
            origin, tail = _start_point(data, reversed(snaps), repair=False)
    else:
        origin, tail = _start_point(data, snaps, repair=False)
    by_index = {s.index: s for s in snaps}
    engine = Engine(meta.options(), Directory(meta.name, meta.prefix))
    if origin is not None:
        restore(engine, origin.state)
        report.start = origin.index
        if not _state_matches(engine, origin.full_hash, report):
            report.divergence = f"the snapshot at event {report.start} does not restore to its hash"
            return report
    events = tail.since(report.start)
    last: bytes | None = None
    for offset, event in enumerate(events):
        index = report.start + offset
        kind = event.get("k", "?")
        recorded = event.get("o")
        if last is not None and recorded is not None:
            report.checked_outputs += 1
            if recorded != last.hex():
                report.divergence = _diverged(index - 1, events[offset - 1], "its outputs differ")
                return report
        if kind == "checkpoint" and not _state_matches(engine, event["full"], report):
            report.divergence = _diverged(
                index, event, "the state it records differs from the replayed state"
            )
            return report
        try:
            last = engine.apply(event).digest()
        except Exception as error:  # any failure to re-apply is a divergence, not a crash
            report.divergence = _diverged(index, event, f"it cannot be applied: {error!r}")
            return report
        report.replayed += 1
        snap = by_index.get(engine.applied)
        if (
            snap is not None
            and engine.applied > report.start
            and not _state_matches(engine, snap.full_hash, report)
        ):
            report.divergence = _diverged(index, event, "the snapshot's state hash differs")
            return report
    try:
        report.final_hash = state_hash(capture(engine))
    except StateError:
        report.notes.append(f"the log ends with {len(engine.runtime.parked)} parked run(s)")
    return report


def _state_matches(engine: Engine, expected: str, report: ReplayReport) -> bool:
    report.checked_states += 1
    try:
        return full_hash(capture(engine)) == expected
    except StateError:
        return False


def _diverged(index: int, event: Event, why: str) -> str:
    return f"event {index} ({event.get('k', '?')}): {why}"


def describe(report: ReplayReport, data: Path) -> str:
    origin = f"snapshot at event {report.start}" if report.start else "the start"
    lines = [f"replayed {report.replayed} events of {data} from {origin}"]
    lines.append(
        f"checked the outputs of {report.checked_outputs} events "
        f"and {report.checked_states} recorded state hashes"
    )
    lines += report.notes
    if report.divergence is not None:
        lines.append(f"MISMATCH: first diverging event: {report.divergence}")
    else:
        lines.append(f"match; state hash {report.final_hash}")
    return "\n".join(lines)
