"""Durable nodes (docs/durability.md): the event log, snapshots, restart, replay, entropy and
time, peek and upgrade. Nodes run in-process on 127.0.0.1 with a data directory."""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from avm_vm.cli import main
from avm_vm.format.bytecode import encode
from avm_vm.format.program import Program
from avm_vm.node import snapshot
from avm_vm.node.client import Client, ClientError
from avm_vm.node.durable import replay
from avm_vm.node.eventlog import (
    MAGIC,
    DamageError,
    EventLog,
    encode_event,
    read_log,
    segment_name,
    segments,
)
from avm_vm.node.node import Node, NodeConfig
from avm_vm.values import Just, Value
from avmc.compiler import compile_source

HOST = "127.0.0.1"

COUNTER = """
behavior Counter {
  field count = 0
  field draws = []
  on ["inc"] { count += 1; return count }
  on ["draw"] { let r = entropy(); draws = draws ++ [r]; return r }
  on ["time"] { return now() }
  on ["get"] { return count }
}
"""
# The same behavior, new code: "inc" adds 100 (the fields are unchanged).
COUNTER_V2 = COUNTER.replace("count += 1", "count += 100")
# A conflicting upgrade: the state layout changes.
COUNTER_BAD = COUNTER.replace("field draws = []", "field draws = []\n  field other = 0")
# Another: the same fields, but one holds another kind of value.
COUNTER_RETYPED = COUNTER_V2.replace("field count = 0", 'field count = ""')


def program(source: str) -> Program:
    return compile_source(source, "counter.avm")


async def start(data: Path | None, programs: list[Program], **options: Any) -> Node:
    node = Node(NodeConfig(name="a", prefix=7, data=data, **options), programs)
    await node.start()
    return node


def run_node(
    data: Path | None,
    programs: list[Program],
    body: Callable[[Node, Client], Awaitable[Any]],
    **options: Any,
) -> Any:
    """Start a node, run ``body`` with a client, stop the node cleanly or not at all
    (``crash=True`` leaves the files as a killed process would: no final snapshot)."""
    crash = options.pop("crash", False)

    async def go() -> Any:
        node = await start(data, programs, **options)
        client = await Client.connect(HOST, node.port)
        try:
            return await body(node, client)
        finally:
            await client.close()
            if crash:
                node.recorder.snapshot = lambda: None  # type: ignore[method-assign]
            await node.stop()

    return asyncio.run(go())


async def call(client: Client, obj: int, *message: Value) -> Value:
    """The callee's answer (the client gets ``just`` it)."""
    answer = await client.call(obj, message)
    assert type(answer) is Just
    return answer.value


async def counter_work(node: Node, client: Client) -> dict[str, Any]:
    """Create a counter, call it, draw entropy and read the time; answer what was seen."""
    obj = await client.create("Counter")
    incs = [await call(client, obj, "inc") for _ in range(3)]
    draws = [await call(client, obj, "draw") for _ in range(2)]
    when = await call(client, obj, "time")
    digest, events = await client.state_hash()
    return {"obj": obj, "incs": incs, "draws": draws, "time": when, "hash": digest, "n": events}


def state_of(data: Path) -> tuple[str, int]:
    async def body(node: Node, client: Client) -> tuple[str, int]:
        return await client.state_hash()

    return run_node(data, [], body)


# --------------------------------------------------------------------------- the log


def test_log_appends_and_reads_back(tmp_path: Path) -> None:
    assert read_log(tmp_path).events == []
    log = EventLog(tmp_path, 0)
    for n in range(5):
        log.append({"k": "x", "n": n})
    log.close()
    assert [e["n"] for e in read_log(tmp_path).events] == [0, 1, 2, 3, 4]
    data = (tmp_path / segment_name(0)).read_bytes()
    assert data.startswith(MAGIC)
    payload = encode_event({"k": "x", "n": 0})
    head = len(payload).to_bytes(4, "big") + zlib.crc32(payload).to_bytes(4, "big")
    assert data[len(MAGIC) : len(MAGIC) + 8 + len(payload)] == head + payload


def test_events_holding_very_deep_values_are_logged(tmp_path: Path) -> None:
    # A 1000-hop PingPong answer is nested far deeper than the C JSON codec recurses.
    deep: object = {"Nat": 1}
    for _ in range(50_000):
        deep = {"Just": deep}
    log = EventLog(tmp_path, 0)
    event = {"k": "resume", "value": deep}
    log.append(event)
    log.close()
    (back,) = read_log(tmp_path).events  # compared as bytes: == on it would recurse too deep
    assert encode_event(back) == encode_event(event)


