"""Abuse from clients and peers on loopback (docs/wire.md, "Limits"): a client that pipelines
calls and reads no answers, 16 MiB frames, crowds of idle connections, floods of log lines.
The node must keep serving everyone else: another client's calls keep a bounded wait, the
node's memory stays bounded, peers stay connected, connections past the cap are refused
with a message saying why, idle ones are closed, and the log stays small.

Where the point is the process (memory, file handles, its log) the node is a real `avm
node`; the mechanisms themselves are checked in process, where the node's state can be seen.
Bounds on time are generous (two loaded cores) yet far below what the node did without
these limits (15 s behind a flood, 4 s stalls for one big frame).
"""

from __future__ import annotations

import asyncio
import io
import logging
import resource
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from node_harness import HOST, Node, Nodes, Session, compile_tape, rss_mb, wait_connected

from avm_vm.format.program import Program
from avm_vm.node.auth import handshake
from avm_vm.node.client import Client, ClientError
from avm_vm.node.logs import SummaryHandler, log_loop_error
from avm_vm.node.messages import message
from avm_vm.node.node import Node as InProcessNode
from avm_vm.node.node import NodeConfig
from avm_vm.node.peers import Connection
from avm_vm.node.wire import MAX_FRAME, encode_frame, read_message
from avm_vm.value_text import parse_value
from avm_vm.values import render
from avmc.compiler import compile_source

LENGTH = struct.Struct(">I")
SOURCE = """
behavior Cell {
  field value = 0
  on ["get"] { return value }
  on ["inc"] { value += 1; return value }
  on ["set", v] { value = v; return 1 }
  on ["spin", n] { let i = 0; while i < n { i += 1 } return i }
  on ["call", o, m] { return call(o, m) }
}
"""
CELL: Program = compile_source(SOURCE, "cell.avm")
WAIT_BOUND = 1.0  # seconds another client's call or status may take while the node is abused
ANSWER_TIMEOUT = 30.0  # seconds any one answer may take at all
CLOSE_BOUND = 20.0  # seconds after which a client that reads nothing must have been closed


# --------------------------------------------------------------------------- helpers


def open_files(node: Node) -> int:
    assert node.process is not None
    return len(list(Path(f"/proc/{node.process.pid}/fd").iterdir()))


