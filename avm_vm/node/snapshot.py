"""Snapshots: a node's whole state at one event index, written atomically with a checksum.

A snapshot file ``snapshot-<index, 12 digits>.avmsnap`` holds one line
``AVMSNAP1 <sha256 hex of the body>`` and then the body: canonical JSON of
``{"index", "state", "state_hash", "full_hash", "node"}`` where ``index`` is the number of
events the state reflects and ``node`` the ``[name, id prefix]`` of the node it belongs to
(absent in older snapshots). It is written to a temporary file, fsynced, renamed into place
and the directory fsynced, so a crash leaves either the old set of snapshots or the new one
(and at worst a ``.tmp`` file, removed at the next start). A file whose checksum is wrong
was damaged on disk and is skipped with a warning (`newest_first`): the log still holds its
events. A file whose checksum holds but whose content is not a snapshot avm wrote raises
`DamageError`, since nothing tells what else in the directory is wrong. Only the newest
`KEEP` snapshots are kept. The node writes a snapshot only once the events it covers are
durable in the log (`avm_vm.node.durable.Recorder.snapshot`).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from avm_vm.node.eventlog import Damage, DamageError, canonical_object, sync_dir
from avm_vm.node.logs import logger
from avm_vm.node.wire import dumps_json, loads_json

if TYPE_CHECKING:
    from avm_vm.node.state import StateText

MAGIC = b"AVMSNAP1 "
KEEP = 3
_NAME = re.compile(r"snapshot-(\d{12})\.avmsnap")
_HASH = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Snapshot:
    index: int  # events applied
    state: dict[str, Any] | StateText  # as read from a file, or as a node captured it
    state_hash: str
    full_hash: str
    node: tuple[str, int] | None = None  # the name and id prefix of the node it belongs to
    path: Path | None = field(default=None, compare=False)  # the file it was read from


def _name(index: int) -> str:
    return f"snapshot-{index:012d}.avmsnap"


def write(directory: Path, snap: Snapshot) -> Path:
    fields: dict[str, Any] = {
        "index": snap.index,
        "state_hash": snap.state_hash,
        "full_hash": snap.full_hash,
    }
    if snap.node is not None:
        fields["node"] = list(snap.node)
    parts = {key: dumps_json(value) for key, value in fields.items()}
    state = snap.state
    parts["state"] = dumps_json(state, sort_keys=True) if isinstance(state, dict) else state.text()
    body = canonical_object(parts).encode()
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
    """The snapshot in ``path``, or None (with a warning) when its checksum shows it was
    damaged; `DamageError` when the checksum holds but the content is not a snapshot."""
    try:
        data = path.read_bytes()
        head, _, body = data.partition(b"\n")
        if not head.startswith(MAGIC) or hashlib.sha256(body).hexdigest() != head[9:].decode():
            raise ValueError("checksum mismatch")
    except (OSError, ValueError) as error:
        logger.warning("warning: skipping damaged snapshot %s: %s", path, error)
        return None
    try:
        obj = loads_json(body)
    except ValueError as error:
        refuse(path, f"its body is not JSON ({error})")
    return _checked(path, obj)


def refuse(path: Path, why: str) -> NoReturn:
    match = _NAME.fullmatch(path.name)
    damage = Damage(path, 0, f"the checksum holds but {why}", int(match.group(1)) if match else 0)
    raise DamageError(
        damage,
        "The node cannot start from it: move it out of the directory (`avm log repair "
        f"{path.parent} --yes` moves it into {path.parent}/discarded-<time>/), and the node "
        "starts from an older snapshot or the start of the log",
    )


def _checked(path: Path, obj: Any) -> Snapshot:
    """The snapshot ``obj`` describes, if it has the shape `write` gives one."""
    if not isinstance(obj, dict):
        refuse(path, "it holds no JSON object")
    for key, kind in (("index", int), ("state", dict), ("state_hash", str), ("full_hash", str)):
        if key not in obj:
            refuse(path, f"it has no {key!r}")
        if not isinstance(obj[key], kind) or isinstance(obj[key], bool):
            refuse(path, f"its {key!r} holds a {type(obj[key]).__name__}, not a {kind.__name__}")
    match = _NAME.fullmatch(path.name)
    if match is None or int(match.group(1)) != obj["index"] or obj["index"] < 0:
        refuse(path, f"its index {obj['index']} does not match its file name")
    for key in ("state_hash", "full_hash"):
        if _HASH.fullmatch(obj[key]) is None:
            refuse(path, f"its {key!r} is not a sha256 hex digest")
    node = obj.get("node")
    if node is not None and not (
        isinstance(node, list)
        and len(node) == 2
        and isinstance(node[0], str)
        and type(node[1]) is int
    ):
        refuse(path, "its 'node' is not [name, prefix]")
    return Snapshot(
        obj["index"],
        obj["state"],
        obj["state_hash"],
        obj["full_hash"],
        None if node is None else (node[0], node[1]),
        path,
    )


def newest_first(directory: Path) -> Iterator[Snapshot]:
    """The intact snapshots, newest first, each read only when asked for."""
    for path in reversed(paths(directory)):
        snap = read(path)
        if snap is not None:
            yield snap