def four_events(data: Path) -> Path:
    """A log of four events in one segment; answers the segment."""
    log = EventLog(data, 0)
    for n in range(4):
        log.append({"k": "x", "n": n})
    log.close()
    return data / segment_name(0)


def test_a_torn_tail_is_dropped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = four_events(tmp_path)
    path.write_bytes(path.read_bytes()[:-3])  # the last write never finished
    tail = read_log(tmp_path, repair=True)
    assert [e["n"] for e in tail.events] == [0, 1, 2]
    assert "dropped a torn tail" in caplog.text
    log = EventLog(tmp_path, tail.end)
    log.append({"k": "x", "n": 9})  # new records follow the last good one
    log.close()
    assert [e["n"] for e in read_log(tmp_path).events] == [0, 1, 2, 9]


def test_a_complete_last_record_with_a_bad_checksum_is_damage_not_a_torn_tail(
    tmp_path: Path,
) -> None:
    path = four_events(tmp_path)
    data = bytearray(path.read_bytes())
    data[-2] ^= 0xFF  # inside the last payload: it is whole, so it was written and synced
    path.write_bytes(bytes(data))
    with pytest.raises(DamageError, match=f"{path} at byte \\d+ \\(after event 3\\)"):
        read_log(tmp_path, repair=True)
    assert path.read_bytes() == bytes(data)  # nothing cut


# --------------------------------------------------------------------------- restart


def test_restart_reaches_the_same_state(tmp_path: Path) -> None:
    data = tmp_path / "a"
    seen = run_node(data, [program(COUNTER)], counter_work, crash=True)
    assert seen["incs"] == [1, 2, 3]
    assert snapshot.paths(data) == []  # the crash left no snapshot: restart replays the log
    assert state_of(data)[0] == seen["hash"]

    async def more(node: Node, client: Client) -> Any:
        draws = (await client.peek(seen["obj"]))["state"][1]
        return draws, await call(client, seen["obj"], "inc")

    draws, count = run_node(data, [], more)
    assert draws == {"List": [{"Nat": n} for n in seen["draws"]]}  # replayed entropy
    assert count == 4  # the counter carried on from its logged state


def test_a_data_directory_from_before_segments_restarts(tmp_path: Path) -> None:
    data = tmp_path / "a"
    seen = run_node(data, [program(COUNTER)], counter_work, crash=True)
    [(_, path)] = segments(data)
    path.rename(data / "events.log")  # the name a node from before segments gave its log

    async def more(node: Node, client: Client) -> Any:
        return await call(client, seen["obj"], "inc")

    assert run_node(data, [], more) == 4  # the clean stop snapshots and starts a segment
    names = [p.name for _, p in segments(data)]
    assert len(names) == 2 and names[0] == "events.log"
    report = replay(data, from_start=True)
    assert report.divergence is None and report.replayed == len(read_log(data).events)


def test_restart_from_snapshot_and_a_corrupt_snapshot_is_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "a"

    async def work(node: Node, client: Client) -> tuple[str, int]:
        seen = await counter_work(node, client)
        index, digest = await client.snapshot()
        assert (index, digest) == (seen["n"], seen["hash"])
        await call(client, seen["obj"], "inc")
        return await client.state_hash()

    digest, _ = run_node(data, [program(COUNTER)], work, crash=True)
    [snap] = snapshot.paths(data)
    assert snapshot.read(snap) is not None
    assert state_of(data)[0] == digest  # snapshot plus the event after it
    for path in snapshot.paths(data):  # the clean stop above wrote a second one
        raw = bytearray(path.read_bytes())
        raw[-5] ^= 0x01
        path.write_bytes(bytes(raw))
    assert state_of(data)[0] == digest  # both damaged: the whole log is replayed
    assert "skipping damaged snapshot" in caplog.text


def test_periodic_snapshots_and_checkpoints(tmp_path: Path) -> None:
    data = tmp_path / "a"

    async def work(node: Node, client: Client) -> None:
        obj = await client.create("Counter")
        for _ in range(12):
            await call(client, obj, "inc")

    run_node(data, [program(COUNTER)], work, snapshot_every=5, checkpoint_every=3, crash=True)
    assert len(snapshot.paths(data)) == snapshot.KEEP
    kinds = [e["k"] for e in read_log(data).events]
    assert kinds.count("checkpoint") >= 4
    report = replay(data, from_start=True)
    assert report.divergence is None and report.checked_states >= 4 + snapshot.KEEP


