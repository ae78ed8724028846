"""A node's data directory (`avm node --data DIR`): recording events, restarting, replaying.

DIR holds ``node.json`` (the settings the state depends on: name, id prefix, fuel),
``events.log`` (`avm_vm.node.eventlog`) and snapshots (`avm_vm.node.snapshot`). A live
node hands every event to `Recorder.record`, which stamps its time, appends it, makes it
durable, then applies it; only then may the node let its outputs out. `replay` re-executes
a directory's log offline and checks it against what the log recorded. docs/durability.md
describes the formats and the rules.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from avm_vm.node import snapshot
from avm_vm.node.directory import Directory
from avm_vm.node.engine import Engine, Step
from avm_vm.node.eventlog import Event, EventLog, read_events
from avm_vm.node.snapshot import Snapshot
from avm_vm.node.state import StateError, capture, full_hash, restore, state_hash
from avm_vm.runtime import RuntimeOptions

LOG_NAME, META_NAME = "events.log", "node.json"
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
    """Applies events, logging each durably first when there is a log (`--data`)."""

    engine: Engine
    log: EventLog | None = None
    data: Path | None = None
    snapshot_every: int = 10_000
    checkpoint_every: int = 1_000
    last: bytes | None = None  # the digest of the last applied event's step
    since_snapshot: int = 0
    since_checkpoint: int = 0
    snapshot_wanted: bool = False
    taken: list[Snapshot] = field(default_factory=list)  # snapshots taken on demand, for replies

    def record(self, event: Event) -> Step:
        """Log ``event`` durably (when there is a log), then apply it. Runs on the VM thread."""
        event["t"] = now_ms()
        if self.log is not None:
            event["o"] = None if self.last is None else self.last.hex()
            self.log.append(event)
            self.log.sync()
        step = self.engine.apply(event)
        self.last = step.digest()
        self.since_snapshot += 1
        self.since_checkpoint += 1
        if self.log is not None:
            self._housekeeping()
        return step

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
            self.snapshot()

    def snapshot(self) -> Snapshot | None:
        """Write a snapshot now if the engine is quiescent, else on the next quiescent step."""
        if self.data is None or self.engine.runtime.parked:
            self.snapshot_wanted = self.data is not None
            return None
        state = capture(self.engine)
        snap = Snapshot(self.engine.applied, state, state_hash(state), full_hash(state))
        snapshot.write(self.data, snap)
        self.since_snapshot = 0
        if self.snapshot_wanted:
            self.taken.append(snap)
        self.snapshot_wanted = False
        return snap

    def close(self) -> None:
        if self.log is not None:
            self.log.close()


def open_data(
    data: Path, meta: Meta, jit: str, trace: bool, trace_out: Path | None, directory: Directory
) -> tuple[Recorder, int]:
    """Load the latest valid snapshot and replay the log after it; answers the recorder
    (ready to log the next event) and how many events were replayed. The replayed events'
    trace was written when they were live, so replay records none."""
    log, events = EventLog.open(data / LOG_NAME)
    engine = Engine(meta.options(jit, record_trace=False), directory)
    snap = snapshot.latest(data, len(events))
    if snap is not None:
        restore(engine, snap.state)
    start = engine.applied
    last = None
    for event in events[start:]:
        last = engine.apply(event).digest()
    replayed = len(events) - start
    engine.runtime.trace.recording, engine.trace_out = trace, trace_out
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
    if meta is None or not (data / LOG_NAME).exists():
        raise DataError(f"{data} is not a node data directory (no {META_NAME} or {LOG_NAME})")
    events = read_events(data / LOG_NAME)
    snaps = [s for s in map(snapshot.read, snapshot.paths(data)) if s is not None]
    by_index = {s.index: s for s in snaps}
    engine = Engine(meta.options(), Directory(meta.name, meta.prefix))
    report = ReplayReport()
    usable = [s for s in snaps if s.index <= len(events)]
    if not from_start and usable:
        restore(engine, usable[-1].state)
        report.start = usable[-1].index
        if not _state_matches(engine, usable[-1].full_hash, report):
            report.divergence = f"the snapshot at event {report.start} does not restore to its hash"
            return report
    last: bytes | None = None
    for index in range(report.start, len(events)):
        event = events[index]
        kind = event.get("k", "?")
        recorded = event.get("o")
        if last is not None and recorded is not None:
            report.checked_outputs += 1
            if recorded != last.hex():
                report.divergence = _diverged(index - 1, events[index - 1], "its outputs differ")
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
