"""A node's data directory (`avm node --data DIR`): recording events, restarting, replaying.

DIR holds ``node.json`` (the settings the state depends on: name, id prefix, fuel), the
event log's segments (`avm_vm.node.eventlog`) and snapshots (`avm_vm.node.snapshot`). A live
node hands every event to `Recorder.record`, which stamps its time, appends it and applies
it; the node lets the event's outputs out only once it is durable (`Recorder.flush`, or at
once with `Recorder.sync_each`). `replay` re-executes a directory's log offline and checks
it against what the log recorded. docs/durability.md describes the formats and the rules.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn

from avm_vm.node import snapshot
from avm_vm.node.directory import Directory
from avm_vm.node.engine import Engine, Step
from avm_vm.node.eventlog import (
    MAGIC,
    Damage,
    DamageError,
    Event,
    EventLog,
    LogTail,
    LogWriteError,
    advice,
    read_log,
    scan_log,
    scan_segment,
    segments,
    sync_dir,
)
from avm_vm.node.logs import logger
from avm_vm.node.snapshot import Snapshot
from avm_vm.node.state import StateError, StateTexts, capture, full_hash, restore, state_hash
from avm_vm.runtime.core import RuntimeOptions

META_NAME = "node.json"
# The version of the runtime's rules a log's runs depend on: raise it whenever the same
# events could end differently (fuel costs, limits, error kinds or messages that a program
# can observe). 1: no value budget; 2: fuel charged by value size and a value budget;
# 3: a callee's failure reason reaches `call!` and `atomic ... else (err)`; 4: remote calls
# inside a transaction join it, and a commit checks that nothing it read has changed.
SEMANTICS = 4
LOCK_NAME = "lock"  # held (flock) by the node or `avm log repair` using the directory
ENTROPY_EVERY = 10_000  # events between fresh entropy events (one is logged at each start)
RESTARTED = {"fail": "the node restarted"}  # the answer a run parked before a restart gets


class DataError(Exception):
    """The data directory cannot be used; the message says why."""


class DataLock:
    """An exclusive lock on a data directory, held while a process uses it: two nodes on
    one directory would hand out the same object ids and mix their logs. The holder's pid
    is written into the lock file so that the one refused can say who holds it; the kernel
    drops the lock when the holder exits, however it exits."""

    def __init__(self, data: Path, holder: str) -> None:
        data.mkdir(parents=True, exist_ok=True)
        path = data / LOCK_NAME
        self.fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            who = os.pread(self.fd, 200, 0).decode(errors="replace").strip() or "unknown"
            self.release()
            raise DataError(
                f"{data} is in use by another process ({who}; lock file {path}): only one "
                "node (or `avm log repair`) may use a data directory at a time; stop that "
                "process first, or give this node another --data directory"
            ) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"pid {os.getpid()}, {holder}\n".encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the lock
            self.fd = None


def _remove_leftovers(data: Path) -> None:
    """Temporary files a process killed while writing a snapshot, a new segment or
    node.json leaves behind: their contents never became part of the directory."""
    for pattern in ("snapshot-*.tmp", "events-*.log.tmp", META_NAME + ".tmp"):
        for path in data.glob(pattern):
            logger.info("removing %s, left by an interrupted write", path)
            path.unlink(missing_ok=True)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Meta:
    """What a node's state depends on besides its events."""

    name: str
    prefix: int
    fuel: int
    max_value_bytes: int = RuntimeOptions.max_value_bytes
    # The semantics the log's events were run under (`SEMANTICS`), and the first event
    # run under it: events before were logged by an older avm.
    semantics: int = SEMANTICS
    semantics_from: int = 0
    profile: str = RuntimeOptions.profile

    def options(self, jit: str = RuntimeOptions.jit, record_trace: bool = False) -> RuntimeOptions:
        return RuntimeOptions(
            fuel=self.fuel,
            max_value_bytes=self.max_value_bytes,
            machine=self.name,
            node_prefix=self.prefix,
            record_trace=record_trace,
            jit=jit,
            profile=self.profile,
        )


