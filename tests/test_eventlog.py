"""The data layer of durable nodes, in-process (docs/durability.md): group commit (one write
and one fsync per flush), what a failed write leaves behind (fault injection on os.write,
os.fsync and os.ftruncate), log segments started at snapshots, restarts that read only the
segments after the newest snapshot, and data directories from before segments."""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from value_strategies import values

from avm_vm.format.bytecode import encode
from avm_vm.node import eventlog, snapshot
from avm_vm.node.codec import value_to_json
from avm_vm.node.directory import Directory
from avm_vm.node.durable import SEMANTICS, DataError, Recorder, open_data, replay, settle_meta
from avm_vm.node.engine import Step
from avm_vm.node.eventlog import (
    LEGACY_NAME,
    EventLog,
    LogError,
    LogWriteError,
    read_log,
    segment_name,
    segments,
)
from avm_vm.node.state import capture, full_hash
from avm_vm.runtime.runs import Done
from avm_vm.values import Just, ObjectRef, Value
from avmc.compiler import compile_source

TALLY = """
behavior tally {
  field total = 0
  on ["add", n] { total += n; return total }
}
"""
NAME, PREFIX, FUEL = "a", 7, 10_000_000


def reopen(data: Path, **options: Any) -> Recorder:
    """The recorder a node restarting on ``data`` gets (JIT off: these tests are about I/O)."""
    meta = settle_meta(data, NAME, PREFIX, PREFIX, FUEL)
    recorder, _ = open_data(data, meta, "off", False, None, Directory(NAME, PREFIX))
    for key, value in options.items():
        setattr(recorder, key, value)
    return recorder


def fresh(data: Path, **options: Any) -> tuple[Recorder, int]:
    """A recorder on a new data directory with one tally object, all of it durable."""
    recorder = reopen(data, **options)
    tape = base64.b64encode(encode(compile_source(TALLY, "tally.avm"))).decode()
    recorder.record({"k": "load", "tape": tape, "upgrade": False})
    step = recorder.record({"k": "client_create", "behavior": "tally", "controller": None})
    recorder.flush()
    assert type(step.outcome) is Done and isinstance(step.outcome.value, ObjectRef)
    return recorder, step.outcome.value.id


def add(recorder: Recorder, target: int, n: int) -> Any:
    """Record a client call ``["add", n]``; answers the tally's new total."""
    event = {"k": "client_call", "target": target, "input": {"List": [{"Str": "add"}, {"Nat": n}]}}
    step = recorder.record(event)
    assert type(step.outcome) is Done and type(step.outcome.value) is Just, step
    return step.outcome.value.value


def added(data: Path) -> list[int]:
    """The arguments of the calls the log holds, in order."""
    return [e["input"]["List"][1]["Nat"] for e in read_log(data).events if e["k"] == "client_call"]


def state(recorder: Recorder) -> str:
    return full_hash(capture(recorder.engine))


def restarted_state(data: Path) -> str:
    """The state a restart on ``data`` rebuilds."""
    again = reopen(data)
    try:
        return state(again)
    finally:
        again.close()


