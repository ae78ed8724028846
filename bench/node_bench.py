"""Remote calls over loopback between two `avm node` processes, against local calls on one.

    python bench/node_bench.py              # 3,000 timed calls per workload
    python bench/node_bench.py --calls 600  # a quick look

Every call is the same piece of work: a `forwarder` object on node A is called with
`["via", target, n]` and calls `target` with `["echo", n]`, which answers `n`. Only where
`target` lives changes:

- in-process: the forwarder and the echo in one runtime, called from `main` (no network);
- local: client → node A → echo on A (one TCP round trip, client to node);
- remote: client → node A → echo on node B → A → client (two round trips, the second
  between the nodes, with A's run parked meanwhile).

The client keeps one connection open (`avm_vm.node.client.Client`), so process start-up
and the handshake are not measured. Local and remote calls alternate in rounds, so a busy
machine slows both alike; ratios compare figures from this one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from avm_vm.node.client import ClientError
from avm_vm.runtime import Runtime, RuntimeOptions
from avm_vm.values import Just, ObjectRef, values_equal
from avmc.compiler import compile_source

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

IN_PROCESS = (
    BEHAVIORS
    + """
main {
  let f = create forwarder
  let e = create echo
  let i = 0
  while i < %d { call!(f, ["via", e, i]); i += 1 }
  return i
}
"""
)

WARM_UP = 200
ROUNDS = 3


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def in_process(calls: int) -> float:
    """Calls per second of the same forwarder → echo call inside one runtime."""
    program = compile_source(IN_PROCESS % calls, "node_bench.avm")
    runtime = Runtime(program, RuntimeOptions(record_trace=False))
    start = time.perf_counter()
    runtime.run_main()
    return calls / (time.perf_counter() - start)


def timed_calls(session: Session, forwarder: int, target: int, count: int) -> list[float]:
    """Seconds taken by each of ``count`` calls; every answer is checked."""
    seconds = []
    ref = ObjectRef(target)
    for n in range(count):
        start = time.perf_counter()
        answer = session.call(forwarder, ("via", ref, n))
        seconds.append(time.perf_counter() - start)
        if not values_equal(answer, Just(n)):
            raise SystemExit(f"wrong answer {answer!r} for call {n}")
    return seconds


def row(name: str, seconds: list[float] | None, rate: float, base: float) -> str:
    if seconds is None:
        latency = f"{'-':>9} {'-':>9}"
    else:
        p50, p99 = percentile(seconds, 0.50) * 1e3, percentile(seconds, 0.99) * 1e3
        latency = f"{p50:9.3f} {p99:9.3f}"
    return f"  {name:<34} {rate:11,.0f} {latency} {base / rate:12.1f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000, help="timed calls per workload")
    args = parser.parse_args()
    per_round = max(1, args.calls // ROUNDS)
    calls = per_round * ROUNDS

    baseline = max(in_process(calls) for _ in range(3))  # best of three, as vm_bench does
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
                timed_calls(on_alpha, forwarder, here, WARM_UP)
                timed_calls(on_alpha, forwarder, there, WARM_UP)
                local: list[float] = []
                remote: list[float] = []
                for _ in range(ROUNDS):
                    local += timed_calls(on_alpha, forwarder, here, per_round)
                    remote += timed_calls(on_alpha, forwarder, there, per_round)
        except ClientError as error:
            raise SystemExit(f"node benchmark failed: {error}") from None
        finally:
            nodes.close()

    local_rate, remote_rate = len(local) / sum(local), len(remote) / sum(remote)
    print(
        "node calls: a forwarder object on node A calls an echo object with one number\n"
        f"  {calls:,} timed calls per workload after {WARM_UP} warm-up calls; local and remote\n"
        f"  alternate in {ROUNDS} rounds over one persistent client connection (127.0.0.1);\n"
        "  in-process: the same call made by main in one runtime, best of three\n"
    )
    print(f"  {'workload':<34} {'calls/s':>11} {'p50 ms':>9} {'p99 ms':>9} {'time/in-proc':>13}")
    print(row("in-process runtime (no network)", None, baseline, baseline))
    print(row("client → A, echo on A (local)", local, local_rate, baseline))
    print(row("client → A → B, echo on B (remote)", remote, remote_rate, baseline))
    print(
        f"\n  remote / local: {local_rate / remote_rate:.2f}x the time per call, "
        f"p50 {statistics.median(remote) / statistics.median(local):.2f}x, "
        f"p99 {percentile(remote, 0.99) / percentile(local, 0.99):.2f}x"
    )


if __name__ == "__main__":
    main()
