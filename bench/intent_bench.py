"""Intents (docs/intents.md): intent-matching time as the pool of pending intents grows.

    python bench/intent_bench.py [--pools 10,100,1000] [--repeat 5]

An engine with the barter ring of examples/barter.avm: Alice's and Bob's intents are
pending (no pair settles), along with N other pending intents that never match. Carol's
intent arrives; the figure is the time from its `intent` event to the commit of the ring:
the solver's candidate batches and every batch run it tries, through the events a node
logs (without the log's writes). Two kinds of pool:

* unrelated: each of the N intents is on its own object, so the pool's index by objects
  leaves them out of Carol's candidates;
* related: each of the N intents also touches Alice's trader, so all of them are Carol's
  neighbours; the solver's caps (MAX_RELATED intents, MAX_TRIES batches) bound the work.

The yardstick, timed in the same run, is the same arrival with no other intent pending.
With ``--node`` it also measures a real `avm node --data` (unrelated pools only: there each
pending intent was solved for when it came): from Carol's `avm intent` request to the
settled report, by a client polling `intent_status` every millisecond. Lines to quote:

    pool N unrelated: T ms to match (R x an empty pool)
    pool N related:   T ms to match (R x an empty pool)
    node, pool N:     T ms from submission to settled (R x an empty pool)
"""

from __future__ import annotations

import argparse
import base64
import sys
import tempfile
import time
from pathlib import Path

from avm_vm.format.bytecode import encode
from avm_vm.node.codec import value_to_json
from avm_vm.node.directory import Directory
from avm_vm.node.engine import Engine
from avm_vm.runtime.core import RuntimeOptions
from avm_vm.runtime.runs import Done
from avm_vm.values import ObjectRef, Value
from avmc.compiler import compile_path

ROOT = Path(__file__).resolve().parents[1]
BARTER = ROOT / "examples" / "barter.avm"
sys.path.insert(0, str(ROOT / "tests"))  # the node-process harness the tests use
from node_harness import Nodes, Session, compile_tape  # noqa: E402

ITEMS = {"alice": "apple", "bob": "banana", "carol": "cherry"}
WANTS = {"alice": "cherry", "bob": "apple", "carol": "banana"}


class Pool:
    """An engine fed events as a node feeds them."""

    def __init__(self, tape: bytes) -> None:
        options = RuntimeOptions(machine="bench", node_prefix=1, jit="off")
        self.engine = Engine(options, Directory("bench", 1))
        self.clock = 0
        self.apply({"k": "load", "tape": base64.b64encode(tape).decode(), "upgrade": False})

    def apply(self, event: dict) -> object:
        self.clock += 1
        return self.engine.apply({**event, "t": self.clock})

    def create(self) -> int:
        step = self.apply({"k": "client_create", "behavior": "Trader", "controller": None})
        return step.outcome.value.id  # type: ignore[attr-defined]

    def call(self, target: int, value: Value) -> None:
        self.apply({"k": "client_call", "target": target, "input": value_to_json(value)})

    def intent(self, target: int, offer: Value, check: Value) -> int:
        event = {"k": "intent", "target": target, "wait": 10**9}
        event.update(offer=value_to_json(offer), check=value_to_json(check))
        return self.apply(event).reply["intent"]  # type: ignore[attr-defined]

    def solve(self, number: int) -> bool:
        """What the node's solver does for a new intent: its candidate batches in turn,
        until one commits (an `intent_batch` event each)."""
        for batch in self.engine.intents.candidates(number):
            step = self.apply({"k": "intent_batch", "intents": batch})
            if type(step.outcome) is Done:  # type: ignore[attr-defined]
                return True
        return False


def trade(pool: Pool, traders: dict[str, int], name: str) -> int:
    partners = tuple(ObjectRef(t) for other, t in traders.items() if other != name)
    return pool.intent(traders[name], ("give", ITEMS[name], partners), ("want", WANTS[name]))