class LogIO:
    """Counts os.write, os.fsync and os.ftruncate calls on the recorder's current log file,
    and makes chosen ones fail: ``fail["fsync"] = 2`` fails the second fsync from now on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, recorder: Recorder) -> None:
        self.recorder = recorder
        self.calls: Counter[str] = Counter()
        self.fail: dict[str, int] = {}
        self.short = False  # a failing write first writes half its bytes, as a full disk may
        self.error = errno.ENOSPC
        for name in ("write", "fsync", "ftruncate"):
            monkeypatch.setattr(os, name, self._wrap(name, getattr(os, name)))

    def _wrap(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def fake(fd: int, *args: Any) -> Any:
            log = self.recorder.log
            if log is None or fd != log.fd:
                return real(fd, *args)
            self.calls[name] += 1
            if self.calls[name] == self.fail.get(name):
                if name == "write" and self.short:
                    self.short = False
                    self.fail[name] += 1  # the write the kernel cut short, then the full disk
                    return real(fd, args[0][: len(args[0]) // 2])
                raise OSError(self.error, os.strerror(self.error))
            return real(fd, *args)

        return fake


# --------------------------------------------------------------------------- group commit


def test_a_flush_makes_a_whole_batch_durable_with_one_write_and_one_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder, target = fresh(tmp_path, sync_each=False)
    io = LogIO(monkeypatch, recorder)
    totals = [add(recorder, target, n) for n in range(1, 51)]
    assert totals[-1] == sum(range(1, 51))  # applied before they are durable
    assert recorder.pending and io.calls == Counter()
    assert added(tmp_path) == []  # nothing of the batch is on disk yet
    recorder.flush()
    assert io.calls == Counter(write=1, fsync=1)
    assert not recorder.pending and added(tmp_path) == list(range(1, 51))
    recorder.flush()  # nothing pending: no I/O at all
    assert io.calls == Counter(write=1, fsync=1)
    recorder.close()


def test_sync_each_makes_every_event_durable_before_it_is_applied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder, target = fresh(tmp_path)  # sync_each is the default
    io = LogIO(monkeypatch, recorder)
    for n in range(1, 11):
        add(recorder, target, n)
        assert not recorder.pending and added(tmp_path)[-1] == n
    assert io.calls == Counter(write=10, fsync=10)
    recorder.close()


def test_without_a_log_flush_does_nothing(tmp_path: Path) -> None:
    with_log = reopen(tmp_path)
    recorder = Recorder(with_log.engine)  # a node without --data
    recorder.record({"k": "entropy", "bytes": "00" * 32, "boot": False})
    assert not recorder.pending
    recorder.flush()
    assert recorder.snapshot() is None
    with_log.close()


def test_housekeeping_events_share_the_batch_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder, target = fresh(tmp_path, sync_each=False, checkpoint_every=3)
    io = LogIO(monkeypatch, recorder)
    for n in range(1, 11):
        add(recorder, target, n)
    assert io.calls == Counter()
    recorder.flush()
    assert io.calls == Counter(write=1, fsync=1)
    events = read_log(tmp_path).events
    assert [e["k"] for e in events].count("checkpoint") >= 3
    assert len(events) == recorder.engine.applied  # the checkpoints were flushed too
    recorder.close()


def test_checkpoints_and_snapshots_space_out_as_the_store_grows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Capturing the state costs in proportion to the store, so checkpoints and snapshots
    come at least one event per object apart: what they cost per event does not grow with
    the store (with 100,000 objects, a checkpoint every 1,000 events made logging 20 times
    slower)."""
    recorder, target = fresh(tmp_path, sync_each=False, checkpoint_every=3, snapshot_every=4)
    taken: list[int] = []
    write = snapshot.write

    def noted(directory: Path, snap: snapshot.Snapshot) -> Path:
        taken.append(snap.index)
        return write(directory, snap)

    monkeypatch.setattr(snapshot, "write", noted)
    for n in range(1, 9):  # one object: every 3 and 4 events
        add(recorder, target, n)
    early_checkpoints, early_snapshots = recorder.engine.applied, len(taken)
    for _ in range(39):
        recorder.record({"k": "client_create", "behavior": "tally", "controller": None})
    start = recorder.engine.applied
    for n in range(1, 201):  # 40 objects: every 40 events at the least
        add(recorder, target, n)
    recorder.flush()
    events = read_log(tmp_path).events
    checkpoints = [i for i, e in enumerate(events) if e["k"] == "checkpoint"]
    assert len([i for i in checkpoints if i < early_checkpoints]) >= 2
    later = [i for i in checkpoints if i > start]
    assert len(later) >= 3
    assert min(b - a for a, b in pairwise(later)) >= 40
    assert early_snapshots >= 2
    spaced = [i for i in taken if i > start]
    assert len(spaced) >= 3
    assert min(b - a for a, b in pairwise(spaced)) >= 40
    recorder.close()


