"""The node's event log: segment files of checksummed records (docs/durability.md).

A data directory's log is a series of segments ``events-<index of its first event, 12
digits>.log``, each holding the events from its index up to the next segment's. A directory
written before segments existed holds one ``events.log``: it is read as the segment that
starts at event 0, and new segments follow it. A segment starts with the 8-byte magic
``AVMLOG1\\n``, then records ``length (u32 BE) | crc32 of payload (u32 BE) | payload``, the
payload being one event as canonical JSON.

Writing (`EventLog`): `append` buffers a record; `flush` writes everything buffered with one
write and makes it durable with one fsync, so a batch of events shares one fsync (group
commit). A write or fsync that fails cuts the segment back to its last durable record and
raises `LogWriteError`: the log is exactly as it was before that flush. `rotate` starts a new
segment where the written log ends; the node rotates after each snapshot, so a restart
reads only the segments from its snapshot on.

Reading (`read_log`): only a torn tail, the newest segment's last record cut off by a write
that never finished (so never acknowledged), is dropped, with a warning on stderr (and, with
``repair``, cut off the disk). Any other damage (a bad checksum or length before the end, a
missing segment, a segment cut short) raises `DamageError` naming the file and byte offset,
and nothing is removed: `scan_log` lists every problem for `avm log verify`.
"""

from __future__ import annotations

import bisect
import errno
import os
import re
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from avm_vm.node.logs import logger
from avm_vm.node.wire import dumps_json, loads_json

MAGIC = b"AVMLOG1\n"
_HEAD = struct.Struct(">II")
_pack_head, _crc32 = _HEAD.pack, zlib.crc32  # bound once: `EventLog.append` runs per event
MAX_RECORD = 1 << 30  # a length above this is corruption, not an event
LEGACY_NAME = "events.log"  # the single log file of data directories before segments
_SEGMENT = re.compile(r"events-(\d{12})\.log")

Event = dict[str, Any]


class LogError(Exception):
    """The event log cannot be read or written; the message says which file and why."""


class LogWriteError(LogError):
    """Events could not be made durable; they are not in the log (the message says why)."""


def encode_event(event: Event) -> bytes:
    """The canonical bytes of an event: sorted keys, no spaces."""
    if event.get("k") in _PLAIN_KINDS:
        try:
            return _dumps(event, option=_SORTED)
        except TypeError:  # a number past 64 bits, a lone surrogate: the general way
            pass
    return dumps_json(event, sort_keys=True).encode()


def canonical_object(parts: dict[str, str]) -> str:
    """The canonical JSON of an object whose members' values are given as canonical JSON
    text: what `encode_event` prints of the object itself, from parts printed (or kept)
    separately."""
    return "".join(canonical_pieces(parts))


def canonical_pieces(parts: dict[str, str]) -> Iterator[str]:
    """`canonical_object` in pieces, to hash a large one without joining it."""
    yield "{"
    for n, key in enumerate(sorted(parts)):
        yield f"{',' if n else ''}{dumps_json(key)}:"
        yield parts[key]
    yield "}"


# Calls, the most common events, hold only integers, strings and values (no floats), which
# orjson prints as the general way does and five times faster.
_PLAIN_KINDS = frozenset({"client_call", "call"})
_dumps, _SORTED = orjson.dumps, orjson.OPT_SORT_KEYS


def segment_name(start: int) -> str:
    return f"events-{start:012d}.log"


def segments(directory: Path) -> list[tuple[int, Path]]:
    """The log's segment files with the index of their first event, oldest first."""
    found = []
    for path in directory.glob("events-*.log"):
        match = _SEGMENT.fullmatch(path.name)
        if match is not None:
            found.append((int(match.group(1)), path))
    legacy = directory / LEGACY_NAME
    if legacy.exists():
        if any(start == 0 for start, _ in found):
            raise LogError(
                f"{directory} holds both {LEGACY_NAME} and {segment_name(0)}: "
                "two logs claim event 0, so it is unclear which one is the node's"
            )
        found.append((0, legacy))
    return sorted(found)


