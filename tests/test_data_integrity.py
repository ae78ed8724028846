"""Damage in a data directory: found, refused, and repaired only on request (issue 16).

`avm log verify` and `avm log repair`, the directory lock, leftovers of interrupted writes,
and a real `avm node --data` process on a log damaged before its tail.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from node_harness import Nodes, avm, compile_tape
from test_eventlog import FUEL, NAME, PREFIX, TALLY, add, added, filled, reopen, state

from avm_vm.cli import main
from avm_vm.node import snapshot
from avm_vm.node.durable import DataError, DataLock
from avm_vm.node.eventlog import LogError, scan_segment, segments

NODE_OPTIONS = ("--name", NAME, "--prefix", str(PREFIX), "--fuel", str(FUEL), "--jit", "off")


def flip_a_middle_byte(data: Path, which: int) -> Path:
    """Damage one byte in the middle of segment ``which``; answers the segment."""
    path = segments(data)[which][1]
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x40
    path.write_bytes(bytes(raw))
    return path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def contents(data: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in data.iterdir() if path.is_file()}


def test_verify_reports_each_problem_with_its_file_and_offset(tmp_path: Path) -> None:
    recorder, _ = filled(tmp_path, 60, snapshot_every=20)
    recorder.close()
    status, output = run("log", "verify", str(tmp_path))
    assert status == 0 and "no problem found" in output
    first = flip_a_middle_byte(tmp_path, 0)
    second = flip_a_middle_byte(tmp_path, 2)
    newest = snapshot.paths(tmp_path)[-1]
    raw = bytearray(newest.read_bytes())
    raw[-3] ^= 0x01
    newest.write_bytes(bytes(raw))
    before = contents(tmp_path)
    status, output = run("log", "verify", str(tmp_path))
    problems = [line for line in output.splitlines() if line.startswith("problem: ")]
    assert status == 1 and len(problems) == 3, output
    assert f"problem: {first} at byte " in output and f"problem: {second} at byte " in output
    assert f"problem: {newest} at byte 0: its checksum does not match" in output
    assert contents(tmp_path) == before  # verify changes nothing


def test_repair_discards_exactly_what_it_prints_and_moves_it_aside(tmp_path: Path) -> None:
    recorder, target = filled(tmp_path, 60, snapshot_every=20)
    recorder.close()
    damaged = flip_a_middle_byte(tmp_path, 1)
    status, output = run("log", "repair", str(tmp_path))
    assert status == 1 and "Give --truncate-at N" in output
    status, output = run("log", "verify", str(tmp_path))
    index = int(output.split("(after event ")[1].split(")")[0])
    before = contents(tmp_path)
    status, output = run("log", "repair", str(tmp_path), "--truncate-at", str(index + 1))
    assert status == 1 and "--truncate-at must be between" in output  # it would keep damage
    status, plan = run("log", "repair", str(tmp_path), "--truncate-at", str(index))
    assert status == 0 and "nothing changed: run again with --yes" in plan
    assert contents(tmp_path) == before
    later = [path for start, path in segments(tmp_path) if start > index]
    later_snaps = [p for p in snapshot.paths(tmp_path) if int(p.stem.split("-")[1]) > index]
    assert later and later_snaps
    for path in [*later, *later_snaps]:
        assert f"moves aside {path}" in plan
    assert f"cuts {damaged} at byte " in plan and "discards unreadable data: " in plan
    assert f"discards event {index} (" not in plan  # the damaged event is unreadable
    status, output = run("log", "repair", str(tmp_path), "--truncate-at", str(index), "--yes")
    assert status == 0, output
    [aside] = tmp_path.glob("discarded-*")
    assert sorted(p.name for p in aside.iterdir()) == sorted(
        ["repair.txt", damaged.name, *(p.name for p in [*later, *later_snaps])]
    )
    assert (aside / damaged.name).read_bytes() == before[damaged.name]  # the copy is whole
    assert not any(path.exists() for path in [*later, *later_snaps])
    again = reopen(tmp_path)
    assert again.engine.applied == index  # then the restart's own events
    kept = added(tmp_path)
    assert kept == list(range(1, len(kept) + 1))
    assert add(again, target, 0) == sum(kept)
    again.close()
    status, output = run("log", "verify", str(tmp_path))
    assert status == 0 and f"note: {aside} is left over" in output


def test_repair_moves_a_checksummed_but_foreign_snapshot_aside(tmp_path: Path) -> None:
    recorder, _ = filled(tmp_path, 30, snapshot_every=20)
    before = state(recorder)
    recorder.close()
    newest = snapshot.paths(tmp_path)[-1]
    snap = snapshot.read(newest)
    assert snap is not None
    snapshot.write(tmp_path, dataclasses.replace(snap, node=("b", 8)))  # checksummed anew
    with pytest.raises(LogError, match="belongs to the node 'b'"):
        reopen(tmp_path)
    status, output = run("log", "repair", str(tmp_path), "--yes")
    assert status == 0 and f"moves aside {newest}" in output, output
    again = reopen(tmp_path)
    assert state(again) == before
    again.close()


def test_a_second_holder_of_the_directory_is_refused_with_the_holders_pid(
    tmp_path: Path,
) -> None:
    first = DataLock(tmp_path, "the first")
    with pytest.raises(DataError, match=f"pid {os.getpid()}, the first"):
        DataLock(tmp_path, "the second")
    first.release()
    DataLock(tmp_path, "the third").release()  # released: the directory is free again


def test_a_start_removes_what_interrupted_writes_left(tmp_path: Path) -> None:
    recorder, _ = filled(tmp_path, 10, snapshot_every=1000)
    recorder.close()
    leftovers = [
        tmp_path / "snapshot-000000000005.tmp",  # a snapshot killed before its rename
        tmp_path / "events-000000000011.log.tmp",
        tmp_path / "node.json.tmp",
    ]
    for path in leftovers:
        path.write_bytes(b"")
    again = reopen(tmp_path)
    again.close()
    assert not any(path.exists() for path in leftovers)


def test_node_processes_refuse_a_held_directory_and_a_damaged_log(
    nodes: Nodes, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    tape = compile_tape(TALLY, tmp_path, "tally")
    first = nodes.start(NAME, [tape], options=["--data", str(data), *NODE_OPTIONS[2:]])
    assert first.process is not None
    second = avm("node", "--listen", "127.0.0.1:0", "--data", str(data), *NODE_OPTIONS)
    assert second.returncode == 1
    assert f"pid {first.process.pid}, avm node {NAME}" in second.stderr, second.stderr
    repair = avm("log", "repair", str(data), "--truncate-at", "1", "--yes")
    assert repair.returncode == 1 and f"pid {first.process.pid}" in repair.stderr
    first.kill()
    data = tmp_path / "damaged"
    recorder, _ = filled(data, 40, snapshot_every=1000)
    recorder.close()
    [(_, path)] = segments(data)
    offsets = scan_segment(path, 0, True).offsets
    raw = bytearray(path.read_bytes())
    raw[offsets[10] + 12] ^= 0x01  # inside an early record; 30 acknowledged records follow
    path.write_bytes(bytes(raw))
    before = contents(data)
    node = avm("node", "--listen", "127.0.0.1:0", "--data", str(data), *NODE_OPTIONS)
    assert node.returncode == 1 and "Traceback" not in node.stderr
    assert f"{path} at byte {offsets[10]} (after event 10)" in node.stderr, node.stderr
    assert f"avm log repair {data} --truncate-at 10 --yes" in node.stderr
    replay = avm("replay", str(data))  # from the snapshot on, as by default
    assert replay.returncode == 1 and f"{path} at byte {offsets[10]}" in replay.stderr
    assert {k: v for k, v in contents(data).items() if k != "lock"} == before  # all kept