# --------------------------------------------------------------------------- replay


def test_replay_matches_and_reproduces_entropy_and_time(tmp_path: Path) -> None:
    data = tmp_path / "a"
    seen = run_node(data, [program(COUNTER)], counter_work)
    assert len(set(seen["draws"])) == 2
    for flag in ("--from-start", "--from-snapshot"):
        result = CliRunner().invoke(main, ["replay", str(data), flag])
        assert result.exit_code == 0, result.output
        assert "match; state hash" in result.output
    report = replay(data, from_start=True)
    assert report.divergence is None and report.checked_outputs > 5
    # The answers draws and time gave are in the outputs replay checked; the draws are
    # also in the state, whose hash replay reached.
    assert report.final_hash == seen["hash"]


def test_replay_reports_the_first_diverging_event(tmp_path: Path) -> None:
    data = tmp_path / "a"
    run_node(data, [program(COUNTER)], counter_work, crash=True)
    [(_, path)] = segments(data)  # the crash left no snapshot, so the log is one segment
    events = read_log(data).events
    index = min(i for i, e in enumerate(events) if e["k"] == "client_call")  # the first "inc"
    events[index]["input"] = {"List": [{"Str": "get"}]}  # rewrite one call, checksum and all
    forged = tmp_path / "forged"
    forged.mkdir()
    log = EventLog(forged, 0)
    for event in events:
        log.append(event)
    log.close()
    (forged / segment_name(0)).replace(path)
    result = CliRunner().invoke(main, ["replay", str(data), "--from-start"])
    assert result.exit_code == 1
    assert f"first diverging event: event {index} (client_call, {path} at byte" in result.output


def test_replay_of_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["replay", str(tmp_path / "nothing")])
    assert result.exit_code == 1
    assert "is not a node data directory" in result.output


# --------------------------------------------------------------------------- peek


def test_peek_changes_nothing(tmp_path: Path) -> None:
    async def body(node: Node, client: Client) -> None:
        seen = await counter_work(node, client)
        peeked = await client.peek(seen["obj"])
        assert peeked["behavior"] == "Counter"
        assert peeked["state"][0] == {"Nat": 3}
        assert peeked["code_hash"] == node.engine.runtime.registry.code_hash("Counter").hex()
        assert await client.state_hash() == (seen["hash"], seen["n"])  # no event, same hash
        with pytest.raises(ClientError, match="no object obj:999"):
            await client.peek(999)

    run_node(tmp_path / "a", [program(COUNTER)], body)


# --------------------------------------------------------------------------- upgrade


def test_upgrade_keeps_state_and_runs_the_new_code(tmp_path: Path) -> None:
    data = tmp_path / "a"
    trace = tmp_path / "trace.jsonl"

    async def body(node: Node, client: Client) -> tuple[int, Any]:
        obj = await client.create("Counter")
        await call(client, obj, "inc")
        old = (await client.peek(obj))["code_hash"]
        hashes = await client.load(encode(program(COUNTER_V2)))
        with pytest.raises(ClientError, match="fields change"):
            await client.load(encode(program(COUNTER_BAD)))
        with pytest.raises(ClientError, match="field count changes type from nat to str"):
            await client.load(encode(program(COUNTER_RETYPED)))
        with pytest.raises(ClientError, match="already loaded"):
            await client.load(encode(program(COUNTER_V2)))
        peeked = await client.peek(obj)
        assert peeked["code_hash"] == hashes["Counter"] != old
        assert peeked["state"][0] == {"Nat": 1}
        return obj, await call(client, obj, "inc")

    obj, answer = run_node(data, [program(COUNTER)], body, trace_out=trace, crash=True)
    assert answer == 101
    upgrades = [line for line in trace.read_text().splitlines() if "BehaviorUpgraded" in line]
    assert len(upgrades) == 1 and json.loads(upgrades[0])["event_type"]["BehaviorUpgraded"]

    async def after(node: Node, client: Client) -> Any:
        return await call(client, obj, "inc")

    assert run_node(data, [], after) == 201  # the upgrade is in the log
    assert replay(data, from_start=True).divergence is None