def sync_dir(directory: Path) -> None:
    """fsync a directory, so the files created or renamed in it survive a crash."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Damage:
    """A place where a log or snapshot file does not hold what avm wrote there."""

    path: Path
    offset: int  # the byte where the damage begins
    why: str
    index: int  # the events before it: the index of the first event it makes unreadable

    def __str__(self) -> str:
        return f"{self.path} at byte {self.offset} (after event {self.index}): {self.why}"


class DamageError(LogError):
    """Damage before the torn tail, which a restart must not discard on its own."""

    def __init__(self, damage: Damage, advice: str) -> None:
        super().__init__(f"{damage}. {advice}")
        self.damage = damage


def advice(directory: Path, index: int) -> str:
    """What a user can do about damage that makes event ``index`` and later unreadable."""
    return (
        f"Events after the damage were acknowledged, so nothing is discarded on its own: "
        f"restore {directory} from a backup, or run `avm log verify {directory}` to see every "
        f"problem and `avm log repair {directory} --truncate-at {index} --yes` to move the "
        "events from there on (and the snapshots after them) aside into "
        f"{directory}/discarded-<time>/ and go on without them"
    )


def _intact_at(data: bytes, offset: int, resync: bool = False) -> int | None:
    """The end of the intact record at ``offset``, or None. When searching for where
    records resume (``resync``), only a payload that looks like a JSON object counts."""
    if offset + _HEAD.size > len(data):
        return None
    length, crc = _HEAD.unpack_from(data, offset)
    start = offset + _HEAD.size
    if start + length > len(data) or (resync and (length < 2 or data[start] != ord("{"))):
        return None
    if zlib.crc32(memoryview(data)[start : start + length]) != crc:
        return None
    return start + length


def _next_intact(data: bytes, offset: int) -> int | None:
    """The first offset from ``offset`` on where an intact record begins. A length below
    the file's size has a first byte of at most size >> 24, and payloads (JSON text) hold
    no such control byte, so only those positions are tried."""
    top = min(len(data) >> 24, 0x1F)
    candidates = re.compile(b"[\\x00-" + re.escape(bytes([top])) + b"]")
    for match in candidates.finditer(data, offset):
        if _intact_at(data, match.start(), resync=True) is not None:
            return match.start()
    return None


@dataclass
class Scan:
    """One segment read: its intact events with their offsets, and what is wrong with it."""

    path: Path
    events: list[Event]
    offsets: list[int]  # the byte offset of each event's record
    problems: list[Damage]
    torn: int | None = None  # where a torn tail begins (newest segment only)


def scan_segment(path: Path, start: int, newest: bool) -> Scan:
    """Read the segment ``path`` of events from ``start``; ``newest``: it is the segment
    written last, the only one that may end in a torn record. After a damaged record the
    scan goes on at the next intact record, so every problem is found."""
    data = path.read_bytes()
    scan = Scan(path, [], [], [])

    def damaged(offset: int, why: str) -> None:
        scan.problems.append(Damage(path, offset, why, start + len(scan.events)))

    if not data.startswith(MAGIC):
        if not MAGIC.startswith(data):
            damaged(0, f"not an avm event log (it does not begin with {MAGIC!r})")
        elif newest:
            scan.torn = 0 if data else None  # the header itself was torn: no events
        else:
            damaged(0, "the segment is cut short inside its header")
        return scan
    offset = len(MAGIC)
    while offset < len(data):
        end = _intact_at(data, offset)
        if end is not None:
            try:
                event = loads_json(memoryview(data)[offset + _HEAD.size : end].tobytes())
            except ValueError as error:
                damaged(offset, f"a checksummed record is not valid JSON ({error})")
                offset = end
                continue
            if isinstance(event, dict):
                scan.events.append(event)
                scan.offsets.append(offset)
            else:
                damaged(offset, "a checksummed record holds no event (not a JSON object)")
            offset = end
            continue
        after = _next_intact(data, offset + 1)
        if after is None and newest and not scan.problems and _runs_past_end(data, offset):
            scan.torn = offset  # an unfinished write: no acknowledged event is in it
            break
        if after is None:
            damaged(offset, f"the last {len(data) - offset} bytes hold no intact record")
            break
        damaged(offset, f"{after - offset} bytes hold no intact record (a bad checksum or length)")
        offset = after
    return scan


def _runs_past_end(data: bytes, offset: int) -> bool:
    """Whether the record at ``offset`` is incomplete: its header or payload is cut off."""
    if offset + _HEAD.size > len(data):
        return True
    (length,) = struct.unpack_from(">I", data, offset)
    return offset + _HEAD.size + length > len(data)


@dataclass
class LogTail:
    """The events of a log from a segment boundary on: ``events[i]`` is event ``start + i``."""

    start: int
    events: list[Event]
    files: list[tuple[int, Path]] = field(default_factory=list)  # segments read, in order
    offsets: list[int] = field(default_factory=list)  # each event's record offset

    @property
    def end(self) -> int:
        """The number of events in the log: the index the next event gets."""
        return self.start + len(self.events)

    def since(self, index: int) -> list[Event]:
        """The events from ``index`` (within ``start`` .. ``end``) on."""
        return self.events[index - self.start :]

    def position(self, index: int) -> tuple[Path, int]:
        """The file and byte offset of event ``index``'s record."""
        segment = bisect.bisect_right([start for start, _ in self.files], index) - 1
        return self.files[segment][1], self.offsets[index - self.start]


