"""A durable node whose log cannot be written (a full disk): the batch's calls were applied
in memory but are not in the log, so none of their answers may leave. The node answers them
with an error that says why, halts (`avm node` then exits with status 1), and a restart
goes on from the log as it was, without the lost calls (docs/durability.md)."""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path

import pytest

from avm_vm.node import eventlog
from avm_vm.node.client import Client, ClientError
from avm_vm.node.node import Node, NodeConfig
from avm_vm.values import Just
from avmc.compiler import compile_source

COUNTER = compile_source(
    'behavior Counter { field n = 0  on ["inc"] { n += 1; return n } }', "counter.avm"
)


async def _node(data: Path) -> Node:
    node = Node(NodeConfig("solo", prefix=9, jit="off", data=data), [COUNTER])
    await node.start()
    return node


def test_a_failed_log_write_answers_errors_and_halts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"

    async def first_life() -> int:
        node = await _node(data)
        client = await Client.connect("127.0.0.1", node.port)
        counter = await client.create("Counter")
        assert await client.call(counter, ("inc",)) == Just(1)

        def full(fd: int) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(eventlog.os, "fsync", full)
        with pytest.raises(ClientError, match="not made durable: the disk is out of space"):
            await client.call(counter, ("inc",))
        await asyncio.wait_for(node.stop_requested.wait(), 5)
        assert node.fatal is not None and "out of space" in node.fatal
        monkeypatch.undo()
        await client.close()
        await node.stop()
        return counter

    counter = asyncio.run(first_life())

    async def second_life() -> None:
        node = await _node(data)
        client = await Client.connect("127.0.0.1", node.port)
        try:  # the refused call is not in the log: the count goes on from 1
            assert await client.call(counter, ("inc",)) == Just(2)
        finally:
            await client.close()
            await node.stop()

    asyncio.run(second_life())