def match_seconds(tape: bytes, pending: int, related: bool) -> tuple[float, float]:
    """Seconds to match Carol's intent with ``pending`` others waiting, and seconds per
    accepted intent while the pool was filled."""
    pool = Pool(tape)
    traders = {name: pool.create() for name in ITEMS}
    for name, item in ITEMS.items():
        pool.call(traders[name], ("stock", item))
    for name in ("alice", "bob"):
        pool.solve(trade(pool, traders, name))
    owners = [traders["alice"]] * pending if related else [pool.create() for _ in range(pending)]
    start = time.perf_counter()
    for owner in owners:  # the others were solved for (in vain) when they came
        pool.intent(owner, ("items",), ("want", "melon"))
    filled = time.perf_counter() - start
    start = time.perf_counter()
    settled = pool.solve(trade(pool, traders, "carol"))
    elapsed = time.perf_counter() - start
    if not settled or pool.engine.intents.counts["settled"] != 3:
        raise SystemExit(f"the ring did not settle with {pending} pending intents")
    return elapsed, filled / max(pending, 1)


def node_seconds(nodes: Nodes, directory: Path, pending: int, rounds: int) -> float:
    """The fewest seconds from Carol's intent request to its settled report, on a real durable
    node with ``pending`` unrelated intents waiting (a fresh ring of traders each round)."""
    tape = compile_tape(BARTER, directory, f"barter{pending}")
    node = nodes.start(f"n{pending}", [tape], options=["--data", str(directory / f"d{pending}")])
    times = []
    with Session(node, timeout=60.0) as session:
        ask = session.client

        def submit(target: int, offer: Value, check: Value) -> int:
            return session.runner.run(ask.intent(target, offer, check, 10**9, 60.0))

        def report(number: int) -> dict:
            return session.runner.run(ask.intent_status(number, 60.0))

        for _ in range(pending):
            submit(session.create("Trader"), ("items",), ("want", "melon"))
        for _ in range(rounds):
            traders = {name: session.create("Trader") for name in ITEMS}
            for name, item in ITEMS.items():
                session.call(traders[name], ("stock", item))

            def offer(name: str, traders: dict[str, int] = traders) -> tuple[Value, Value]:
                partners = tuple(ObjectRef(t) for other, t in traders.items() if other != name)
                return ("give", ITEMS[name], partners), ("want", WANTS[name])

            submit(traders["alice"], *offer("alice"))
            bob = submit(traders["bob"], *offer("bob"))
            while report(bob)["attempts"] < 2:  # [bob] and [alice, bob] tried: solver idle
                time.sleep(0.01)
            start = time.perf_counter()
            carol = submit(traders["carol"], *offer("carol"))
            while report(carol)["state"] == "pending":
                time.sleep(0.001)
            times.append(time.perf_counter() - start)
    node.terminate()
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pools", default="10,100,1000", help="pending intents, comma-separated")
    parser.add_argument("--repeat", type=int, default=15, help="runs per figure (best)")
    parser.add_argument("--node", action="store_true", help="also time a real durable node")
    args = parser.parse_args()
    tape = encode(compile_path(BARTER))
    sizes = [int(n) for n in args.pools.split(",")]

    def best(pending: int, related: bool) -> tuple[float, float]:
        """The fastest of the runs: the others lost time to whatever else ran."""
        runs = [match_seconds(tape, pending, related) for _ in range(args.repeat)]
        return min(r[0] for r in runs), min(r[1] for r in runs)

    match_seconds(tape, 0, False)  # warm up: the first run pays for imports and caches
    floor, _ = best(0, False)
    print(f"barter ring, best of {args.repeat} runs; empty pool: {floor * 1000:.2f} ms to match")
    for pending in sizes:
        for related in (False, True):
            seconds, per_intent = best(pending, related)
            kind = "related:" if related else "unrelated:"
            print(
                f"pool {pending} {kind:<10} {seconds * 1000:7.2f} ms to match "
                f"({seconds / floor:.2f} x an empty pool), "
                f"{per_intent * 1e6:.0f} us to accept each pending intent"
            )

    if not args.node:
        return
    with tempfile.TemporaryDirectory() as tmp:
        nodes = Nodes(Path(tmp))
        try:
            base = node_seconds(nodes, Path(tmp), 0, args.repeat)
            print(f"node, empty pool: {base * 1000:.1f} ms from submission to settled")
            for pending in sizes:
                seconds = node_seconds(nodes, Path(tmp), pending, args.repeat)
                print(
                    f"node, pool {pending}: {seconds * 1000:.1f} ms from submission to "
                    f"settled ({seconds / base:.2f} x an empty pool)"
                )
        finally:
            nodes.close()


if __name__ == "__main__":
    main()