def scan_log(directory: Path, since: int = 0) -> tuple[LogTail, list[Damage], Scan | None]:
    """Every segment from the one holding event ``since`` (or the oldest left) on: the
    intact events up to the first damage, every damage found, and the newest segment's
    scan when it ends in a torn tail."""
    found = segments(directory)
    first = max((i for i, (start, _) in enumerate(found) if start <= since), default=0)
    tail = LogTail(found[first][0] if found else 0, [])
    problems: list[Damage] = []
    expected: int | None = tail.start  # None after damage: how many events it hid is unknown
    if first > 0 and tail.start != since:
        # The segment read first must begin where the one before it ends. One that begins
        # at ``since`` itself (a snapshot's index: every snapshot starts a segment there)
        # needs nothing before it, so a restart reads no older segment.
        expected = _end_of(*found[first - 1])
    torn = None
    for position in range(first, len(found)):
        start, path = found[position]
        if expected is not None and start != expected:
            why = (
                f"the segment begins at event {start}, but the one before it ends at event "
                f"{expected}: " + ("a segment is missing" if start > expected else "they overlap")
            )
            problems.append(Damage(path, 0, why, expected))
        scan = scan_segment(path, start, newest=position == len(found) - 1)
        if not problems:  # the tail is the events before the first damage
            tail.files.append((start, path))
            cut = _before(scan)
            tail.events += scan.events[:cut]
            tail.offsets += scan.offsets[:cut]
        problems += scan.problems
        expected = None if scan.problems else start + len(scan.events)
        if scan.torn is not None:
            torn = scan
    return tail, problems, torn


def _end_of(start: int, path: Path) -> int | None:
    """The index after the last event of a segment, counted without decoding its events
    (None when it is damaged: that is for a full scan to report)."""
    data = path.read_bytes()
    offset, count = len(MAGIC), 0
    while offset < len(data):
        end = _intact_at(data, offset)
        if end is None:
            return None
        offset, count = end, count + 1
    return start + count if data.startswith(MAGIC) else None


def _before(scan: Scan) -> int:
    """How many of a segment's events come before its first damage."""
    if not scan.problems:
        return len(scan.events)
    first = scan.problems[0].offset
    return sum(1 for offset in scan.offsets if offset < first)


def read_log(directory: Path, since: int = 0, repair: bool = False) -> LogTail:
    """The log's events from the segment holding event ``since`` (or the oldest segment
    left, if that one is gone) to the end; older segments are not read. Only a torn tail
    (the newest segment's last record, cut off by a write that never finished, so never
    acknowledged) is dropped, with a warning, and with ``repair`` cut off the disk so that
    new records follow the last good one. Any other damage raises `DamageError` naming the
    file and offset; nothing is changed on disk then."""
    tail, problems, torn = scan_log(directory, since)
    if problems:
        raise DamageError(problems[0], advice(directory, problems[0].index))
    if torn is not None and torn.torn is not None:  # the newest segment's unfinished write
        size = torn.path.stat().st_size
        logger.warning(
            "warning: %s: dropped a torn tail of %d bytes after event %d (a write that never "
            "finished)",
            torn.path,
            size - torn.torn,
            tail.end,
        )
        if repair:
            with torn.path.open("r+b") as out:
                out.truncate(torn.torn)
                os.fsync(out.fileno())
    return tail


def _write_all(fd: int, data: bytes | bytearray) -> None:
    """One write for a regular file; more only if the kernel takes part of it."""
    done = 0
    while done < len(data):
        written = os.write(fd, data[done:] if done else data)  # a copy only after a short one
        if written <= 0:
            raise OSError(errno.EIO, "the write made no progress")
        done += written


def _disk_problem(error: OSError, lost: int, path: Path, kept: int) -> str:
    what = (
        "the disk is out of space"
        if error.errno in (errno.ENOSPC, errno.EDQUOT)
        else f"writing failed ({error.strerror or error})"
    )
    return (
        f"{what}: {lost} event(s) could not be written to {path}; the log keeps its "
        f"{kept} events before them, as it was"
    )


