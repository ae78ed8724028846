"""SIGKILL under *pipelined* calls (group commit, docs/durability.md): with many calls in
flight, a durable node makes a whole batch durable with one fsync before any of its answers
leave. After each kill the restarted node must hold exactly the first K calls the client
sent, for some K at least the number of answers the client got: nothing acknowledged is
lost, nothing is reordered, no call is kept while an earlier one is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from pathlib import Path

import pytest
from node_harness import HOST, Node, Nodes, Session, avm, compile_tape
from test_durable_processes import COUNTERS, peek_seen, replayed_hash, start_durable

from avm_vm.node.client import Client
from avm_vm.node.messages import message
from avm_vm.node.wire import WireError, read_message, write_message

SEED = 20_261_205
KILLS = 8
WINDOW = 64  # calls in flight at once


async def _stream(port: int, calls: list[tuple[int, int]], acked: list[int]) -> None:
    """Send ``calls`` (object, argument) pipelined until the connection dies; append each
    answered argument to ``acked`` (answers come in order on one connection)."""
    client = await Client.connect(HOST, port, None, 10.0)
    room = asyncio.Semaphore(WINDOW)

    async def send() -> None:
        for index, (target, n) in enumerate(calls):
            await room.acquire()
            call = message("client_call", request_id=index + 1, target=target, input=("add", n))
            await write_message(client.writer, call)

    async def receive() -> None:
        for index, (_, n) in enumerate(calls):
            answer = await asyncio.wait_for(read_message(client.reader), 30)
            if answer is None:
                return
            assert answer["request_id"] == index + 1 and answer["ok"], answer
            acked.append(n)
            room.release()

    sender = asyncio.create_task(send())
    try:
        await receive()
    except (OSError, WireError, asyncio.IncompleteReadError, TimeoutError):
        pass  # the kill
    finally:
        sender.cancel()  # it may wait for room that no answer will make now
        with contextlib.suppress(asyncio.CancelledError, OSError, WireError):
            await sender
        client.writer.close()


@pytest.mark.parametrize(
    "options",
    [
        pytest.param((), id="default"),
        # Periodic snapshots written while calls keep coming: each starts a log segment
        # at its index while later events are being recorded.
        pytest.param(("--snapshot-every", "300"), id="snapshots", marks=pytest.mark.slow),
    ],
)
def test_sigkill_under_pipelined_calls_keeps_a_prefix_with_every_acknowledged_call(
    nodes: Nodes, tmp_path: Path, options: tuple[str, ...]
) -> None:
    rng = random.Random(SEED)
    tape = compile_tape(COUNTERS, tmp_path, "counters")
    data = tmp_path / "data"
    durable: Node = start_durable(nodes, tape, data, *options)
    with Session(durable) as session:
        objects = [session.create("counter") for _ in range(3)]
    kept: list[tuple[int, int]] = []  # (object, argument) the node holds, in order
    next_n = 0
    report = []
    for kill in range(KILLS):
        calls = [(objects[(next_n + i) % 3], next_n + i + 1) for i in range(20_000)]
        next_n += len(calls)
        acked: list[int] = []
        killer = threading.Timer(rng.uniform(0.2, 0.8), durable.kill)
        killer.start()
        asyncio.run(_stream(durable.port, calls, acked))
        killer.join()
        assert acked == [n for _, n in calls[: len(acked)]], "answers out of order"
        nodes.restart(durable)
        with Session(durable) as restarted:
            seen = {target: peek_seen(restarted, target) for target in objects}
        held = sum(len(values) for values in seen.values()) - len(kept)
        expected = kept + calls[:held]
        for target in objects:
            assert seen[target] == [n for obj, n in expected if obj == target], (
                f"kill {kill}: obj:{target} does not hold the first {held} calls sent\n"
                f"{durable.log()}"
            )
        assert held >= len(acked), f"kill {kill}: {len(acked)} acknowledged, {held} kept"
        kept = expected
        report.append(f"{len(acked)} acked/{held} kept")
    print(f"\n{KILLS} kills under pipelined calls: " + ", ".join(report))
    with Session(durable) as session:
        live = session.state_hash()
    durable.kill()
    if options:
        assert len(list(data.glob("snapshot-*"))) >= 2, "no periodic snapshots were written"
    checked = avm("log", "verify", str(data), timeout=120.0)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert replayed_hash(data, "--from-start") == live
    assert replayed_hash(data) == live