def read_meta(data: Path) -> Meta | None:
    path = data / META_NAME
    if not path.exists():
        return None
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
        budget = int(obj.get("max_value_bytes", RuntimeOptions.max_value_bytes))
        # Before the key existed: version 2 brought the value budget, version 1 had neither.
        semantics = int(obj.get("semantics", 2 if "max_value_bytes" in obj else 1))
        since = int(obj.get("semantics_from", 0))
        if semantics < 1 or since < 0:
            raise ValueError("semantics must be a version from 1, semantics_from an index")
        meta = Meta(str(obj["name"]), int(obj["prefix"]), int(obj["fuel"]), budget)
        profile = str(obj.get("profile", RuntimeOptions.profile))
        return replace(meta, semantics=semantics, semantics_from=since, profile=profile)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"{path} is unreadable: {error}") from None


def settle_meta(
    data: Path,
    name: str,
    prefix: int | None,
    port_prefix: int,
    fuel: int,
    max_value_bytes: int = RuntimeOptions.max_value_bytes,
    profile: str = RuntimeOptions.profile,
) -> Meta:
    """The directory's settings, written on first use; a restart must not change them
    (``prefix`` None: keep the stored one), since runs replay within the same budgets
    and rules."""
    data.mkdir(parents=True, exist_ok=True)
    stored = read_meta(data)
    if stored is None:
        meta = Meta(name, port_prefix if prefix is None else prefix, fuel, max_value_bytes)
        meta = replace(meta, profile=profile)
        write_meta(data, meta)
        return meta
    wanted = {
        "name": name,
        "prefix": stored.prefix if prefix is None else prefix,
        "fuel": fuel,
        "max_value_bytes": max_value_bytes,
        "profile": profile,
    }
    for key, value in wanted.items():
        if getattr(stored, key) != value:
            raise DataError(
                f"{data} belongs to a node with {key} {getattr(stored, key)!r}, not {value!r}"
            )
    return stored


def write_meta(data: Path, meta: Meta) -> None:
    """Replace node.json atomically."""
    tmp = data / (META_NAME + ".tmp")
    tmp.write_text(json.dumps(vars(meta)), encoding="utf-8")
    os.replace(tmp, data / META_NAME)


def _settle_semantics(data: Path, meta: Meta, start: int, end: int) -> Meta:
    """A directory written by an avm whose runs could end differently (`SEMANTICS`) may
    only go on if no event of that older avm remains to be replayed: replaying them here
    could rebuild a state other than the one its clients were answered from. When none
    does (its latest snapshot is at the end of the log), the directory moves to this
    version from the next event on."""
    if meta.semantics == SEMANTICS:
        return meta
    if end > start:
        raise DataError(
            f"{data} was written by an older avm (runtime semantics version "
            f"{meta.semantics}; this avm runs version {SEMANTICS}): its {end - start} "
            f"events after event {start} would be replayed under different rules (fuel "
            "costs, error messages), which could rebuild a state its clients were never "
            "answered from. Start the node once with the avm that wrote it, take a "
            "snapshot (`avm snapshot NODE`) and stop it; this avm then starts from that "
            "snapshot"
        )
    logger.info(
        "%s moves from runtime semantics version %d to %d at event %d",
        data,
        meta.semantics,
        SEMANTICS,
        end,
    )
    upgraded = replace(meta, semantics=SEMANTICS, semantics_from=end)
    write_meta(data, upgraded)
    return upgraded


