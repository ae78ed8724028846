"""Checksummed but wrong data: every case is a clear error naming the file, never a crash.

Each mutation rewrites one part of a good data directory and keeps its checksums valid (a
record's crc32, a snapshot's sha256), so only the content tells it is wrong: wrong field
types, missing keys, unknown event kinds, bad values, impossible indices, a snapshot of
another node. Both a restart (`avm node --data`, through `open_data`) and `avm replay` must
refuse each with a message naming the file, and exit 1 as processes without a traceback.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from node_harness import avm
from test_data_integrity import NODE_OPTIONS
from test_eventlog import add, fresh, reopen, state

from avm_vm.cli import main
from avm_vm.node import snapshot
from avm_vm.node.durable import DataError
from avm_vm.node.eventlog import MAGIC, LogError, encode_event, scan_segment, segments
from avm_vm.node.state import StateError, capture, full_hash, state_hash

Event = dict[str, Any]


def base_directory(data: Path) -> None:
    """Events of many kinds in a first segment, a snapshot, then calls in a second one."""
    recorder, target = fresh(data, sync_each=False)
    record = recorder.record
    record({"k": "entropy", "bytes": "ab" * 32, "boot": True})
    record({"k": "peer", "machine": "b", "prefix": 8})
    record({"k": "learn", "object_id": (8 << 48) + 1, "machine": "b"})
    for n in range(1, 6):
        add(recorder, target, n)
    record({"k": "checkpoint", "full": full_hash(capture(recorder.engine))})
    recorder.snapshot()
    for n in range(6, 10):
        add(recorder, target, n)
    recorder.close()


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("base")
    base_directory(data)
    return data


def records(path: Path) -> list[bytes]:
    scan = scan_segment(path, 0, True)
    return [encode_event(event) for event in scan.events]


def write_records(path: Path, payloads: list[bytes]) -> None:
    """The segment holding ``payloads``, each with a valid header and checksum."""
    out = bytearray(MAGIC)
    for payload in payloads:
        out += struct.pack(">II", len(payload), zlib.crc32(payload)) + payload
    path.write_bytes(bytes(out))


def event_case(kind: str, change: Callable[[Event], Any], second: bool = False) -> Callable:
    """Rewrite the first ``kind`` event (in the second segment with ``second``, else in the
    first, with the snapshots removed so that a restart replays it)."""

    def mutate(data: Path) -> str:
        path = segments(data)[1 if second else 0][1]
        payloads = records(path)
        events = scan_segment(path, 0, True).events
        index = next(i for i, event in enumerate(events) if event["k"] == kind)
        event = events[index]
        changed = change(event)
        payloads[index] = changed if isinstance(changed, bytes) else encode_event(changed)
        write_records(path, payloads)
        if not second:
            for snap in snapshot.paths(data):
                snap.unlink()
        return path.name

    return mutate


def edit(**fields: Any) -> Callable[[Event], Event]:
    """Set (or, for the value ``...``, remove) fields of an event."""

    def change(event: Event) -> Event:
        event = dict(event)
        for key, value in fields.items():
            if value is ...:
                del event[key]
            else:
                event[key] = value
        return event

    return change


def snapshot_case(change: Callable[[dict[str, Any]], Any], rehash: bool = False) -> Callable:
    """Rewrite the newest snapshot's body, its sha256 made valid again; with ``rehash`` its
    state hashes are recomputed too, so only deeper checks can tell."""

    def mutate(data: Path) -> str:
        path = snapshot.paths(data)[-1]
        obj = snapshot.read(path).__dict__.copy()  # type: ignore[union-attr]
        body = {k: obj[k] for k in ("index", "state", "state_hash", "full_hash")}
        body["node"] = list(obj["node"])
        changed = change(body)
        if rehash:
            changed["state_hash"] = state_hash(changed["state"])
            changed["full_hash"] = full_hash(changed["state"])
        raw = changed if isinstance(changed, bytes) else encode_event(changed)
        path.write_bytes(snapshot.MAGIC + hashlib.sha256(raw).hexdigest().encode() + b"\n" + raw)
        if isinstance(changed, dict) and isinstance(changed.get("index"), int):
            moved = path.with_name(f"snapshot-{changed['index']:012d}.avmsnap")
            path.rename(moved)
            return moved.name
        return path.name

    return mutate


def in_state(**fields: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def change(body: dict[str, Any]) -> dict[str, Any]:
        body["state"] = {**body["state"], **fields}
        return body

    return change


def segment_renamed(shift: int) -> Callable[[Path], str]:
    def mutate(data: Path) -> str:
        start, path = segments(data)[1]
        moved = path.with_name(f"events-{start + shift:012d}.log")
        path.rename(moved)
        return moved.name

    return mutate


def meta_case(text: str) -> Callable[[Path], str]:
    def mutate(data: Path) -> str:
        (data / "node.json").write_text(text)
        return "node.json"

    return mutate


def resume_without_a_parked_run(event: Event) -> Event:
    return {"k": "resume", "answer": {"fail": "gone"}, "t": event["t"], "o": event["o"]}


@dataclass(frozen=True)
class Case:
    name: str
    mutate: Callable[[Path], str]  # answers the name of the file the error must name


CASES = [
    Case("a record that is a JSON list", event_case("client_call", lambda e: b"[1,2]")),
    Case("a record that is not JSON", event_case("client_call", lambda e: b"{not json")),
    Case("an unknown event kind", event_case("client_call", edit(k="explode"))),
    Case("an event kind that is a number", event_case("client_call", edit(k=5))),
    Case("an event without a kind", event_case("client_call", edit(k=...))),
    Case("an event without a time", event_case("client_call", edit(t=...))),
    Case("a time that is text", event_case("client_call", edit(t="soon"))),
    Case("a negative time", event_case("client_call", edit(t=-1))),
    Case("an output digest that is a number", event_case("client_call", edit(o=17))),
    Case("a call target that is text", event_case("client_call", edit(target="obj:1"))),
    Case("a negative call target", event_case("client_call", edit(target=-5))),
    Case("a call input with an unknown tag", event_case("client_call", edit(input={"Bog": 1}))),
    Case("a call without input", event_case("client_call", edit(input=...), second=True)),
    Case("a call target past 64 bits", event_case("client_call", edit(target=1 << 70), True)),
    Case("a load without its tape", event_case("load", edit(tape=...))),
    Case("a load of garbage bytes", event_case("load", edit(tape="AAAA"))),
    Case("a load whose upgrade flag is text", event_case("load", edit(upgrade="yes"))),
    Case("a create whose behavior is a number", event_case("client_create", edit(behavior=42))),
    Case("a create whose controller is a number", event_case("client_create", edit(controller=7))),
    Case("entropy that is not hex", event_case("entropy", edit(bytes="zz"))),
    Case("entropy without its boot flag", event_case("entropy", edit(boot=...))),
    Case("a peer prefix past 16 bits", event_case("peer", edit(prefix=70_000))),
    Case("a peer name that is a number", event_case("peer", edit(machine=3))),
    Case("a learned object id that is text", event_case("learn", edit(object_id="x"))),
    Case("a learned machine that is null", event_case("learn", edit(machine=None))),
    Case("a checkpoint without its hash", event_case("checkpoint", edit(full=...))),
    Case("a resume with no parked run", event_case("client_call", resume_without_a_parked_run)),
    Case("a resume whose answer is text", event_case("client_call", edit(k="resume", answer="x"))),
    Case(
        "a teleport whose activation is a list",
        event_case("peer", edit(k="teleport", activation=[])),
    ),
    Case("a segment named past the end of the one before", segment_renamed(3)),
    Case("a segment named inside the one before", segment_renamed(-2)),
    Case("a snapshot body that is not JSON", snapshot_case(lambda body: b"{oops")),
    Case("a snapshot body that is a list", snapshot_case(lambda body: b"[]")),
    Case("a snapshot without a state", snapshot_case(edit(state=...))),
    Case("a snapshot whose index is text", snapshot_case(edit(index="five"))),
    Case("a snapshot whose index is not its name's", snapshot_case(edit(index=3))),
    Case("a snapshot whose hash is not hex", snapshot_case(edit(state_hash="nothex"))),
    Case("a snapshot of another node", snapshot_case(edit(node=["b", 8]))),
    Case("a snapshot whose node is a string", snapshot_case(edit(node="a"))),
    Case("a snapshot state that misses its hashes", snapshot_case(in_state(boots=99))),
    Case("a snapshot state of another index", snapshot_case(in_state(applied=4), rehash=True)),
    Case("a snapshot state with a bad program", snapshot_case(in_state(programs=["!"]), True)),
    Case("a snapshot state with bad objects", snapshot_case(in_state(objects=[[1]]), True)),
    Case("a snapshot state that is missing parts", snapshot_case(in_state(counters={}), True)),
    Case(
        "a snapshot past the end of the log",
        snapshot_case(lambda body: in_state(applied=99)(edit(index=99)(body)), rehash=True),
    ),
    Case("node settings that are not JSON", meta_case("{")),
    Case("node settings with a text prefix", meta_case('{"name": "a", "prefix": "x", "fuel": 1}')),
]


def damaged(base: Path, tmp_path: Path, case: Case) -> tuple[Path, str]:
    data = tmp_path / "data"
    shutil.copytree(base, data)
    culprit = case.mutate(data)
    return data, culprit


def test_the_base_directory_is_sound(base: Path, tmp_path: Path) -> None:
    """Without a mutation, both paths succeed: each case's error comes from its change."""
    data = tmp_path / "data"
    shutil.copytree(base, data)
    assert CliRunner().invoke(main, ["replay", str(data)]).exit_code == 0
    recorder = reopen(data)
    assert state(recorder)
    recorder.close()
    assert len(CASES) >= 28


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_a_checksummed_mutation_is_a_clear_error(base: Path, tmp_path: Path, case: Case) -> None:
    data, culprit = damaged(base, tmp_path, case)
    with pytest.raises((DataError, LogError, StateError)) as caught:  # what `avm node` reports
        reopen(data).close()
    assert culprit in str(caught.value)
    result = CliRunner().invoke(main, ["replay", str(data)])
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1 and culprit in result.output, result.output


def run_both(data: Path, culprit: str) -> None:
    for command in (
        ["node", "--listen", "127.0.0.1:0", "--data", str(data), *NODE_OPTIONS],
        ["replay", str(data)],
    ):
        done = avm(*command, timeout=60)
        assert done.returncode == 1, (command, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr and culprit in done.stdout + done.stderr


PROCESS_SAMPLE = [CASES[i] for i in (3, 15, 26, 29, 37, 41)]


@pytest.mark.parametrize("case", PROCESS_SAMPLE, ids=[case.name for case in PROCESS_SAMPLE])
def test_as_processes_a_sample_of_mutations_exit_1_without_a_traceback(
    base: Path, tmp_path: Path, case: Case
) -> None:
    run_both(*damaged(base, tmp_path, case))


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_as_processes_every_mutation_exits_1_without_a_traceback(
    base: Path, tmp_path: Path, case: Case
) -> None:
    run_both(*damaged(base, tmp_path, case))
