"""Where a durable node's group commit writes its log (docs/durability.md, "Group commit"):
on the loop thread while the disk is quick, on the VM thread after a slow write or while a
snapshot is being written, and either way no answer leaves before its event is durable and
a failed write halts the node."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
from pathlib import Path

import pytest

from avm_vm.node import eventlog
from avm_vm.node.client import Client, ClientError
from avm_vm.node.durable import describe, replay, verify
from avm_vm.node.eventlog import EventLog
from avm_vm.node.node import INLINE_WRITE, Node, NodeConfig
from avm_vm.values import Just
from avmc.compiler import compile_source

COUNTER = compile_source(
    'behavior Counter { field n = 0  on ["inc"] { n += 1; return n } }', "counter.avm"
)


class Writes:
    """Records the thread each log write ran on. Every write counts as quick, however long
    the disk took, so where the next one runs is for the test to decide (by setting
    `EventLog.took`)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.threads: list[str] = []
        write = EventLog.write

        def watched(log: EventLog, data: bytes, count: int) -> None:
            self.threads.append(threading.current_thread().name)
            write(log, data, count)
            log.took = 0.0

        monkeypatch.setattr(EventLog, "write", watched)

    def since(self, start: int) -> list[str]:
        return ["loop" if name == "MainThread" else "vm" for name in self.threads[start:]]


async def _node(data: Path) -> tuple[Node, Client, int]:
    node = Node(NodeConfig("solo", prefix=9, jit="off", data=data), [COUNTER])
    await node.start()
    client = await Client.connect("127.0.0.1", node.port)
    return node, client, await client.create("Counter")


def test_writes_run_on_the_loop_while_quick_and_on_the_vm_thread_after_a_slow_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = Writes(monkeypatch)

    async def scenario() -> None:
        node, client, counter = await _node(tmp_path / "data")
        log = node.recorder.log
        assert log is not None
        try:
            before = len(writes.threads)
            assert await client.call(counter, ("inc",)) == Just(1)
            assert writes.since(before) == ["loop"]
            # As if that write had taken long: the next goes to the VM thread, and once
            # that one is quick again, the one after comes back to the loop.
            log.took = INLINE_WRITE * 10
            before = len(writes.threads)
            assert await client.call(counter, ("inc",)) == Just(2)
            assert await client.call(counter, ("inc",)) == Just(3)
            assert writes.since(before) == ["vm", "loop"]
            # While a snapshot job may still start a new segment, writes queue behind it.
            node.recorder.snapshots_begun += 1
            before = len(writes.threads)
            assert await client.call(counter, ("inc",)) == Just(4)
            assert writes.since(before) == ["vm"]
            node.recorder.snapshots_done += 1
        finally:
            await client.close()
            await node.stop()

    asyncio.run(scenario())


def test_frequent_snapshots_with_concurrent_clients_keep_the_log_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Snapshots every few events: each starts a new segment on the VM thread while the
    loop goes on writing, so writes alternate between the threads; the log must still read
    back whole, in order, and replay to the state the clients saw."""
    data = tmp_path / "data"
    writes = Writes(monkeypatch)
    clients, calls = 8, 30

    async def scenario() -> None:
        config = NodeConfig("solo", prefix=9, jit="off", data=data, snapshot_every=5)
        node = Node(config, [COUNTER])
        await node.start()
        opened = [await Client.connect("127.0.0.1", node.port) for _ in range(clients)]
        counter = await opened[0].create("Counter")

        async def calling(client: Client) -> list[int]:
            seen = []
            for _ in range(calls):
                answer = await client.call(counter, ("inc",))
                assert isinstance(answer, Just) and isinstance(answer.value, int)
                seen.append(answer.value)
            return seen

        try:
            seen = await asyncio.gather(*(calling(client) for client in opened))
        finally:
            for client in opened:
                await client.close()
            await node.stop()
        assert all(run == sorted(run) for run in seen)  # each client's calls in order
        assert sorted(n for run in seen for n in run) == list(range(1, clients * calls + 1))

    asyncio.run(scenario())
    assert {"loop", "vm"} <= set(writes.since(0))
    assert len(eventlog.segments(data)) > 10
    assert verify(data).problems == []
    report = replay(data, from_start=True)
    assert report.divergence is None, describe(report, data)


def test_a_failed_write_on_the_vm_thread_answers_an_error_and_halts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same as on the loop thread (tests/test_node_log_failure.py): the call is answered
    with why, the node halts, and the log holds only the events before that write."""
    data = tmp_path / "data"
    writes = Writes(monkeypatch)

    async def scenario() -> None:
        node, client, counter = await _node(data)
        assert await client.call(counter, ("inc",)) == Just(1)
        log = node.recorder.log
        assert log is not None
        log.took = INLINE_WRITE * 10  # as if that write had been slow

        def full(fd: int) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        before, real = len(writes.threads), os.fsync
        monkeypatch.setattr(eventlog.os, "fsync", full)
        with pytest.raises(ClientError, match="not made durable: the disk is out of space"):
            await client.call(counter, ("inc",))
        await asyncio.wait_for(node.stop_requested.wait(), 5)
        monkeypatch.setattr(eventlog.os, "fsync", real)
        assert writes.since(before) == ["vm"]
        assert node.fatal is not None and "out of space" in node.fatal
        await client.close()
        await node.stop()

    asyncio.run(scenario())
    calls = [event for event in eventlog.read_log(data).events if event["k"] == "client_call"]
    assert len(calls) == 1  # the refused call is not in the log


@pytest.mark.parametrize(
    ("broken", "loop"),
    [("avm_vm.node.durable.Recorder.seal", "group commit"), ("Node._next_job", "scheduler")],
)
def test_a_loop_the_node_cannot_serve_without_halts_it_when_it_breaks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broken: str, loop: str
) -> None:
    """A bug that ends the group commit or the scheduler must not leave a node that
    accepts calls and never answers them: it halts, saying which loop stopped and why,
    and the call waiting on it ends when the node stops."""

    def bug(*_: object) -> None:
        raise RuntimeError("a bug")

    async def scenario() -> None:
        node, client, counter = await _node(tmp_path / "data")
        assert await client.call(counter, ("inc",)) == Just(1)
        if broken.startswith("Node."):
            monkeypatch.setattr(Node, broken.split(".")[1], bug)
        else:
            monkeypatch.setattr(broken, bug)
        waiting = asyncio.create_task(client.call(counter, ("inc",)))
        await asyncio.wait_for(node.stop_requested.wait(), 5)
        assert node.fatal == f"internal error: the {loop} stopped (RuntimeError('a bug'))"
        monkeypatch.undo()
        await node.stop()
        with pytest.raises(ClientError):
            await asyncio.wait_for(waiting, 10)
        await client.close()

    asyncio.run(scenario())


def test_a_restarted_node_prints_its_state_texts_before_it_serves(tmp_path: Path) -> None:
    """The first checkpoint or snapshot after a restart must not print the whole store on
    the loop: the node prints the restored store's texts as it starts."""
    data = tmp_path / "data"

    async def scenario() -> None:
        node, client, counter = await _node(data)
        assert await client.call(counter, ("inc",)) == Just(1)
        await client.close()
        await node.stop()
        again = Node(NodeConfig("solo", prefix=9, jit="off", data=data), [COUNTER])
        await again.start()
        assert counter in again.recorder.texts.objects.ids
        assert counter in again.recorder.texts.states.ids
        await again.stop()

    asyncio.run(scenario())