@dataclass
class Recorder:
    """Applies events, logging each first when there is a log (`--data`).

    Group commit: with ``sync_each`` (the default) `record` makes each event durable before
    it applies it, one fsync per event. With ``sync_each`` off, `record` appends the event to
    the log's buffer and applies it, and `flush` makes every event recorded so far durable
    with one write and one fsync; the caller must flush before any output of those events
    (an answer, a request, a notice) leaves the node. `pending` tells whether a flush is due.
    `flush` may run on another thread than `record`, but never at the same time as it (or
    as `snapshot`): whoever flushes holds the VM meanwhile. The writes `seal` answers and the
    jobs `snapshot_job` answers run one at a time in the order they were made, and may run
    while `record` does: they touch only what was sealed or captured, and the log's file.
    """

    engine: Engine
    log: EventLog | None = None
    data: Path | None = None
    snapshot_every: int = 10_000
    checkpoint_every: int = 1_000
    sync_each: bool = True
    # A node writes its log on its VM thread while the loop records: when it sees
    # `snapshot_wanted`, its group commit captures the state and writes the snapshot on that
    # thread after the commit's write (`snapshot_job`), so no two writers meet in the log.
    defer_snapshots: bool = False
    last: bytes | None = None  # the digest of the last applied event's step
    # `engine.applied` at the last snapshot and checkpoint (or where the log was opened):
    # the events since are counted from these, not one by one.
    snapshot_at: int = 0
    checkpoint_at: int = 0
    snapshot_wanted: bool = False
    # Events that may be applied before `_housekeeping` has anything to do. It works this
    # out from the intervals each time it runs (a change of them counts from then on), so
    # most events pay a subtraction instead of its checks.
    quiet: int = 0
    # Jobs `snapshot_job` answered, and those of them finished (each count written by one
    # thread at a time: whoever holds the VM, and the writer).
    snapshots_begun: int = 0
    snapshots_done: int = 0
    lock: DataLock | None = None  # the data directory's lock, released by `close`
    # The text of each object and state as the last checkpoint or snapshot printed it.
    texts: StateTexts = field(default_factory=StateTexts)

    @property
    def snapshot_writing(self) -> bool:
        """Whether a job `snapshot_job` answered has not finished: it may yet start a new
        segment, so the log's writes must run after it, where it runs."""
        return self.snapshots_done != self.snapshots_begun

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
        if self.log is not None:  # digests are for replay: without a log nobody reads them
            self.last = step.digest()
            self.quiet -= 1
            if self.quiet <= 0:
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
            return nothing_to_write
        data, count = log.seal()

        def write() -> None:
            try:
                log.write(data, count)
            except LogWriteError as error:
                log.broken = f"this node applied events its log could not keep ({error})"
                raise

        return write

    def _housekeeping(self) -> None:
        """Entropy, checkpoint and snapshot events that fall due after an event.

        Checkpoints and snapshots capture the whole state, a cost that grows with the
        store, so they come at least one event per object apart (`checkpoint_every` and
        `snapshot_every` are the least): what they cost per event stays the same as the
        store grows, instead of reaching many times what the events themselves cost."""
        engine = self.engine
        if engine.applied % ENTROPY_EVERY == 0:
            self.record({"k": "entropy", "bytes": os.urandom(32).hex(), "boot": False})
        if engine.unsettled:
            return  # checkpoints and snapshots wait for a quiescent point: check each event
        objects = len(engine.runtime.store.objects)
        checkpoint_every = max(self.checkpoint_every, objects)
        snapshot_every = max(self.snapshot_every, objects)
        if engine.applied - self.checkpoint_at >= checkpoint_every:
            self.checkpoint_at = engine.applied
            self.record({"k": "checkpoint", "full": self.texts.capture(engine).full_hash()})
        if self.snapshot_wanted or engine.applied - self.snapshot_at >= snapshot_every:
            if self.defer_snapshots:
                self.snapshot_wanted = True
                return  # the node takes it at its next write (`snapshot_job`)
            try:
                self.snapshot()
            except OSError as error:  # the log still has every event: only restarts slow down
                self.snapshot_at, self.snapshot_wanted = engine.applied, False
                logger.warning("warning: a snapshot could not be completed: %s", error)
        applied = engine.applied
        self.quiet = min(
            ENTROPY_EVERY - applied % ENTROPY_EVERY,
            self.checkpoint_at + checkpoint_every - applied,
            self.snapshot_at + snapshot_every - applied,
        )

    def snapshot(self) -> Snapshot | None:
        """Write a snapshot now if the engine is quiescent, else on the next quiescent step.
        The events it covers are made durable first; then the log starts a new segment, so
        a restart from this snapshot reads nothing older."""
        if self.data is None or self.engine.unsettled:
            self.snapshot_wanted = self.data is not None
            self.quiet = 0  # the next event looks again
            return None
        self.flush()
        return self.snapshot_job()()

    def snapshot_job(self) -> Callable[[], Snapshot]:
        """Capture the state of a quiescent engine now, for a snapshot at the events
        recorded so far, which must all be sealed (`seal`). Calling the answer hashes and
        writes the snapshot and starts the log's next segment at its index: it runs where
        the log's writes run, after the write of those events, and needs neither the VM nor
        the recorder meanwhile, so events may be recorded while it writes."""
        self._refuse_ahead()
        state, index, data = self.texts.capture(self.engine), self.engine.applied, self.data
        assert data is not None
        node = (self.engine.here, self.engine.runtime.options.node_prefix)
        self.snapshot_at, self.quiet = index, 0
        self.snapshot_wanted = False
        self.snapshots_begun += 1

        def write() -> Snapshot:
            try:
                self._refuse_ahead()  # the write of its events failed
                snap = Snapshot(index, state, state.state_hash(), state.full_hash(), node)
                snapshot.write(data, snap)
                if self.log is not None:
                    self.log.rotate(index)
                return snap
            finally:
                self.snapshots_done += 1

        return write

    def _refuse_ahead(self) -> None:
        if self.log is not None and self.log.broken is not None:
            # The engine applied events the log lacks: a snapshot of it would be ahead of
            # the log, a state no replay of the log reaches.
            raise LogWriteError(f"no snapshot is written: {self.log.broken}")

    def close(self) -> None:
        """Flush and close the log (what a failed flush lost stays lost), then let go of
        the directory."""
        try:
            if self.log is not None:
                self.log.close()
        finally:
            if self.lock is not None:
                self.lock.release()


