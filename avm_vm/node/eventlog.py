"""The node's event log: an append-only file of checksummed records (docs/durability.md).

A record is ``length (u32 BE) | crc32 of payload (u32 BE) | payload``; the payload is one
event as canonical JSON. The file starts with the 8-byte magic ``AVMLOG1\\n``. `append`
writes a record and `sync` makes everything appended so far durable (fsync), so several
events may share one fsync (group commit). Opening the log reads it through: a record that
is cut short or fails its checksum ends the log; it and anything after it are dropped
(truncated) with a warning on stderr, and nothing before it is touched.
"""

from __future__ import annotations

import os
import struct
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from avm_vm.node.wire import dumps_json, loads_json

MAGIC = b"AVMLOG1\n"
_HEAD = struct.Struct(">II")
MAX_RECORD = 1 << 30  # a length above this is corruption, not an event

Event = dict[str, Any]


class LogError(Exception):
    """The file is not an event log (wrong magic); the message says which file."""


def encode_event(event: Event) -> bytes:
    """The canonical bytes of an event: sorted keys, no spaces."""
    return dumps_json(event, sort_keys=True).encode()


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


def read_events(path: Path, repair: bool = False) -> list[Event]:
    """Every intact event of the log at ``path``. A bad tail is reported on stderr and,
    with ``repair``, cut off the file so new records follow the last good one."""
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        if len(data) < len(MAGIC) and MAGIC.startswith(data):
            data = b""  # the header itself was torn: an empty log
        else:
            raise LogError(f"{path} is not an avm event log")
    events: list[Event] = []
    good = len(MAGIC) if data else 0
    for end, payload in _records(data):
        try:
            events.append(loads_json(payload))
        except ValueError:
            break  # a checksummed record that is not JSON: treat as corruption
        good = end
    if good < len(data):
        print(
            f"warning: {path}: dropped a torn or corrupt tail of {len(data) - good} bytes "
            f"after event {len(events)}",
            file=sys.stderr,
        )
        if repair:
            with path.open("r+b") as out:
                out.truncate(good)
                os.fsync(out.fileno())
    return events


class EventLog:
    """An open log for appending; `count` is the number of events it holds."""

    def __init__(self, path: Path, count: int) -> None:
        self.path = path
        self.count = count
        fresh = not path.exists() or path.stat().st_size == 0
        self.file = path.open("ab", buffering=0)
        if fresh:
            self.file.write(MAGIC)
            self.sync()
        self.dirty = False

    @classmethod
    def open(cls, path: Path) -> tuple[EventLog, list[Event]]:
        """Open (or create) the log; answers it and the events it already holds."""
        events = read_events(path, repair=True) if path.exists() else []
        return cls(path, len(events)), events

    def append(self, event: Event) -> int:
        """Write one event (not yet durable: see `sync`); answers its index."""
        payload = encode_event(event)
        self.file.write(_HEAD.pack(len(payload), zlib.crc32(payload)) + payload)
        self.dirty = True
        self.count += 1
        return self.count - 1

    def sync(self) -> None:
        os.fsync(self.file.fileno())
        self.dirty = False

    def close(self) -> None:
        if self.dirty:
            self.sync()
        self.file.close()
