"""Load: 20 concurrent clients for 20 s against two `avm node` processes, half the calls
remote (client → alpha → beta). Nothing may be lost (every counter ends at exactly the
increments its calls acknowledged), the nodes' memory stays flat after warm-up, and the test
prints p50/p99 latency and throughput. Slow suite: `python -m pytest -m slow -s
tests/test_node_load.py`.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from node_harness import HOST, Nodes, Session, compile_tape, rss_mb, wait_connected

from avm_vm.node.client import Client
from avm_vm.values import Just, ObjectRef

pytestmark = pytest.mark.slow

CLIENTS = int(os.environ.get("AVM_LOAD_CLIENTS", "20"))
SECONDS = float(os.environ.get("AVM_LOAD_SECONDS", "20"))
WARM_UP = SECONDS / 4  # memory is compared from here on
MEMORY_GROWTH_MB = 25.0  # allowed RSS growth of a node after warm-up (allocator noise)

BEHAVIORS = """
behavior Counter {
  field count = 0
  on ["add", n] { count += n; return count }
  on ["get"] { return count }
}
behavior Forwarder {
  on ["via", target, message] { return call!(target, message) }
}
"""


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def client_loop(
    port: int, forwarder: int, counter: int, remote: bool, stop_at: float
) -> tuple[int, list[float]]:
    """One client: one connection, one call at a time until ``stop_at``. Every answer must
    be the counter's next value: a lost or repeated call shows at once."""
    client = await Client.connect(HOST, port, None, 10.0)
    acked, latencies = 0, []
    try:
        while time.monotonic() < stop_at:
            message = ("add", 1)
            start = time.perf_counter()
            if remote:
                answer = await client.call(forwarder, ("via", ObjectRef(counter), message))
            else:
                answer = await client.call(counter, message)
            latencies.append(time.perf_counter() - start)
            acked += 1
            assert answer == Just(acked), f"call {acked} to obj:{counter} answered {answer!r}"
    finally:
        await client.close()
    return acked, latencies


def test_twenty_clients_for_twenty_seconds_lose_nothing(tmp_path: Path) -> None:
    nodes = Nodes(tmp_path)
    try:
        tape = compile_tape(BEHAVIORS, tmp_path, "load")
        beta = nodes.start("beta", [tape])
        alpha = nodes.start("alpha", [tape], peers={"beta": beta})
        wait_connected(alpha, ["beta"])
        with Session(alpha) as on_alpha, Session(beta) as on_beta:
            forwarder = on_alpha.create("Forwarder")
            # Client i calls its own counter: on alpha for even i, on beta (remote) for odd.
            counters = [(on_beta if i % 2 else on_alpha).create("Counter") for i in range(CLIENTS)]
        memory: dict[str, list[float]] = {"alpha": [], "beta": []}

        async def run() -> list[tuple[int, list[float]]]:
            stop_at = time.monotonic() + SECONDS
            loops = [
                client_loop(alpha.port, forwarder, counters[i], i % 2 == 1, stop_at)
                for i in range(CLIENTS)
            ]
            tasks = asyncio.gather(*loops)
            start = time.monotonic()
            while not tasks.done():
                if time.monotonic() - start >= WARM_UP:
                    memory["alpha"].append(rss_mb(alpha))
                    memory["beta"].append(rss_mb(beta))
                await asyncio.sleep(0.5)
            return await tasks

        results = asyncio.run(run())

        # Nothing lost: each counter holds exactly what its client's calls acknowledged.
        with Session(alpha) as on_alpha, Session(beta) as on_beta:
            for i, (acked, _) in enumerate(results):
                session = on_beta if i % 2 else on_alpha
                assert session.call(counters[i], ("get",)) == Just(acked)

        growth = {name: max(v) - min(v) for name, v in memory.items()}
        print(f"\nload: {CLIENTS} clients for {SECONDS:g} s, half remote")
        for parity, name in enumerate(("local", "remote")):
            lat = [s for i, (_, times) in enumerate(results) if i % 2 == parity for s in times]
            p50, p99 = percentile(lat, 0.5) * 1e3, percentile(lat, 0.99) * 1e3
            rate = len(lat) / SECONDS
            print(f"  {name:<6}: {len(lat):7d} calls, {rate:7.0f}/s, p50 {p50:.2f} ms, ", end="")
            print(f"p99 {p99:.2f} ms")
            assert lat, f"no {name} call was made"
        print(
            "  memory after warm-up (MB): "
            + ", ".join(f"{n} {min(v):.1f}..{max(v):.1f}" for n, v in memory.items())
        )
        for name, grew in growth.items():
            assert grew < MEMORY_GROWTH_MB, f"{name} grew {grew:.1f} MB after warm-up"
    finally:
        nodes.close()