def nothing_to_write() -> None:
    """What `Recorder.seal` answers when no event awaits a write."""


def _start_point(
    data: Path, meta: Meta, snaps: Iterable[Snapshot], repair: bool
) -> tuple[Snapshot | None, LogTail]:
    """The first of ``snaps`` the log continues from, or None for the start of the log;
    and the log from there on, read only from the segment that holds that event. A
    snapshot past the end of the log means acknowledged events are missing: an error,
    never a silent step back to an older state."""
    for snap in snaps:
        _check_snapshot(snap, meta)
        tail = read_log(data, snap.index, repair)
        if snap.index > tail.end:
            raise DamageError(
                Damage(
                    tail.files[-1][1] if tail.files else data,
                    0,
                    f"the log ends at event {tail.end}, but {snap.path} holds a state "
                    f"after {snap.index} events: the events between were acknowledged and "
                    "are missing from the log",
                    tail.end,
                ),
                "Restore the missing segments from a backup; starting from the snapshot "
                "would leave a log that does not lead to its state",
            )
        if tail.start <= snap.index:
            return snap, tail
        logger.warning(
            "warning: not using the snapshot at event %d: the log's segments before event "
            "%d are gone",
            snap.index,
            tail.start,
        )
    tail = read_log(data, 0, repair)
    if tail.start > 0:
        raise DataError(
            f"the log of {data} begins at event {tail.start} (the segments before it are "
            "gone) and no intact snapshot it continues from is left: the state cannot be "
            "rebuilt"
        )
    return None, tail