class EventLog:
    """The log of a data directory, open for appending to its newest segment.

    ``count`` is the number of events in the log including those buffered: the index the
    next appended event gets. Everything before ``durable`` is fsynced."""

    def __init__(self, directory: Path, count: int) -> None:
        """Open the newest segment (creating the first one in an empty directory); ``count``
        is the number of events the log holds, as `read_log` with ``repair`` found it."""
        self.directory = directory
        self.count = self.durable = count
        self.buffer = bytearray()
        self.took = 0.0  # seconds the last successful `write` took (its write and fsync)
        # Why nothing more may be appended: the file may end in a partial record, or (set by
        # `Recorder.flush`) the node applied events that a failed flush kept out of the log.
        self.broken: str | None = None
        found = segments(directory)
        if not found:
            found = [(0, self._create(0))]
        self.start, self.path = found[-1]
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self.size = os.fstat(self.fd).st_size  # where the last durable record ends
        if self.size == 0:  # a legacy log whose header was torn: start it again
            _write_all(self.fd, MAGIC)
            os.fsync(self.fd)
            self.size = len(MAGIC)

    @property
    def pending(self) -> bool:
        """Whether appended events await `flush`."""
        return bool(self.buffer)

    def append(self, event: Event) -> int:
        """Buffer one event (not durable until `flush`); answers its index."""
        if self.broken is not None:
            self._check()
        payload = encode_event(event)
        buffer = self.buffer  # two appends: no temporary for the whole record
        buffer += _pack_head(len(payload), _crc32(payload))
        buffer += payload
        self.count += 1
        return self.count - 1

    def flush(self) -> None:
        """Write every buffered event with one write and make it durable with one fsync
        (`seal`, then `write`)."""
        self.write(*self.seal())

    def seal(self) -> tuple[bytes, int]:
        """Take the buffered events, and the count they bring the log to, for `write`. More
        events may be appended while they are written (on another thread); the writes must
        run one at a time, in the order of their seals."""
        self._check()
        data = bytes(self.buffer)
        self.buffer.clear()
        return data, self.count

    def write(self, data: bytes, count: int) -> None:
        """Write sealed events with one write and make them durable with one fsync. On
        failure the segment is cut back to its last durable record, those events are
        dropped and `LogWriteError` says why; events appended after the seal would then
        follow a gap, so the log takes no more."""
        self._check()
        if not data:
            return
        began = time.perf_counter()
        try:
            _write_all(self.fd, data)
            os.fsync(self.fd)
        except OSError as error:
            problem = _disk_problem(error, count - self.durable, self.path, self.durable)
            self._cut_back(problem)
            if count == self.count and not self.buffer:
                self.count = self.durable  # as if they had never been appended
            else:
                self.broken = problem
            raise LogWriteError(problem) from error
        self.size += len(data)
        self.durable = count
        self.took = time.perf_counter() - began

    def _cut_back(self, problem: str) -> None:
        """Remove whatever part of a failed flush reached the file."""
        try:
            os.ftruncate(self.fd, self.size)
            os.fsync(self.fd)
        except OSError as error:
            # The file may end in a partial record: nothing may follow it. A restart drops it.
            self.broken = f"{problem}; cutting the log back failed too ({error})"
            raise LogWriteError(self.broken) from error

    def _check(self) -> None:
        if self.broken is not None:
            raise LogWriteError(
                f"{self.path} takes no more events since an earlier failure: {self.broken}; "
                "restart the node to continue from its log"
            )

    def rotate(self, start: int) -> None:
        """Start a new segment at event ``start``, where the written log ends; events
        appended since stay buffered and their write goes to the new segment. It runs where
        the writes run, after the write that brought the log to ``start``. A failure to
        create it raises OSError and leaves the current segment in use, the log unchanged."""
        self._check()
        if self.durable != start:  # a write before it failed, or one ran out of order
            raise LogWriteError(
                f"no new segment at event {start}: the log written so far ends at event "
                f"{self.durable}"
            )
        if start == self.start:
            return  # the current segment already starts here
        path = self._create(start)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        except OSError as error:
            self.broken = f"the new segment {path} cannot be opened ({error})"
            raise LogWriteError(self.broken) from error
        os.close(self.fd)
        self.fd, self.path, self.start, self.size = fd, path, start, len(MAGIC)

    def _create(self, start: int) -> Path:
        """A new, durable, empty segment starting at event ``start``. It is written under a
        temporary name and renamed, so a failure never leaves a partial segment behind."""
        path = self.directory / segment_name(start)
        tmp = path.with_name(path.name + ".tmp")
        try:
            with tmp.open("wb") as out:
                out.write(MAGIC)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        try:
            sync_dir(self.directory)
        except OSError as error:  # the segment is in place but may not survive a crash
            self.broken = f"{self.directory} could not be synced after creating {path} ({error})"
            raise LogWriteError(self.broken) from error
        return path

    def close(self) -> None:
        """Flush what is buffered (unless the log is broken), then close the file."""
        try:
            if self.broken is None:
                self.flush()
        finally:
            os.close(self.fd)