def test_housekeeping_falls_on_the_same_events_as_when_every_event_checks(
    tmp_path: Path,
) -> None:
    """Between housekeeping points a recorder only counts down (`Recorder.quiet`); its
    checkpoints and snapshots must land exactly where a check after every event puts them,
    while the store grows past the intervals and after an interval changes."""

    def kinds(data: Path, check_each: bool) -> list[str]:
        recorder, target = fresh(data, sync_each=False, checkpoint_every=5, snapshot_every=7)
        for n in range(1, 121):
            if check_each:
                recorder.quiet = 0
            if n % 4 == 0:  # the store grows to 31 objects, past both intervals
                recorder.record({"k": "client_create", "behavior": "tally", "controller": None})
            else:
                add(recorder, target, n)
            if n == 90:
                recorder.checkpoint_every = 3  # a store of this size still decides
        recorder.flush()
        recorder.close()
        snapshots = [p.name for p in sorted(data.glob("snapshot-*"))]
        return [e["k"] for e in read_log(data).events] + snapshots

    counted = kinds(tmp_path / "counted", check_each=False)
    checked = kinds(tmp_path / "checked", check_each=True)
    assert counted == checked
    assert counted.count("checkpoint") >= 10


def test_a_snapshot_is_written_only_after_its_events_are_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder, target = fresh(tmp_path, sync_each=False)
    for n in range(1, 8):
        add(recorder, target, n)
    write = snapshot.write
    seen: list[tuple[int, int, bool]] = []

    def check(directory: Path, snap: snapshot.Snapshot) -> Path:
        seen.append((snap.index, read_log(directory).end, recorder.pending))
        return write(directory, snap)

    monkeypatch.setattr(snapshot, "write", check)
    snap = recorder.snapshot()
    assert snap is not None and seen == [(snap.index, snap.index, False)]
    assert [start for start, _ in segments(tmp_path)] == [0, snap.index]
    recorder.close()


# --------------------------------------------------------------------------- failed writes


@pytest.mark.parametrize("at", [1, 3])
@pytest.mark.parametrize("fault", ["write", "short write", "fsync"])
def test_a_failed_flush_leaves_the_log_as_it_was(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    fault: str,
    at: int,
) -> None:
    recorder, target = fresh(tmp_path, sync_each=False)
    io = LogIO(monkeypatch, recorder)
    io.fail[fault.split()[-1]] = at
    io.short = fault == "short write"
    io.error = errno.EIO if fault == "fsync" else errno.ENOSPC
    acked: list[int] = []  # calls whose flush returned: their answers may have gone out
    n = 0
    for _ in range(10):
        batch = list(range(n + 1, n + 8))
        n += 7
        for value in batch:
            add(recorder, target, value)
        size = os.path.getsize(recorder.log.path)  # type: ignore[union-attr]
        try:
            recorder.flush()
        except LogWriteError as error:
            failure = str(error)
            break
        acked += batch
    else:
        pytest.fail("the injected fault never happened")
    assert len(acked) == 7 * (at - 1)
    expected = "the disk is out of space" if fault != "fsync" else "writing failed"
    assert expected in failure and "7 event(s) could not be written" in failure
    assert os.path.getsize(recorder.log.path) == size  # type: ignore[union-attr]
    with pytest.raises(LogWriteError, match="restart the node to continue from its log"):
        add(recorder, target, 1000)  # its state is ahead of the log: it takes nothing more
    recorder.close()
    monkeypatch.undo()
    caplog.clear()
    again = reopen(tmp_path)
    assert "warning" not in caplog.text  # nothing torn to drop: it was cut back
    assert added(tmp_path) == acked
    assert add(again, target, 0) == sum(acked)
    again.close()


def test_a_failed_cut_back_leaves_a_tail_the_restart_drops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    recorder, target = fresh(tmp_path, sync_each=False)
    for n in range(1, 6):
        add(recorder, target, n)
    recorder.flush()
    io = LogIO(monkeypatch, recorder)
    io.fail.update(write=1, ftruncate=1)
    io.short = True
    for n in range(6, 30):
        add(recorder, target, n)
    with pytest.raises(LogWriteError, match="cutting the log back failed too"):
        recorder.flush()
    with pytest.raises(LogWriteError, match="takes no more events"):
        add(recorder, target, 1000)  # nothing may follow what the failed flush left
    recorder.close()
    monkeypatch.undo()
    again = reopen(tmp_path)
    assert "dropped a torn tail" in caplog.text
    # Every acknowledged call is kept; of the failed batch, at most the records the short
    # write completed survive (their answers never went out: like a crash before a flush).
    kept = added(tmp_path)
    assert kept[:5] == [1, 2, 3, 4, 5] and kept == list(range(1, len(kept) + 1))
    assert len(kept) < 29
    assert add(again, target, 0) == sum(kept)
    again.close()