def _check_snapshot(snap: Snapshot, meta: Meta) -> None:
    """Refuse a snapshot whose content, though checksummed, cannot be this node's."""
    assert snap.path is not None and isinstance(snap.state, dict)  # one read from a file
    if snap.node is not None and snap.node != (meta.name, meta.prefix):
        snapshot.refuse(
            snap.path,
            f"it belongs to the node {snap.node[0]!r} with id prefix {snap.node[1]}, not to "
            f"{meta.name!r} with id prefix {meta.prefix}",
        )
    applied = snap.state.get("applied")
    if applied != snap.index:
        snapshot.refuse(snap.path, f"its state reflects {applied!r} events, not {snap.index}")
    if full_hash(snap.state) != snap.full_hash or state_hash(snap.state) != snap.state_hash:
        snapshot.refuse(snap.path, "its state does not match the hashes it records")


def _restore(engine: Engine, snap: Snapshot) -> None:
    assert snap.path is not None and isinstance(snap.state, dict)  # one read from a file
    try:
        restore(engine, snap.state)
    except StateError as error:
        snapshot.refuse(snap.path, str(error))


_ID = (0, (1 << 64) - 1)
_PREFIX = (0, 0xFFFF)
# The fields of each kind of event and what they hold: a type, or (low, high) for an int.
# A field that may hold null may also be absent (fields added later): a resume event's `run`
# (logs written before it resumed the newest parked run), a call's transaction.
_FIELDS: dict[str, dict[str, Any]] = {
    "load": {"tape": str, "upgrade": bool},
    "entropy": {"bytes": str, "boot": bool},
    "peer": {"machine": str, "prefix": (_PREFIX, None), "version": ((0, 1 << 16), None)},
    "client_call": {"target": _ID, "input": object},
    "client_create": {"behavior": str, "controller": (str, None)},
    "call": {
        "target": _ID,
        "input": object,
        "sender": _ID,
        "duct": list,
        "tx": (_ID, None),
        "coordinator": (str, None),
        "controller": (str, None),
    },
    "prepare": {"tx": _ID},
    "decide": {"tx": _ID, "commit": bool},
    "acked": {"tx": _ID, "machine": str},
    "teleport": {"activation": dict},
    "resume": {"answer": dict, "run": ((1, 1 << 62), None)},
    "install": {"object_id": _ID, "object": dict},
    "forget": {"object_id": _ID, "machine": str},
    "learn": {"object_id": _ID, "machine": str},
    "unlearn": {"object_id": _ID, "machine": str},
    "checkpoint": {"full": str},
    "intent": {"target": _ID, "offer": object, "check": object, "wait": (0, 1 << 62)},
    "intent_batch": {"intents": list},
    "intent_expired": {"intent": _ID},
}


def _fits(value: Any, kind: Any) -> bool:
    if kind is None:
        return value is None
    if isinstance(kind, tuple) and len(kind) == 2 and isinstance(kind[0], int):
        return type(value) is int and kind[0] <= value <= kind[1]
    if isinstance(kind, tuple):
        return any(_fits(value, one) for one in kind)
    return kind is object or type(value) is kind


def event_problem(event: Event) -> str | None:
    """What is wrong with the outline of a logged event (kind, fields, their types), or
    None; the values inside are checked by applying it."""
    kind = event.get("k")
    if kind not in _FIELDS:
        return f"unknown event kind {kind!r}"
    wanted = {"k": str, "t": (0, 1 << 62), "o": (str, None), **_FIELDS[kind]}
    for key, shape in wanted.items():
        if key not in event and not _fits(None, shape):
            return f"the {kind} event has no field {key!r}"
        if not _fits(event.get(key), shape):
            return f"the {kind} event's field {key!r} holds {_brief(event.get(key))}"
    return None


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _checked_events(data: Path, tail: LogTail, start: int) -> list[Event]:
    """The events from ``start`` on, each with a well-formed outline."""
    for index in range(start, tail.end):
        problem = event_problem(tail.events[index - tail.start])
        if problem is not None:
            _bad_event(data, tail, index, problem)
    return tail.since(start)


