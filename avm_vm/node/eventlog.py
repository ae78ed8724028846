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
segment at the next event; the node rotates after each snapshot, so a restart reads only the
segments from its snapshot on.

Reading (`read_log`): a record that is cut short or fails its checksum ends the log: it and
everything after it (the rest of its segment, and the later segments) are dropped with a
warning on stderr (and, with ``repair``, removed from disk); nothing before it is touched.
"""

from __future__ import annotations

import errno
import os
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avm_vm.node.logs import logger
from avm_vm.node.wire import dumps_json, loads_json

MAGIC = b"AVMLOG1\n"
_HEAD = struct.Struct(">II")
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
    return dumps_json(event, sort_keys=True).encode()


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


def _records(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(end offset, payload) of each intact record; stops at the first bad one."""
    offset = len(MAGIC)
    while offset + _HEAD.size <= len(data):
        length, crc = _HEAD.unpack_from(data, offset)
        start = offset + _HEAD.size
        if length > MAX_RECORD or start + length > len(data):
            return
        payload = data[start : start + length]
        if zlib.crc32(payload) != crc:
            return
        offset = start + length
        yield offset, payload


def _scan(path: Path) -> tuple[list[Event], int]:
    """The intact events of one segment and the offset where they end (the file's size
    when it is undamaged)."""
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        if MAGIC.startswith(data):
            return [], 0  # empty, or the header itself was torn: no events
        raise LogError(f"{path} is not an avm event log")
    events: list[Event] = []
    good = len(MAGIC)
    for end, payload in _records(data):
        try:
            events.append(loads_json(payload))
        except ValueError:
            break  # a checksummed record that is not JSON: treat as corruption
        good = end
    return events, good


@dataclass
class LogTail:
    """The events of a log from a segment boundary on: ``events[i]`` is event ``start + i``."""

    start: int
    events: list[Event]

    @property
    def end(self) -> int:
        """The number of events in the log: the index the next event gets."""
        return self.start + len(self.events)

    def since(self, index: int) -> list[Event]:
        """The events from ``index`` (within ``start`` .. ``end``) on."""
        return self.events[index - self.start :]


def read_log(directory: Path, since: int = 0, repair: bool = False) -> LogTail:
    """The log's events from the segment holding event ``since`` (or the oldest segment
    left, if that one is gone) to the end. Older segments are not read. Whatever follows
    the first damaged record is dropped with a warning on stderr, and with ``repair``
    cut off the disk, so that new records follow the last good one."""
    found = segments(directory)
    first = max((i for i, (start, _) in enumerate(found) if start <= since), default=0)
    tail = LogTail(found[first][0] if found else 0, [])
    for position in range(first, len(found)):
        start, path = found[position]
        if start != tail.end:  # a segment must begin where the one before it ended
            _drop(found[position:], f"it does not begin at event {tail.end}", repair)
            return tail
        events, good = _scan(path)
        tail.events += events
        size = path.stat().st_size
        if good < size:
            logger.warning(
                "warning: %s: dropped a torn or corrupt tail of %d bytes after event %d",
                path,
                size - good,
                tail.end,
            )
            if repair:
                with path.open("r+b") as out:
                    out.truncate(good)
                    os.fsync(out.fileno())
            _drop(found[position + 1 :], f"it follows the damaged {path.name}", repair)
            return tail
    return tail


def _drop(later: list[tuple[int, Path]], why: str, repair: bool) -> None:
    for _, path in later:
        logger.warning("warning: %s: dropped: %s", path, why)
        if repair:
            path.unlink()
    if repair and later:
        sync_dir(later[0][1].parent)


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
        self._check()
        payload = encode_event(event)
        self.buffer += _HEAD.pack(len(payload), zlib.crc32(payload))
        self.buffer += payload
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

    def rotate(self) -> None:
        """Start a new segment at the next event, after flushing. A failure to create it
        raises OSError and leaves the current segment in use, the log unchanged."""
        self.flush()
        if self.count == self.start:
            return  # the current segment already starts here
        path = self._create(self.count)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        except OSError as error:
            self.broken = f"the new segment {path} cannot be opened ({error})"
            raise LogWriteError(self.broken) from error
        os.close(self.fd)
        self.fd, self.path, self.start, self.size = fd, path, self.count, len(MAGIC)

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