def test_with_sync_each_a_full_disk_refuses_the_event_and_the_node_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder, target = fresh(tmp_path)
    add(recorder, target, 1)
    io = LogIO(monkeypatch, recorder)
    io.fail["write"] = 1
    applied = recorder.engine.applied
    with pytest.raises(LogWriteError, match="the disk is out of space"):
        add(recorder, target, 2)
    assert recorder.engine.applied == applied  # dropped before it was applied
    monkeypatch.undo()  # space again
    assert add(recorder, target, 3) == 4
    recorder.close()
    assert added(tmp_path) == [1, 3]
    report = replay(tmp_path, from_start=True)
    assert report.divergence is None and report.final_hash is not None


# --------------------------------------------------------------------------- segments


def filled(data: Path, calls: int, snapshot_every: int) -> tuple[Recorder, int]:
    """A directory with ``calls`` calls, flushed in batches of 8, snapshots as configured."""
    recorder, target = fresh(data, sync_each=False, snapshot_every=snapshot_every)
    for n in range(1, calls + 1):
        add(recorder, target, n)
        if n % 8 == 0:
            recorder.flush()
    recorder.flush()
    return recorder, target


def snapshot_indexes(data: Path) -> list[int]:
    return [snap.index for snap in snapshot.newest_first(data)][::-1]