def _bad_event(data: Path, tail: LogTail, index: int, why: str) -> NoReturn:
    path, offset = tail.position(index)
    damage = Damage(path, offset, f"event {index} cannot be replayed: {why}", index)
    raise DamageError(damage, advice(data, index))


def open_data(
    data: Path, meta: Meta, jit: str, trace: bool, trace_out: Path | None, directory: Directory
) -> tuple[Recorder, int]:
    """Load the newest valid snapshot and replay the log after it (reading only the
    segments from the snapshot on); answers the recorder (ready to log the next event) and
    how many events were replayed. The replayed events' trace was written when they were
    live, so replay records none. Damaged data raises `DamageError` (a `LogError`)."""
    _remove_leftovers(data)
    snap, tail = _start_point(data, meta, snapshot.newest_first(data), repair=True)
    _settle_semantics(data, meta, 0 if snap is None else snap.index, tail.end)
    engine = Engine(meta.options(jit, record_trace=False), directory)
    if snap is not None:
        _restore(engine, snap)
    start = engine.applied
    last = None
    for offset, event in enumerate(_checked_events(data, tail, start)):
        try:
            last = engine.apply(event).digest()
        except Exception as error:  # data from disk: a misfit is an error, never a crash
            _bad_event(data, tail, start + offset, repr(error))
    replayed = tail.end - start
    engine.runtime.trace.recording, engine.trace_out = trace, trace_out
    log = EventLog(data, tail.end)
    recorder = Recorder(engine, log, data, last=last, snapshot_at=start, checkpoint_at=tail.end)
    return recorder, replayed


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
    problems = scan_log(data)[1]  # every segment, whichever replay starts from
    if problems:
        raise DamageError(problems[0], advice(data, problems[0].index))
    snaps = list(snapshot.newest_first(data))
    report = ReplayReport()
    if from_start:
        tail, origin = read_log(data), None
        if tail.start > 0:  # the oldest segments were removed: begin as early as possible
            report.notes.append(
                f"the log no longer holds events 0 to {tail.start - 1} (their segments were "
                "removed): replay began at the oldest snapshot the log continues from"
            )
            origin, tail = _start_point(data, meta, reversed(snaps), repair=False)
    else:
        origin, tail = _start_point(data, meta, snaps, repair=False)
    by_index = {s.index: s for s in snaps}
    older = meta.semantics_from if meta.semantics == SEMANTICS else tail.end
    if report.start < older:
        report.notes.append(
            f"events {report.start} to {older - 1} were logged by an older avm (other "
            "runtime semantics): a difference among them may come from that"
        )
    engine = Engine(meta.options(), Directory(meta.name, meta.prefix))
    texts = StateTexts()
    if origin is not None:
        _restore(engine, origin)
        report.start = origin.index
        if not _state_matches(engine, texts, origin.full_hash, report):
            report.divergence = f"the snapshot at event {report.start} does not restore to its hash"
            return report
    events = _checked_events(data, tail, report.start)
    last: bytes | None = None
    for offset, event in enumerate(events):
        index = report.start + offset
        kind = event["k"]
        recorded = event.get("o")
        if last is not None and recorded is not None:
            report.checked_outputs += 1
            if recorded != last.hex():
                report.divergence = _diverged(tail, index - 1, "its outputs differ")
                return report
        if kind == "checkpoint" and not _state_matches(engine, texts, event["full"], report):
            report.divergence = _diverged(
                tail, index, "the state it records differs from the replayed state"
            )
            return report
        try:
            last = engine.apply(event).digest()
        except Exception as error:  # any failure to re-apply is a divergence, not a crash
            report.divergence = _diverged(tail, index, f"it cannot be applied: {error!r}")
            return report
        report.replayed += 1
        snap = by_index.get(engine.applied)
        if (
            snap is not None
            and engine.applied > report.start
            and not _state_matches(engine, texts, snap.full_hash, report)
        ):
            report.divergence = _diverged(tail, index, "the snapshot's state hash differs")
            return report
    try:
        report.final_hash = state_hash(capture(engine))
    except StateError:
        report.notes.append(f"the log ends with {len(engine.runtime.parked)} parked run(s)")
    return report


