"""`avm node` against the floor: a plain asyncio server with the node's framing and no VM.

    python bench/node_bench.py              # 3,000 timed calls per workload
    python bench/node_bench.py --calls 600  # a quick look

Every call is the same piece of work: a `forwarder` object on node A is called with
`["via", target, n]` and calls `target` with `["echo", n]`, which answers `n`. Only where
`target` lives changes:

- local: client → node A → echo on A (one TCP round trip, client to node);
- remote: client → node A → echo on node B → A → client (two round trips, the second
  between the nodes, with A's run parked meanwhile).

The floor is what the network and Python's asyncio allow for the same frames: a server that
reads each `client_call` frame (4-byte length + JSON), parses it with the standard `json`
module and answers a `call_response` of the same shape the node sends, without any VM.

A remote call crosses two hops, so it also has a floor of its own: the two-hop floor, a
forwarding server of the same kind that passes each `client_call` on as a `call` frame to a
second floor server over one connection between them, and the answer back (three
processes, as client, A and B are).

Each workload runs one at a time (p50/p99 of single round trips) and pipelined (up to 256
calls in flight on one connection, calls/s; "CPU us" is the CPU time the servers of the
workload spent per pipelined call, both nodes or both floor servers for two hops). The
client keeps one connection open (`avm_vm.node.client.Client`), so process start-up and
the handshake are not measured.
Workloads alternate in rounds, so a busy machine slows all alike; the ratios on the last
line compare figures from this one run (for calls/s, the median over the rounds of each
round's ratio):

    node/floor: local L, remote R (R2 of the two-hop floor), p50 P

L and R are pipelined calls/s over the floor's (higher is better), P is the node's local
one-at-a-time p50 over the floor's (lower is better), R2 the remote calls/s over the
two-hop floor's (the fair yardstick for a call that crosses two hops).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from avm_vm.node.client import Client, ClientError
from avm_vm.values import Just, ObjectRef, values_equal

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the node-process harness the tests use
from node_harness import Nodes, Session, compile_tape, wait_connected  # noqa: E402

BEHAVIORS = """
behavior forwarder {
  on ["via", target, n] { return call!(target, ["echo", n]) }
}
behavior echo {
  on ["echo", n] { return n }
}
"""

WARM_UP = 200
ROUNDS = 5
WINDOW = 256  # pipelined calls in flight
LENGTH = struct.Struct(">I")
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# ----------------------------------------------------------------------------- the floor


async def _floor_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            request = await _read_frame(reader)
            answer = {
                "type": "call_response",
                "request_id": request["request_id"],
                "ok": True,
                "value": {"Just": request["input"]["List"][2]},
                "error_kind": None,
                "error": None,
            }
            writer.write(_frame_of(answer))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


async def _read_frame(reader: asyncio.StreamReader) -> dict:
    size = LENGTH.unpack(await reader.readexactly(4))[0]
    return json.loads(await reader.readexactly(size))


def _frame_of(message: dict) -> bytes:
    payload = json.dumps(message, separators=(",", ":")).encode()
    return LENGTH.pack(len(payload)) + payload


class Floor:
    """A floor server in a process of its own (as a node is), on a port the OS picks;
    ``forward_to``: the forwarding server of the two-hop floor, passing calls to that port."""

    def __init__(self, forward_to: int | None = None) -> None:
        command = [sys.executable, __file__, "--floor-server"]
        if forward_to is not None:
            command += ["--forward-to", str(forward_to)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


async def serve_floor(forward_to: int | None) -> None:
    handler = _floor_connection if forward_to is None else await _forwarder(forward_to)
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep(3600)  # the benchmark kills it long before


async def _forwarder(port: int) -> Handler:
    """The first hop of the two-hop floor: each `client_call` goes on to the floor server at
    ``port`` as a `call` with an id of its own, and its answer comes back to the client,
    as node A does with a remote call (no VM, no parking, no undo)."""
    upstream_reader, upstream = await asyncio.open_connection("127.0.0.1", port)
    waiting: dict[int, tuple[asyncio.StreamWriter, int]] = {}
    ids = iter(range(1, 1 << 62))

    async def answers() -> None:
        while True:
            answer = await _read_frame(upstream_reader)
            client, request_id = waiting.pop(answer["request_id"])
            answer["request_id"] = request_id
            client.write(_frame_of(answer))

    asyncio.get_running_loop().create_task(answers())

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await _read_frame(reader)
                own = next(ids)
                waiting[own] = (writer, request["request_id"])
                call = {
                    "type": "call",
                    "request_id": own,
                    "target": request["target"],
                    "input": request["input"],
                    "sender": 0,
                    "duct": [],
                }
                upstream.write(_frame_of(call))
                await upstream.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return connection


class RawClient:
    """A client as lean as the floor's: it writes `client_call` frames and reads answers
    with the standard `json` module, to the floor or (after the handshake) to a node, so
    the client's own cost is the same on both sides of the ratio."""

    def __init__(self, port: int, node: bool) -> None:
        self.runner = asyncio.Runner()
        if node:
            client = self.runner.run(Client.connect("127.0.0.1", port, None, 10.0))
            self.reader, self.writer = client.reader, client.writer
        else:
            connect = asyncio.open_connection("127.0.0.1", port)
            self.reader, self.writer = self.runner.run(connect)
        self.next_id = 1

    def _frame(self, target: int, value: tuple) -> bytes:
        request = {
            "type": "client_call",
            "request_id": self.next_id,
            "target": target,
            "input": {"List": [{"Str": value[0]}, {"ObjectRef": value[1].id}, {"Nat": value[2]}]},
        }
        self.next_id += 1
        payload = json.dumps(request, separators=(",", ":")).encode()
        return LENGTH.pack(len(payload)) + payload

    async def _read(self) -> dict:
        size = LENGTH.unpack(await self.reader.readexactly(4))[0]
        return json.loads(await self.reader.readexactly(size))

    def call(self, target: int, value: tuple) -> object:
        async def one() -> object:
            self.writer.write(self._frame(target, value))
            await self.writer.drain()
            answer = await self._read()
            if not answer["ok"]:
                raise ClientError(f"{answer['error_kind']}: {answer['error']}")
            return Just(answer["value"]["Just"]["Nat"])

        return self.runner.run(one())

    def call_many(self, calls: list[tuple[int, tuple]]) -> None:
        async def many() -> None:
            room = asyncio.Semaphore(WINDOW)

            async def send() -> None:
                for target, value in calls:
                    await room.acquire()
                    self.writer.write(self._frame(target, value))
                    await self.writer.drain()

            async def receive() -> None:
                for _ in calls:
                    answer = await self._read()
                    if not answer["ok"]:
                        raise ClientError(f"{answer['error_kind']}: {answer['error']}")
                    room.release()

            await asyncio.gather(send(), receive())

        self.runner.run(many())

    def close(self) -> None:
        self.writer.close()
        self.runner.close()