async def raw_client(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection that has done the client handshake, driven by hand."""
    reader, writer = await asyncio.open_connection(HOST, port)
    await handshake(
        reader, writer, name="abuser", role="client", secret=None, prefix=0, timeout=10,
        initiator=True,
    )  # fmt: skip
    return reader, writer


def calls(target: int, value: tuple, count: int, first_id: int = 1) -> bytes:
    """``count`` client_call frames, ready to write at once."""
    frames = (
        encode_frame(message("client_call", request_id=first_id + n, target=target, input=value))
        for n in range(count)
    )
    return b"".join(frames)


async def waits_of(
    ask: Callable[[], Awaitable[object]], seconds: float, sample: Callable[[], None] = lambda: None
) -> list[float]:
    """How long each of a series of one-at-a-time requests took, for ``seconds``."""
    waits: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        start = time.monotonic()
        await asyncio.wait_for(ask(), ANSWER_TIMEOUT)
        waits.append(time.monotonic() - start)
        sample()
        await asyncio.sleep(0.02)
    return waits


async def closing_words(reader: asyncio.StreamReader, timeout: float) -> list[str]:
    """The `error` messages a connection gets until the node closes it (within ``timeout``)."""
    said: list[str] = []
    async with asyncio.timeout(timeout):
        while (incoming := await read_message(reader)) is not None:
            if incoming["type"] == "error":
                said.append(incoming["message"])
    return said


@asynccontextmanager
async def in_process(**settings: Any) -> AsyncIterator[InProcessNode]:
    """A node in this process (its state can be looked at), stopped at the end."""
    node = InProcessNode(NodeConfig("alpha", jit="off", **settings), [CELL])
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


def client_connections(node: InProcessNode) -> list[Connection]:
    return [conn for conn in node.connections if not conn.is_node]


# --------------------------------------------------------------------------- flood of calls


FLOOD_CALLS = 100_000
FLOOD_MEMORY_MB = 20.0  # growth of the node's memory allowed while a flood waits on it


def test_a_client_pipelining_without_reading_starves_no_one(nodes: Nodes, tmp_path: Path) -> None:
    """100,000 calls written at once, answers never read: the node reads only as fast as it
    answers, so its memory hardly grows and another client's calls keep a short wait.
    (Without backpressure the other client's first call waited 6 s behind the flood, and the
    node's memory grew by about 1 MB per 1,000 calls.)"""
    node = nodes.start("alpha", [compile_tape(SOURCE, tmp_path, "cell")])
    with Session(node) as session:
        cell = session.create("Cell")
    memory = [rss_mb(node)]

    async def scenario() -> list[float]:
        _, writer = await raw_client(node.port)
        writer.write(calls(cell, ("inc",), FLOOD_CALLS))  # buffered here; never read back
        await asyncio.sleep(0.5)
        other = await Client.connect(HOST, node.port)
        try:
            ask = lambda: other.call(cell, ("get",), ANSWER_TIMEOUT)  # noqa: E731
            return await waits_of(ask, 4.0, lambda: memory.append(rss_mb(node)))
        finally:
            await other.close()
            writer.transport.abort()

    waits = asyncio.run(scenario())
    assert len(waits) > 20, waits
    assert max(waits) < WAIT_BOUND, f"the other client waited {max(waits):.2f} s\n{node.log()}"
    grown = max(memory) - memory[0]
    assert grown < FLOOD_MEMORY_MB, f"memory grew {grown:.0f} MB under the flood"
    assert "Traceback" not in node.log()


def test_pipelining_past_the_in_flight_limit_still_gets_every_answer(
    nodes: Nodes, tmp_path: Path
) -> None:
    """A client keeping 3,000 calls unanswered (the limit is 256) is slowed, not refused:
    every call is answered, in order."""
    node = nodes.start("alpha", [compile_tape(SOURCE, tmp_path, "cell")])
    with Session(node) as session:
        cell = session.create("Cell")
        answers = session.call_many([(cell, ("inc",))] * 3000, window=3000)
    assert [render(answer) for answer in answers] == [f"just {n}" for n in range(1, 3001)]


def test_the_node_stops_reading_a_connection_at_its_in_flight_limit() -> None:
    """With 4 requests of a client in flight the node reads no more of that client (the
    queue never holds more of its calls), and every place is given back once answered."""

    async def scenario() -> None:
        async with in_process(max_in_flight=4) as node:
            setup = await Client.connect(HOST, node.port)
            cell = await setup.create("Cell")
            reader, writer = await raw_client(node.port)
            writer.write(calls(cell, ("spin", 20_000), 60))
            queued = []
            for _ in range(50):
                await asyncio.sleep(0.01)
                queued.append(len(node.jobs))
            answers = [await asyncio.wait_for(read_message(reader), 60) for _ in range(60)]
            assert {answer["type"] for answer in answers} == {"call_response"}  # type: ignore[index]
            assert max(queued) <= 4, queued
            assert max(queued) > 0, queued
            (conn,) = [c for c in client_connections(node) if c.name == "abuser"]
            assert (conn.in_flight, conn.in_flight_bytes, conn.queued_bytes) == (0, 0, 0)
            writer.close()
            await setup.close()

    asyncio.run(scenario())


def test_requests_between_nodes_give_their_places_back() -> None:
    """Calls from a peer, answered or refused, free their places on the peer's connection."""

    async def scenario() -> None:
        beta = InProcessNode(NodeConfig("beta", jit="off", prefix=2), [CELL])
        await beta.start()
        alpha = InProcessNode(
            NodeConfig("alpha", jit="off", prefix=1, peers={"beta": (HOST, beta.port)}), [CELL]
        )
        await alpha.start()
        try:
            async with asyncio.timeout(10):
                while not (alpha.links and beta.links):
                    await asyncio.sleep(0.01)
            on_alpha = await Client.connect(HOST, alpha.port)
            on_beta = await Client.connect(HOST, beta.port)
            here, there = await on_alpha.create("Cell"), await on_beta.create("Cell")
            for n in range(50):
                answer = await on_alpha.call(here, ("call", parse_value(f"obj:{there}"), ("inc",)))
                assert render(answer) == f"just just {n + 1}"
            missing = parse_value(f"obj:{there + 1000}")
            assert render(await on_alpha.call(here, ("call", missing, ("inc",)))) == "nothing"
            link = beta.links["alpha"]
            async with asyncio.timeout(5):
                while link.in_flight:
                    await asyncio.sleep(0.01)
            assert link._answers == {}
            await on_alpha.close()
            await on_beta.close()
        finally:
            await alpha.stop()
            await beta.stop()

    asyncio.run(scenario())


def test_a_client_that_reads_nothing_is_closed_when_its_output_passes_the_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Big answers piling up unread past `max_queued_bytes`: that connection is closed and
    logged, the node goes on serving."""

    async def scenario() -> None:
        async with in_process(max_queued_bytes=1 << 20) as node:
            setup = await Client.connect(HOST, node.port)
            cell = await setup.create("Cell")
            await setup.call(cell, ("set", "x" * 200_000))
            _, writer = await raw_client(node.port)
            async with asyncio.timeout(20):
                while not (abuser := [c for c in client_connections(node) if c.name == "abuser"]):
                    await asyncio.sleep(0.01)
                writer.transport.pause_reading()  # read nothing: the socket buffers fill up
                for n in range(400):  # 80 MB of answers in all
                    writer.write(encode_frame(message("peek", request_id=n, object_id=cell)))
                await abuser[0].ended.wait()
            assert render(await setup.call(cell, ("get",))) == f'just "{"x" * 200_000}"'
            writer.transport.abort()
            await setup.close()

    with caplog.at_level(logging.INFO, logger="avm.node"):
        asyncio.run(scenario())
    assert "bytes of output wait for it to read them" in caplog.text, caplog.text


# --------------------------------------------------------------------------- idle clients


def test_an_idle_client_is_closed_and_told_why_but_not_one_that_waits_for_an_answer() -> None:
    async def scenario() -> None:
        async with in_process(idle_timeout=0.5) as node:
            idle_reader, _ = await raw_client(node.port)
            busy = await Client.connect(HOST, node.port)
            cell = await busy.create("Cell")
            start = time.monotonic()
            spin = asyncio.create_task(busy.call(cell, ("spin", 20_000_000), 60))
            said = await closing_words(idle_reader, 10)
            assert said == ["the node closes this connection: idle for 0.5 s"]
            assert time.monotonic() - start < 5
            assert render(await spin) == "just 20000000"
            assert time.monotonic() - start > 1.0  # the call outlasted the timeout: served
            await busy.close()

    asyncio.run(scenario())


# --------------------------------------------------------------------------- big frames


def slow_frame(target: int, *, valid: bool) -> bytes:
    """A 16 MiB `client_call` of 1.6 million small values, which takes a second to decode.
    The invalid one starts with a value nested 1,200 deep, which sends it to the parser for
    deep JSON (pure Python, seconds for 16 MiB), and has one field too many, which is found
    only once everything is parsed."""
    deep = "" if valid else '{"List":[' * 1200 + "]}" * 1200 + ","
    extra = "" if valid else ',"extra":1'
    head = f'{{"type":"client_call","request_id":1,"target":{target}{extra},'
    head += f'"input":{{"List":[{{"Str":"get"}},{{"List":[{deep}'
    tail = "]}]}}"
    count = (MAX_FRAME - len(head) - len(tail) + 1) // 10
    payload = (head + ",".join(['{"Nat":1}'] * count) + tail).encode()
    assert MAX_FRAME - 10 < len(payload) <= MAX_FRAME
    return LENGTH.pack(len(payload)) + payload


async def send_frames(port: int, frames: list[bytes]) -> list[str]:
    """Each frame on a connection of its own; the kinds of what comes back."""

    async def one(frame: bytes) -> str:
        reader, writer = await raw_client(port)
        writer.write(frame)
        answer = await asyncio.wait_for(read_message(reader), 60)
        writer.close()
        return "closed" if answer is None else answer["type"]

    return list(await asyncio.gather(*(one(frame) for frame in frames)))


def big_frames_leave_the_node_serving(
    nodes: Nodes, tmp_path: Path, frames: Callable[[int], list[bytes]], bound: float
) -> tuple[list[str], list[float]]:
    """Send ``frames(target)`` to alpha while a client asks alpha's status over and over;
    alpha and its peer beta must stay connected. The answers' kinds and the status waits."""
    tape = compile_tape(SOURCE, tmp_path, "cell")
    beta = nodes.start("beta", [tape])
    alpha = nodes.start("alpha", [tape], peers={"beta": beta})
    wait_connected(alpha, ["beta"])
    with Session(alpha) as session:
        cell = session.create("Cell")

    async def scenario() -> tuple[list[str], list[float]]:
        sending = asyncio.create_task(send_frames(alpha.port, frames(cell)))
        watcher = await Client.connect(HOST, alpha.port)
        waits: list[float] = []
        while not sending.done():
            waits += await waits_of(lambda: watcher.status(ANSWER_TIMEOUT), 0.5)
        await watcher.close()
        return await sending, waits

    kinds, waits = asyncio.run(scenario())
    assert max(waits) < bound, f"status took up to {max(waits):.2f} s\n{alpha.log()}"
    with Session(alpha) as session:
        assert [p["connected"] for p in session.status()["peers"]] == [True]
    for node in (alpha, beta):
        assert "silent for" not in node.log() and "disconnected" not in node.log(), node.log()
        assert "Traceback" not in node.log()
    return kinds, waits


@pytest.mark.slow  # the default run keeps the valid 16 MiB call and test_node_reader's aside
def test_a_16_mib_frame_is_decoded_off_the_event_loop(nodes: Nodes, tmp_path: Path) -> None:
    """A bad 16 MiB frame that takes seconds to decode (it fails only at the end): the node
    answers status within a second meanwhile and its peer stays connected. (Decoded on the
    loop, it froze the node for 5 s, and the peer took the node for dead.)"""
    kinds, waits = big_frames_leave_the_node_serving(
        nodes, tmp_path, lambda cell: [slow_frame(cell, valid=False)], WAIT_BOUND
    )
    assert kinds == ["error"]
    assert len(waits) > 10, waits


def test_a_valid_16_mib_call_is_answered_and_the_node_keeps_serving(
    nodes: Nodes, tmp_path: Path
) -> None:
    """A valid 16 MiB call is served and the peer stays connected. Its decoding is off the
    loop (the test above); turning its 1.6 million values into the run's input and back is
    not (about a second here), hence the looser bound on status. (Before: 4 to 7 s.)"""
    kinds, _ = big_frames_leave_the_node_serving(
        nodes, tmp_path, lambda cell: [slow_frame(cell, valid=True)], 3 * WAIT_BOUND
    )
    assert kinds == ["call_response"]


# --------------------------------------------------------------------------- crowds


FILE_HANDLES = 256  # the node's file-handle limit in the crowd test, as in the finding
FORGED = "refused a connection from 6.6.6.6:6"  # a log line a client tries to slip in
CROWD = 300


def test_a_crowd_of_idle_clients_is_capped_refused_clearly_and_timed_out(
    nodes: Nodes, tmp_path: Path
) -> None:
    """300 idle clients at a node that may open 256 files: it serves as many as its cap
    (sized from the file-handle limit), refuses the rest with a message saying why, closes
    the idle ones after `--idle-timeout`, then serves a new client; its log stays small,
    repeats summarised, one line per record. (Before: accept failed in a loop, and the log
    grew by 118 MB of tracebacks in 30 s.)"""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (FILE_HANDLES, hard))
    try:  # the node inherits the low limit; this process needs more for the crowd
        node = nodes.start("alpha", [compile_tape(SOURCE, tmp_path, "cell")],
                           options=["--idle-timeout", "5"])  # fmt: skip
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    async def first_words(
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | BaseException,
    ) -> str:
        if isinstance(connection, BaseException):
            return f"refused at once: {connection}"
        try:
            answer = await asyncio.wait_for(read_message(connection[0]), 1.0)
        except TimeoutError:
            return "served"
        return f"told: {answer['message']}" if answer is not None else "closed"

    async def scenario() -> tuple[list[str], int, list[str]]:
        crowd = []
        for _ in range(CROWD // 50):
            attempts = [raw_client(node.port) for _ in range(50)]
            crowd += await asyncio.gather(*attempts, return_exceptions=True)
        fates = list(await asyncio.gather(*(first_words(c) for c in crowd)))
        files = open_files(node)
        served = [c for c, fate in zip(crowd, fates, strict=True) if fate == "served"]
        farewells = [await closing_words(reader, 10) for reader, _ in served]  # type: ignore[misc]
        for connection in crowd:
            if not isinstance(connection, BaseException):
                connection[1].close()
        newcomer = await Client.connect(HOST, node.port)
        await newcomer.status()
        await newcomer.close()
        _, forger = await raw_client(node.port)
        forger.write(encode_frame(message("error", message=f"x\n{FORGED}: fake")))
        await forger.drain()
        forger.close()
        return fates, files, [" ".join(words) for words in farewells]

    fates, files, farewells = asyncio.run(scenario())
    served = fates.count("served")
    refused = [fate for fate in fates if fate != "served"]
    assert 0 < served < CROWD and len(refused) == CROWD - served
    for fate in refused:
        assert "too many" in fate and "try again later" in fate, fate
    assert files < FILE_HANDLES - 32, f"{files} files open"
    assert set(farewells) == {"the node closes this connection: idle for 5 s"}
    assert node.terminate() == 0
    log = node.log()
    assert "Traceback" not in log and "out of system resource" not in log
    assert len(log) < 10_000, f"{len(log)} bytes of log"
    assert log.count("refused a connection from") < 10, log
    assert "more like it in" in log, log
    assert f"x\\n{FORGED}" in log and f"\n{FORGED}" not in log, log  # one line per record


def test_a_client_past_the_cap_is_told_why() -> None:
    """The refusal reaches `Client` users as a `ClientError` that says why."""

    async def scenario() -> None:
        async with in_process(max_connections=1) as node:
            first = await Client.connect(HOST, node.port)
            with pytest.raises(ClientError, match=r"too many connections.*try again later"):
                await Client.connect(HOST, node.port)
            await first.close()

    asyncio.run(scenario())


# --------------------------------------------------------------------------- the log


def test_repeated_log_lines_are_summarised() -> None:
    stream = io.StringIO()
    handler = SummaryHandler(stream, window=0.2, budget=5)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("avm.test.summary")
    log.addHandler(handler)
    log.propagate = False
    try:
        for port in range(1000, 1300):
            log.warning("refused a connection from 127.0.0.1:%d: too many", port)
        log.warning("peer alpha disconnected")
        for n in range(20):
            log.warning("line %s", "abcdefghijklmnopqrstuvwxyz"[n])
        time.sleep(0.25)
        handler.summarize()
        log.warning("refused a connection from 127.0.0.1:2000: too many")
    finally:
        log.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines[:5] == [
        "refused a connection from 127.0.0.1:1000: too many",
        "peer alpha disconnected",
        "line a",
        "line b",
        "line c",
    ]
    summary = lines[5:-1]
    assert len(summary) == 2
    assert summary[0].startswith("refused a connection from 127.0.0.1:1000: too many (and 299")
    assert summary[1].startswith("17 more log lines in")
    assert lines[-1] == "refused a connection from 127.0.0.1:2000: too many"  # a new window


def test_an_os_error_on_the_event_loop_is_one_line_without_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    error = OSError(24, "Too many open files")
    with caplog.at_level(logging.INFO, logger="avm.node"):
        log_loop_error(asyncio.new_event_loop(), {"message": "accept failed", "exception": error})
    assert [record.getMessage() for record in caplog.records] == [
        "accept failed: [Errno 24] Too many open files"
    ]
    assert caplog.records[0].exc_info is None


# --------------------------------------------------------------------------- long runs


@pytest.mark.slow
def test_the_findings_flood_200000_calls(nodes: Nodes, tmp_path: Path) -> None:
    """The adversarial run's flood: 200,000 pipelined calls, none read. The other client's
    wait stays under the bound, memory under the bound, and the flooder, which reads none of
    its answers, is closed after the idle timeout. (It is blocked once the socket buffers
    hold all the answers they can, which takes a machine-dependent share of the flood: the
    close is awaited, up to CLOSE_BOUND seconds, rather than expected within the 8 s.)"""
    node = nodes.start("alpha", [compile_tape(SOURCE, tmp_path, "cell")],
                       options=["--idle-timeout", "5"])  # fmt: skip
    with Session(node) as session:
        cell = session.create("Cell")
    memory = [rss_mb(node)]
    closed = "has read none of its answers for 5 s"

    async def scenario() -> tuple[list[float], bool]:
        _, writer = await raw_client(node.port)
        writer.write(calls(cell, ("inc",), 200_000))
        other = await Client.connect(HOST, node.port)
        ask = lambda: other.call(cell, ("get",), ANSWER_TIMEOUT)  # noqa: E731
        waits = await waits_of(ask, 8.0, lambda: memory.append(rss_mb(node)))
        await other.close()
        deadline = time.monotonic() + CLOSE_BOUND
        while closed not in node.log() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        writer.transport.abort()
        return waits, closed in node.log()

    waits, was_closed = asyncio.run(scenario())
    assert max(waits) < WAIT_BOUND, max(waits)
    assert max(memory) - memory[0] < FLOOD_MEMORY_MB
    assert was_closed, node.log()


@pytest.mark.slow
def test_three_valid_16_mib_calls_at_once(nodes: Nodes, tmp_path: Path) -> None:
    """Three valid 16 MiB calls at once are served while status keeps answering."""
    kinds, _ = big_frames_leave_the_node_serving(
        nodes, tmp_path, lambda cell: [slow_frame(cell, valid=True)] * 3, 4 * WAIT_BOUND
    )
    assert kinds == ["call_response"] * 3


@pytest.mark.slow
def test_many_pipelining_clients_share_the_node(nodes: Nodes, tmp_path: Path) -> None:
    """Twenty clients pipelining 5,000 calls each on one object: every answer comes, each
    client's in order, and a client making single calls meanwhile keeps a short wait."""
    node = nodes.start("alpha", [compile_tape(SOURCE, tmp_path, "cell")])
    with Session(node) as session:
        cell = session.create("Cell")

    async def pipeline(offset: int) -> list[str]:
        reader, writer = await raw_client(node.port)
        writer.write(calls(cell, ("inc",), 5000, first_id=offset))
        answers = [await asyncio.wait_for(read_message(reader), 60) for _ in range(5000)]
        writer.close()
        assert [a["request_id"] for a in answers] == list(range(offset, offset + 5000))  # type: ignore[index]
        return [render(a["value"]) for a in answers]  # type: ignore[index]

    async def scenario() -> tuple[list[list[str]], list[float]]:
        pipelines = asyncio.gather(*(pipeline(1 + n * 10_000) for n in range(20)))
        other = await Client.connect(HOST, node.port)
        waits = await waits_of(lambda: other.call(cell, ("get",), ANSWER_TIMEOUT), 3.0)
        await other.close()
        return await pipelines, waits

    answers, waits = asyncio.run(scenario())
    values = sorted(int(text.removeprefix("just ")) for each in answers for text in each)
    assert values == list(range(1, 100_001))
    # No starvation: before fair scheduling and backpressure such a client waited 16-28 s.
    # Under `.ci/run` one wait of about 1.3 s near the start of the floods is still seen
    # (an open problem: a stall early in the floods), hence a bound above WAIT_BOUND here.
    assert max(waits) < 3 * WAIT_BOUND, max(waits)
    assert sorted(waits)[len(waits) // 2] < 0.1, waits  # and the typical call is quick