def _state_matches(engine: Engine, texts: StateTexts, expected: str, report: ReplayReport) -> bool:
    report.checked_states += 1
    try:
        return texts.capture(engine).full_hash() == expected
    except StateError:
        return False


def _diverged(tail: LogTail, index: int, why: str) -> str:
    path, at = tail.position(index)
    return f"event {index} ({tail.events[index - tail.start]['k']}, {path} at byte {at}): {why}"


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


# --------------------------------------------------------------------------- avm log


@dataclass
class Verified:
    """What `verify` found: problems (each naming a file and offset) and harmless notes."""

    events: int  # the events readable from the start of the log to the first damage
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    bad_snapshots: list[Path] = field(default_factory=list)


def verify(data: Path) -> Verified:
    """Read every segment and snapshot of ``data`` and report what is wrong, changing
    nothing (`avm log verify`)."""
    meta = read_meta(data)
    if meta is None or not segments(data):
        raise DataError(f"{data} is not a node data directory (no {META_NAME} or event log)")
    tail, damages, torn = scan_log(data)
    found = Verified(tail.end, [str(damage) for damage in damages])
    if torn is not None:
        found.notes.append(
            f"{torn.path} ends in a torn tail at byte {torn.torn} (a write that never "
            "finished, so never acknowledged): the node drops it at its next start"
        )
    bad = _first_bad_event(tail)
    if bad is not None:
        found.problems.append(str(bad))
    if tail.start > 0:
        found.notes.append(f"the segments before event {tail.start} were removed")
    for path in snapshot.paths(data):
        try:
            snap = snapshot.read(path)
            if snap is not None:
                _check_snapshot(snap, meta)
        except DamageError as error:
            found.problems.append(str(error.damage))
            found.bad_snapshots.append(path)
            continue
        if snap is None:
            found.problems.append(f"{path} at byte 0: its checksum does not match its content")
            found.bad_snapshots.append(path)
        elif not damages and snap.index > tail.end:
            found.problems.append(
                f"{path} at byte 0: it holds the state after {snap.index} events, but the log "
                f"ends at event {tail.end}: acknowledged events are missing from the log"
            )
    for pattern in ("*.tmp", "discarded-*"):
        for path in sorted(data.glob(pattern)):
            found.notes.append(f"{path} is left over (from an interrupted write or a repair)")
    return found


def _first_bad_event(tail: LogTail) -> Damage | None:
    """The first readable event whose outline is wrong."""
    for offset, event in enumerate(tail.events):
        problem = event_problem(event)
        if problem is not None:
            index = tail.start + offset
            path, at = tail.position(index)
            return Damage(path, at, f"event {index} cannot be replayed: {problem}", index)
    return None


@dataclass
class RepairPlan:
    """What `avm log repair` would discard: nothing is deleted, only moved aside."""

    keep: int  # the log keeps the events before this index
    cut: tuple[Path, int] | None  # a segment cut at this offset (its original is kept)
    moved: list[Path]  # files moved aside whole
    discarded: list[str]  # the events and unreadable bytes discarded, in words

    def describe(self, data: Path) -> str:
        lines = [f"repair of {data}: the log keeps its events 0 to {self.keep - 1}"]
        lines += [f"  discards {item}" for item in self.discarded]
        if self.cut is not None:
            lines.append(f"  cuts {self.cut[0]} at byte {self.cut[1]} (a copy is kept)")
        lines += [f"  moves aside {path}" for path in self.moved]
        if len(lines) == 1:
            lines.append("  nothing to discard: the directory has no problem a repair fixes")
        return "\n".join(lines)