# ----------------------------------------------------------------------------- workloads


def one_at_a_time(client: RawClient, forwarder: int, target: int, n: int) -> list:
    """Seconds taken by each of ``n`` calls; every answer is checked."""
    seconds = []
    ref = ObjectRef(target)
    for i in range(n):
        start = time.perf_counter()
        answer = client.call(forwarder, ("via", ref, i))
        seconds.append(time.perf_counter() - start)
        if not values_equal(answer, Just(i)):
            raise SystemExit(f"wrong answer {answer!r} for call {i}")
    return seconds


def pipelined(client: RawClient, forwarder: int, target: int, n: int) -> float:
    """Seconds for ``n`` calls with up to `WINDOW` in flight."""
    ref = ObjectRef(target)
    calls = [(forwarder, ("via", ref, i)) for i in range(n)]
    start = time.perf_counter()
    client.call_many(calls)
    return time.perf_counter() - start


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time the processes ``pids`` have used so far (Linux /proc)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


class Figures:
    def __init__(self) -> None:
        self.latency: list[float] = []
        self.seconds = 0.0
        self.calls = 0
        self.rounds: list[float] = []  # pipelined calls/s of each round
        self.cpu = 0.0  # server-side CPU seconds of the pipelined calls (all its processes)

    def over(self, other: Figures) -> float:
        """The median over the rounds of this pipelined rate over ``other``'s: the two
        ran back to back in each round, so a busy spell of the machine weighs on one
        ratio, not on all."""
        return statistics.median(a / b for a, b in zip(self.rounds, other.rounds, strict=True))

    def rate(self) -> float:
        return self.calls / self.seconds

    def row(self, name: str) -> str:
        p50, p99 = percentile(self.latency, 0.5) * 1e3, percentile(self.latency, 0.99) * 1e3
        cpu = self.cpu / self.calls * 1e6
        return f"  {name:<36} {self.rate():11,.0f} {p50:9.3f} {p99:9.3f} {cpu:8.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000, help="timed calls per workload")
    parser.add_argument("--floor-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--forward-to", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_server:
        asyncio.run(serve_floor(args.forward_to))
        return
    per_round = max(1, args.calls // ROUNDS)
    figures = {name: Figures() for name in ("floor", "two hops", "local", "remote")}

    floor = Floor()
    floor_client = RawClient(floor.port, node=False)
    far_floor = Floor()
    near_floor = Floor(forward_to=far_floor.port)
    two_hop_client = RawClient(near_floor.port, node=False)
    with tempfile.TemporaryDirectory() as directory:
        nodes = Nodes(Path(directory))
        try:
            tape = compile_tape(BEHAVIORS, Path(directory), "node_bench")
            beta = nodes.start("beta", [tape])
            alpha = nodes.start("alpha", [tape], peers={"beta": beta})
            wait_connected(alpha, ["beta"])
            with Session(alpha) as on_alpha, Session(beta) as on_beta:
                forwarder = on_alpha.create("forwarder")
                here, there = on_alpha.create("echo"), on_beta.create("echo")
                raw = RawClient(alpha.port, node=True)
                clients = {
                    "floor": (floor_client, 1, 2),
                    "two hops": (two_hop_client, 1, 2),
                    "local": (raw, forwarder, here),
                    "remote": (raw, forwarder, there),
                }
                servers = [floor.process.pid], [near_floor.process.pid, far_floor.process.pid]
                node_pids = [node.process.pid for node in (alpha, beta) if node.process]
                pids = dict(zip(clients, [*servers, node_pids, node_pids], strict=True))
                for client, f, t in clients.values():
                    one_at_a_time(client, f, t, WARM_UP)
                    pipelined(client, f, t, WARM_UP)
                for _ in range(ROUNDS):
                    for name, (client, f, t) in clients.items():
                        figures[name].latency += one_at_a_time(client, f, t, per_round)
                        used = cpu_seconds(pids[name])
                        seconds = pipelined(client, f, t, per_round * 3)
                        figures[name].cpu += cpu_seconds(pids[name]) - used
                        figures[name].seconds += seconds
                        figures[name].calls += per_round * 3
                        figures[name].rounds.append(per_round * 3 / seconds)
        except ClientError as error:
            raise SystemExit(f"node benchmark failed: {error}") from None
        finally:
            nodes.close()
            for client in (floor_client, two_hop_client):
                client.close()
            for server in (floor, near_floor, far_floor):
                server.close()

    print(
        "node calls: a forwarder object on node A calls an echo object with one number\n"
        f"  {per_round * ROUNDS:,} one-at-a-time and {per_round * ROUNDS * 3:,} pipelined calls"
        f" (window {WINDOW}) per workload,\n"
        f"  in {ROUNDS} alternating rounds after {WARM_UP} warm-up calls, one client connection"
        " on 127.0.0.1\n"
    )
    print(f"  {'workload':<36} {'pipelined/s':>11} {'p50 ms':>9} {'p99 ms':>9} {'CPU us':>8}")
    print(figures["floor"].row("floor: asyncio + JSON framing, no VM"))
    print(figures["two hops"].row("two-hop floor: forwarded, no VM"))
    print(figures["local"].row("client → A, echo on A (local)"))
    print(figures["remote"].row("client → A → B, echo on B (remote)"))
    base = figures["floor"]
    local_ratio = figures["local"].over(base)
    remote_ratio = figures["remote"].over(base)
    p50_ratio = percentile(figures["local"].latency, 0.5) / percentile(base.latency, 0.5)
    two_hop_ratio = figures["remote"].over(figures["two hops"])
    print(
        f"\nnode/floor: local {local_ratio:.2f}, remote {remote_ratio:.2f}"
        f" ({two_hop_ratio:.2f} of the two-hop floor), p50 {p50_ratio:.2f}"
    )


if __name__ == "__main__":
    main()
