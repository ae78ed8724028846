"""Snapshots: a node's whole state at one event index, written atomically with a checksum.

A snapshot file ``snapshot-<index, 12 digits>.avmsnap`` holds one line
``AVMSNAP1 <sha256 hex of the body>`` and then the body: canonical JSON of
``{"index", "state", "state_hash", "full_hash"}`` where ``index`` is the number of events
the state reflects. It is written to a temporary file, fsynced, renamed into place and the
directory fsynced, so a crash leaves either the old set of snapshots or the new one. A file
whose checksum or shape is wrong is skipped with a warning (`newest_first`). Only the newest
`KEEP` snapshots are kept. The node writes a snapshot only once the events it covers are
durable in the log (`avm_vm.node.durable.Recorder.snapshot`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avm_vm.node.eventlog import encode_event, sync_dir
from avm_vm.node.logs import logger
from avm_vm.node.wire import loads_json

MAGIC = b"AVMSNAP1 "
KEEP = 3


@dataclass(frozen=True)
class Snapshot:
    index: int  # events applied
    state: dict[str, Any]
    state_hash: str
    full_hash: str


def _name(index: int) -> str:
    return f"snapshot-{index:012d}.avmsnap"


def write(directory: Path, snap: Snapshot) -> Path:
    body = encode_event(
        {
            "index": snap.index,
            "state": snap.state,
            "state_hash": snap.state_hash,
            "full_hash": snap.full_hash,
        }
    )
    path = directory / _name(snap.index)
    tmp = path.with_suffix(".tmp")
    try:
        with tmp.open("wb") as out:
            out.write(MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n" + body)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # a full disk must not leave a partial file behind
        raise
    sync_dir(directory)
    for old in paths(directory)[:-KEEP]:
        old.unlink(missing_ok=True)
    return path


def paths(directory: Path) -> list[Path]:
    """Snapshot files, oldest first."""
    return sorted(directory.glob("snapshot-*.avmsnap"))


def read(path: Path) -> Snapshot | None:
    """The snapshot in ``path``, or None (with a warning) when it is damaged."""
    try:
        data = path.read_bytes()
        head, _, body = data.partition(b"\n")
        if not head.startswith(MAGIC) or hashlib.sha256(body).hexdigest() != head[9:].decode():
            raise ValueError("checksum mismatch")
        obj = loads_json(body)
        return Snapshot(obj["index"], obj["state"], obj["state_hash"], obj["full_hash"])
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
        logger.warning("warning: skipping damaged snapshot %s: %s", path, error)
        return None


def newest_first(directory: Path) -> Iterator[Snapshot]:
    """The intact snapshots, newest first, each read only when asked for."""
    for path in reversed(paths(directory)):
        snap = read(path)
        if snap is not None:
            yield snap