def plan_repair(data: Path, truncate_at: int | None) -> RepairPlan:
    """Which events and files a repair keeping the events before ``truncate_at`` (None:
    every readable one, if the log is undamaged) moves aside: the later events, the
    snapshots after them, and the damaged snapshots."""
    found = verify(data)
    meta = read_meta(data)
    assert meta is not None
    tail, damages, torn = scan_log(data)
    bad = _first_bad_event(tail)
    first = bad or (damages[0] if damages else None)
    limit = tail.end if first is None else first.index
    keep = limit if truncate_at is None else truncate_at
    if first is not None and truncate_at is None:
        raise DataError(
            f"the log is damaged: {first}. Give --truncate-at N to keep only the events "
            f"before N (N at most {limit})"
        )
    if keep > limit or keep < tail.start:
        raise DataError(
            f"--truncate-at must be between {tail.start} (where the log begins now) and "
            f"{limit} (" + ("the end of the log)" if first is None else f"the damage: {first})")
        )
    snaps = [
        snap
        for path in snapshot.paths(data)
        if path not in found.bad_snapshots and (snap := snapshot.read(path)) is not None
    ]
    if tail.start > 0 and not any(tail.start <= snap.index <= keep for snap in snaps):
        raise DataError(
            f"the log of {data} begins at event {tail.start} and no snapshot at or before "
            f"event {keep} is left to start from: keeping fewer events leaves no state"
        )
    moved = [*found.bad_snapshots, *(snap.path for snap in snaps if snap.index > keep)]
    if keep < tail.end:
        cut: tuple[Path, int] | None = tail.position(keep)
    elif damages and damages[0].offset > 0:
        cut = (damages[0].path, damages[0].offset)
    elif torn is not None and torn.torn:
        cut = (torn.path, torn.torn)
    else:
        cut = None
    kept_segments = [path for _, path in tail.files]
    if cut is not None:
        kept_segments = kept_segments[: kept_segments.index(cut[0]) + 1]
    later = [path for _, path in segments(data) if path not in kept_segments]
    discarded = [_event_line(tail, index) for index in range(keep, tail.end)]
    discarded += [f"unreadable data: {damage}" for damage in damages]
    for path in later:
        scan = scan_segment(path, 0, newest=False)
        discarded += [
            f"a {event.get('k')!r} event in {path} at byte {at}"
            for event, at in zip(scan.events, scan.offsets, strict=True)
        ]
    return RepairPlan(keep, cut, [*later, *(p for p in moved if p is not None)], discarded)


def _event_line(tail: LogTail, index: int) -> str:
    path, at = tail.position(index)
    return f"event {index} ({tail.events[index - tail.start].get('k')!r}) in {path} at byte {at}"


def repair(data: Path, plan: RepairPlan) -> Path:
    """Carry out ``plan`` (the caller holds the directory's `DataLock`): copy the segment
    to cut and move the discarded files into a new ``discarded-<UTC time>`` directory, then
    cut. Answers that directory."""
    aside = data / time.strftime("discarded-%Y%m%dT%H%M%SZ", time.gmtime())
    aside.mkdir()
    (aside / "repair.txt").write_text(plan.describe(data) + "\n", encoding="utf-8")
    if plan.cut is not None:
        shutil.copy2(plan.cut[0], aside / plan.cut[0].name)
    for path in plan.moved:
        os.replace(path, aside / path.name)
    sync_dir(aside)
    if plan.cut is not None:  # last: until here, the directory lost nothing
        with plan.cut[0].open("r+b") as out:
            out.truncate(max(plan.cut[1], len(MAGIC)))
            os.fsync(out.fileno())
    sync_dir(data)
    return aside