def scanned(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the segment files read from now on."""
    names: list[str] = []
    scan = eventlog.scan_segment

    def spy(path: Path, start: int, newest: bool) -> eventlog.Scan:
        names.append(path.name)
        return scan(path, start, newest)

    monkeypatch.setattr(eventlog, "scan_segment", spy)
    return names


def test_each_snapshot_starts_a_segment_and_a_restart_reads_only_the_newest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder, _ = filled(tmp_path, 95, snapshot_every=20)
    before = state(recorder)
    end = recorder.engine.applied
    recorder.close()
    starts = [start for start, _ in segments(tmp_path)]
    snaps = snapshot_indexes(tmp_path)
    assert len(snaps) == snapshot.KEEP and len(starts) >= 5
    assert set(snaps) <= set(starts)  # every snapshot kept begins a segment
    tail = read_log(tmp_path)  # all segments follow each other: the whole log
    assert tail.start == 0 and tail.end == end
    names = scanned(monkeypatch)
    meta = settle_meta(tmp_path, NAME, PREFIX, PREFIX, FUEL)
    again, replayed = open_data(tmp_path, meta, "off", False, None, Directory(NAME, PREFIX))
    assert names == [segment_name(snaps[-1])]
    assert replayed == end - snaps[-1]
    assert state(again) == before
    again.close()
    assert replay(tmp_path, from_start=True).divergence is None


def test_a_snapshot_without_its_segment_is_read_from_the_segment_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash after a snapshot was written but before the new segment was created."""
    recorder, target = fresh(tmp_path, sync_each=False)
    for n in range(1, 6):
        add(recorder, target, n)
    monkeypatch.setattr(EventLog, "rotate", lambda log, start: None)
    snap = recorder.snapshot()
    monkeypatch.undo()
    for n in range(6, 9):
        add(recorder, target, n)
    before = state(recorder)
    recorder.close()
    assert snap is not None and [start for start, _ in segments(tmp_path)] == [0]
    assert restarted_state(tmp_path) == before


def test_a_snapshot_job_written_while_events_are_recorded_starts_its_segment_at_its_index(
    tmp_path: Path,
) -> None:
    """As a node does it: the state is captured at a seal, and the snapshot and the new
    segment are written after that seal's write, while later events are being recorded
    (and even sealed); those go to the new segment, which starts at the snapshot."""
    recorder, target = fresh(tmp_path, sync_each=False)
    for n in range(1, 6):
        add(recorder, target, n)
    write = recorder.seal()
    job = recorder.snapshot_job()
    at = recorder.engine.applied
    add(recorder, target, 6)  # recorded before the snapshot is written...
    write()
    add(recorder, target, 7)
    later = recorder.seal()  # ...and one sealed before it, written after it
    snap = job()
    later()
    add(recorder, target, 8)
    before = state(recorder)
    recorder.close()
    assert snap.index == at and snapshot_indexes(tmp_path) == [at]
    assert [start for start, _ in segments(tmp_path)] == [0, at]
    assert read_log(tmp_path, at).start == at
    assert added(tmp_path) == list(range(1, 9))
    assert restarted_state(tmp_path) == before
    assert replay(tmp_path, from_start=True).divergence is None


def test_a_snapshot_job_after_a_failed_write_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The events it covers never reached the log: a snapshot would be ahead of the log."""
    recorder, target = fresh(tmp_path, sync_each=False)
    add(recorder, target, 1)
    write = recorder.seal()
    job = recorder.snapshot_job()

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(LogWriteError, match="out of space"):
        write()
    monkeypatch.undo()
    with pytest.raises(LogWriteError, match="no snapshot is written"):
        job()
    assert snapshot_indexes(tmp_path) == [] and len(segments(tmp_path)) == 1
    recorder.close()


def test_a_segment_that_cannot_be_created_leaves_the_log_in_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    recorder, target = fresh(tmp_path, sync_each=False)
    add(recorder, target, 1)
    replace = os.replace

    def full(source: Any, target: Any) -> None:
        if str(target).endswith(".log"):
            raise OSError(errno.ENOSPC, "No space left on device")
        replace(source, target)

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError, match="No space"):
        recorder.snapshot()  # asked for: the caller hears why it failed
    recorder.snapshot_every = 2
    add(recorder, target, 2)
    add(recorder, target, 3)  # a periodic one: a warning, and the event stands
    assert "warning: a snapshot could not be completed" in caplog.text
    monkeypatch.undo()
    add(recorder, target, 4)
    before = state(recorder)
    recorder.close()
    assert sorted(path.name for path in tmp_path.glob("events*")) == [segment_name(0)]
    again = reopen(tmp_path)
    assert state(again) == before and added(tmp_path) == [1, 2, 3, 4]
    again.close()


def test_damage_before_the_tail_stops_the_restart_and_removes_nothing(
    tmp_path: Path,
) -> None:
    """One flipped byte in an older segment used to end the log there: the segments after
    it were deleted and a restart went on from the damage, losing acknowledged events."""
    recorder, _ = filled(tmp_path, 60, snapshot_every=20)
    recorder.close()
    found = segments(tmp_path)
    newest = snapshot.paths(tmp_path)[-1]
    (start, damaged) = found[-2]
    assert snapshot.read(newest).index == found[-1][0]  # type: ignore[union-attr]
    newest.unlink()  # restart from the snapshot before: it reads the damaged segment
    raw = bytearray(damaged.read_bytes())
    middle = len(raw) // 2
    raw[middle] ^= 0xFF
    damaged.write_bytes(bytes(raw))
    files = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    with pytest.raises(eventlog.DamageError) as caught:
        reopen(tmp_path)
    damage = caught.value.damage
    assert damage.path == damaged and damage.offset <= middle < damage.offset + 2000
    assert start < damage.index < found[-1][0]
    message = str(caught.value)
    assert f"{damaged} at byte {damage.offset}" in message
    assert f"avm log repair {tmp_path} --truncate-at {damage.index} --yes" in message
    # Nothing was cut, moved or deleted; the lock file is the only new file.
    after = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    assert after == files
    with pytest.raises(eventlog.DamageError):
        replay(tmp_path)  # plain replay checks every segment, not only those it replays


def test_a_damaged_length_in_the_newest_segment_is_not_taken_for_a_torn_tail(
    tmp_path: Path,
) -> None:
    """A length field made larger runs past the end of the file like a torn record does,
    but intact records follow it: they were acknowledged, so it is damage."""
    recorder, _ = filled(tmp_path, 30, snapshot_every=1000)
    recorder.close()
    [(_, path)] = segments(tmp_path)
    raw = bytearray(path.read_bytes())
    offsets = eventlog.scan_segment(path, 0, True).offsets
    raw[offsets[3] + 1] = 0x7F  # the length of event 3 now runs past the end of the file
    path.write_bytes(bytes(raw))
    with pytest.raises(eventlog.DamageError, match="after event 3"):
        reopen(tmp_path)
    assert path.read_bytes() == bytes(raw)


def test_a_snapshot_past_the_end_of_the_log_is_an_error_not_a_step_back(
    tmp_path: Path,
) -> None:
    """A log that lost whole records at its end (the newest segment gone, the one before
    cut at a record boundary) used to restart from an older snapshot, silently dropping
    the acknowledged events the newer snapshot holds."""
    recorder, _ = filled(tmp_path, 60, snapshot_every=20)
    recorder.close()
    newest_snapshot = snapshot.paths(tmp_path)[-1]
    found = segments(tmp_path)
    found[-1][1].unlink()
    start, path = found[-2]
    offsets = eventlog.scan_segment(path, start, True).offsets
    with path.open("r+b") as out:
        out.truncate(offsets[len(offsets) // 2])
    with pytest.raises(eventlog.DamageError, match="are missing from the log"):
        reopen(tmp_path)
    assert newest_snapshot.exists()


def test_a_log_missing_its_oldest_segments_restarts_and_replays_what_it_can(
    tmp_path: Path,
) -> None:
    recorder, _ = filled(tmp_path, 95, snapshot_every=20)
    before = state(recorder)
    recorder.close()
    oldest = snapshot_indexes(tmp_path)[0]
    for start, path in segments(tmp_path):
        if start < oldest:
            path.unlink()
    assert restarted_state(tmp_path) == before
    report = replay(tmp_path, from_start=True)
    assert report.divergence is None and report.start == oldest
    assert any("no longer holds events 0 to" in note for note in report.notes)
    for path in snapshot.paths(tmp_path):
        path.unlink()
    with pytest.raises(DataError, match="the state cannot be rebuilt"):
        reopen(tmp_path)


# --------------------------------------------------------------------------- old directories


def test_a_directory_from_before_segments_opens_and_grows_segments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder, target = fresh(tmp_path, sync_each=False)
    for n in range(1, 31):
        add(recorder, target, n)
    recorder.close()
    # A node from before segments wrote the same bytes under one name (test_durable.py
    # checks the record bytes).
    (tmp_path / segment_name(0)).rename(tmp_path / LEGACY_NAME)
    again = reopen(tmp_path)
    assert add(again, target, 0) == sum(range(1, 31))
    snap = again.snapshot()  # the legacy file is complete: the next events go to a segment
    assert snap is not None
    add(again, target, 100)
    before = state(again)
    again.close()
    assert [path.name for _, path in segments(tmp_path)] == [
        LEGACY_NAME,
        segment_name(snap.index),
    ]
    names = scanned(monkeypatch)
    third = reopen(tmp_path)
    assert names == [segment_name(snap.index)] and state(third) == before
    third.close()
    report = replay(tmp_path, from_start=True)
    assert report.divergence is None and report.replayed == third.engine.applied


def test_a_legacy_log_and_a_first_segment_together_are_refused(tmp_path: Path) -> None:
    recorder, _ = fresh(tmp_path)
    recorder.close()
    (tmp_path / LEGACY_NAME).write_bytes((tmp_path / segment_name(0)).read_bytes())
    with pytest.raises(LogError, match="two logs claim event 0"):
        reopen(tmp_path)


def older_avm(data: Path, semantics: int) -> None:
    """Make ``data`` look written by an avm of another runtime semantics version."""
    path = data / "node.json"
    meta = json.loads(path.read_text())
    if semantics == 1:  # before the key and the value budget existed
        del meta["semantics"], meta["semantics_from"], meta["max_value_bytes"]
    else:
        meta["semantics"] = semantics
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize("semantics", [1, 2])
def test_events_of_an_older_avm_are_never_replayed_under_new_rules(
    tmp_path: Path, semantics: int
) -> None:
    """A log whose events an older avm ran (other fuel costs, other error messages) could
    replay to a state its clients were never answered from: the restart refuses, saying
    how to go on, until a snapshot covers those events; then the directory moves on."""
    recorder, target = fresh(tmp_path)
    add(recorder, target, 5)
    recorder.close()
    older_avm(tmp_path, semantics)
    with pytest.raises(DataError, match=rf"older avm \(runtime semantics version {semantics};"):
        reopen(tmp_path)
    assert json.loads((tmp_path / "node.json").read_text()).get("semantics") in (None, 2)
    # The older avm takes a snapshot of the whole log (here: this one, as if it were).
    older = json.loads((tmp_path / "node.json").read_text())
    (tmp_path / "node.json").write_text(json.dumps({**older, "semantics": SEMANTICS}))
    recorder = reopen(tmp_path)
    recorder.snapshot()
    end = recorder.engine.applied
    recorder.close()
    (tmp_path / "node.json").write_text(json.dumps(older))
    recorder = reopen(tmp_path)  # nothing to replay: it moves to this avm's rules
    assert add(recorder, target, 1) == 6
    recorder.close()
    meta = json.loads((tmp_path / "node.json").read_text())
    assert (meta["semantics"], meta["semantics_from"]) == (SEMANTICS, end)
    report = replay(tmp_path, from_start=True)
    assert report.divergence is None
    assert any(f"events 0 to {end - 1} were logged by an older avm" in n for n in report.notes)


@settings(deadline=None, max_examples=200)
@given(values(), st.lists(st.sampled_from(["alpha", "beta", None]), max_size=3))
def test_a_steps_digest_is_the_canonical_one(value: Value, machines: list[str | None]) -> None:
    """`Step.digest` takes a short cut for a finished run; the digest must stay the one
    logs recorded before it (sha256 of the canonical JSON), or replay would see every old
    log diverge."""
    step = Step(Done(None, value))  # type: ignore[arg-type]
    step.notices = [
        {"type": "create_notify", "object_id": i, "machine_id": m} for i, m in enumerate(machines)
    ]
    notices = [["create_notify", i, m] for i, m in enumerate(machines)]
    canonical = eventlog.encode_event({"o": ["done", value_to_json(value)], "n": notices})
    assert step.digest() == hashlib.sha256(canonical).digest()[:8]


@settings(deadline=None, max_examples=200)
@given(
    values(),
    st.sampled_from(["client_call", "call"]),
    st.integers(0, (1 << 64) - 1),
    st.one_of(st.none(), st.text()),
    st.lists(st.tuples(st.text(), st.integers(0, 1 << 70), st.integers(0, 9)), max_size=2),
)
def test_a_calls_record_is_the_canonical_json(
    value: Value, kind: str, target: int, o: str | None, duct: list[tuple[str, int, int]]
) -> None:
    """Call events take a faster printer (orjson): their bytes must be those of
    the standard library's canonical JSON (sorted keys, no spaces, UTF-8), which replay and
    the step digests compare; what the faster one cannot print takes the general way."""
    event = {"k": kind, "target": target, "input": value_to_json(value), "t": 1 << 40, "o": o}
    if kind == "call":
        event.update(sender=target, duct=[list(link) for link in duct])
    text = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    try:
        expected = text.encode()
    except UnicodeEncodeError:  # a lone surrogate: neither way can write it
        with pytest.raises(UnicodeEncodeError):
            eventlog.encode_event(event)
        return
    assert eventlog.encode_event(event) == expected


def test_a_restart_from_a_snapshot_reads_no_older_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Restart time depends on the events since the newest snapshot, not on the log before
    it: the segments before the one that starts at the snapshot's index are not read."""
    recorder, _ = filled(tmp_path, 50, snapshot_every=20)
    before = state(recorder)
    recorder.close()
    newest = snapshot_indexes(tmp_path)[-1]
    older = {path for start, path in segments(tmp_path) if start < newest}
    assert older
    read: list[Path] = []
    read_bytes = Path.read_bytes

    def counted(path: Path) -> bytes:
        read.append(path)
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", counted)
    assert restarted_state(tmp_path) == before
    assert any(path.name.startswith("events-") for path in read)  # it did read the log
    assert not older & set(read)
