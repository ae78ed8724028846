"""Durable nodes as real processes (`avm node --data DIR`, DESIGN.md §9, docs/durability.md):
SIGKILL at random moments under a stream of calls loses no acknowledged call, and a long
log replayed offline by `avm replay` reaches the live node's state hash.

The expected state never comes from the node under test: a second node without `--data`
(same name and id prefix) is given the same acknowledged calls, and its state hash is the
reference. The delays before each kill come from a seeded generator; where in the stream a
kill lands still varies with the machine's speed, so each run reports what it saw.
"""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from node_harness import Node, Nodes, Session, avm, compile_tape

from avm_vm.node.client import ClientError
from avm_vm.node.codec import value_from_json
from avm_vm.values import Just, Value, values_equal

NAME = "durable"  # the node under test and its reference share name and prefix: the state
PREFIX = "7"  # hash covers object ids, which carry the prefix
SEED = 20_261_122

# `seen` keeps every argument in order, so a lost or doubled call shows in the state itself.
COUNTERS = """
behavior counter {
  field total = 0
  field seen = []
  on ["add", n] { total += n; seen = append(seen, n); return total }
}
"""
# For long logs: constant-size state per object, so 100,000 calls stay cheap.
TALLIES = """
behavior tally {
  field total = 0
  field count = 0
  on ["add", n] { total += n; count += 1; return [total, count] }
}
"""
HASH_LINE = re.compile(r"state hash ([0-9a-f]{64})")


def start_durable(nodes: Nodes, tape: Path, data: Path, *options: str) -> Node:
    return nodes.start(NAME, [tape], options=["--data", str(data), "--prefix", PREFIX, *options])


def start_reference(nodes: Nodes, tape: Path, label: str = "reference") -> Node:
    """A node with nothing on disk, for expected state hashes."""
    return nodes.start(NAME, [tape], options=["--prefix", PREFIX], label=label)


def take_snapshot(session: Session) -> None:
    _, snapped = session.snapshot()
    assert snapped == session.state_hash(), "the snapshot is not of the live state"


def peek_seen(session: Session, target: int) -> list[int]:
    """The `seen` field of a counter (its second), read without logging an event."""
    seen = value_from_json(session.peek(target)["state"][1])
    assert isinstance(seen, tuple), f"obj:{target} holds {seen!r} in its seen field"
    return list(seen)


# ---------------------------------------------------------------------------- crash loop


@dataclass
class Counters:
    """What the client knows: the objects, and the acknowledged calls with their answers."""

    objects: list[int]
    acked: list[tuple[int, int, Value]] = field(default_factory=list)  # (object, n, answer)
    checked: int = 0  # acked calls already given to the reference node
    sent: int = 0  # calls sent so far: the next call's argument is one more
    outcomes: dict[str, int] = field(default_factory=lambda: {"acked": 0, "acked+in-flight": 0})

    def seen(self, target: int) -> list[int]:
        return [n for obj, n, _ in self.acked if obj == target]


def stream_until_killed(node: Node, counters: Counters, rng: random.Random) -> tuple[int, int]:
    """Increments with fresh arguments until a SIGKILL at a random moment cuts the
    connection; answers the call that was in flight (object, argument)."""
    session = Session(node)
    fired = threading.Event()

    def kill() -> None:
        fired.set()  # before the signal: a call that fails after it may blame the kill
        node.kill()

    killer = threading.Timer(rng.uniform(0.02, 0.6), kill)
    killer.start()
    try:
        while True:
            counters.sent += 1
            n = counters.sent  # never reused, so the state shows which calls it holds
            target = counters.objects[n % len(counters.objects)]
            try:
                answer = session.call(target, ("add", n))
            except ClientError as error:
                assert fired.is_set(), f"call add {n} failed before the kill: {error}"
                return target, n
            counters.acked.append((target, n, answer))
    finally:
        killer.join()
        session.close()


def catch_up(reference: Session, counters: Counters) -> None:
    """Give the reference the acked calls it has not had; it must answer as the node did."""
    new = counters.acked[counters.checked :]
    answers = reference.call_many([(target, ("add", n)) for target, n, _ in new])
    for (target, n, answer), expected in zip(new, answers, strict=True):
        assert values_equal(expected, answer), (
            f"call add {n} on obj:{target}: the durable node answered {answer!r}, "
            f"a fresh node {expected!r}"
        )
    counters.checked = len(counters.acked)


def settle_in_flight(
    durable: Session, reference: Session, counters: Counters, in_flight: tuple[int, int]
) -> str:
    """Which state the restarted node has: the acked calls, or those and the call that was
    in flight at the kill (its log may hold it). Anything else fails."""
    restarted = durable.state_hash()
    if restarted == reference.state_hash():
        counters.outcomes["acked"] += 1
        return "acked"
    target, n = in_flight
    answer = reference.call(target, ("add", n))
    with_in_flight = reference.state_hash()
    assert restarted == with_in_flight, (
        f"after a kill the node's state hash {restarted} is neither that of the "
        f"{len(counters.acked)} acked calls nor that with the in-flight call add {n} "
        f"({with_in_flight})"
    )
    counters.acked.append((target, n, answer))  # the node kept it: it is part of the state
    counters.checked = len(counters.acked)
    counters.outcomes["acked+in-flight"] += 1
    return "acked+in-flight"


def crash_loop(
    nodes: Nodes, tmp_path: Path, kills: int, seed: int, snapshot_every: int | None = None
) -> Counters:
    rng = random.Random(seed)
    tape = compile_tape(COUNTERS, tmp_path, "counters")
    options = [] if snapshot_every is None else ["--snapshot-every", str(snapshot_every)]
    durable = start_durable(nodes, tape, tmp_path / "data", *options)
    reference = start_reference(nodes, tape)
    with Session(durable) as first, Session(reference) as ref:
        objects = [first.create("counter") for _ in range(3)]
        assert [ref.create("counter") for _ in range(3)] == objects
    counters = Counters(objects)
    history: list[str] = []
    with Session(reference) as ref:
        for kill in range(kills):
            in_flight = stream_until_killed(durable, counters, rng)
            nodes.restart(durable)
            catch_up(ref, counters)
            with Session(durable) as restarted:
                history.append(settle_in_flight(restarted, ref, counters, in_flight))
                if kill % 4 == 3:  # restarts also start from on-demand snapshots
                    take_snapshot(restarted)
                for target in objects:
                    assert peek_seen(restarted, target) == counters.seen(target), (
                        f"kill {kill}: obj:{target} lost acknowledged calls\n{durable.log()}"
                    )
        final = ref.state_hash()
    # The reference took the calls in bursts between restarts: one more fresh node takes
    # them all at once, pipelined, and must agree.
    with Session(start_reference(nodes, tape, "fresh")) as fresh:
        assert [fresh.create("counter") for _ in objects] == objects
        fresh.call_many([(target, ("add", n)) for target, n, _ in counters.acked])
        assert fresh.state_hash() == final
    outcomes = ", ".join(f"{k}: {v}" for k, v in counters.outcomes.items())
    print(f"\n{kills} kills, {len(counters.acked)} calls kept; restarts held {outcomes}")
    print(f"in order: {history}")
    return counters


@pytest.mark.slow  # 20 s; tests/test_durable_pipelined.py keeps a SIGKILL crash in the default run
def test_sigkill_under_calls_keeps_every_acknowledged_call(nodes: Nodes, tmp_path: Path) -> None:
    counters = crash_loop(nodes, tmp_path, kills=20, seed=SEED)
    assert sum(counters.outcomes.values()) == 20
    assert len(counters.acked) > 20  # the stream ran between the kills


@pytest.mark.slow
def test_many_sigkills_with_frequent_snapshots(nodes: Nodes, tmp_path: Path) -> None:
    counters = crash_loop(nodes, tmp_path, kills=50, seed=SEED + 1, snapshot_every=50)
    assert sum(counters.outcomes.values()) == 50


# ---------------------------------------------------------------------------- replay


def fill_log(node: Node, calls: int, objects: int = 64) -> tuple[str, int]:
    """``calls`` pipelined increments spread over ``objects`` tallies; answers the node's
    state hash and event count afterwards. The last answer of each tally is checked."""
    with Session(node, timeout=60.0) as session:
        targets = [session.create("tally") for _ in range(objects)]
        answers = session.call_many([(targets[n % objects], ("add", n)) for n in range(calls)])
        for n in range(calls - objects, calls):
            done = range(n % objects, n + 1, objects)
            assert values_equal(answers[n], Just((sum(done), len(done)))), f"call {n}"
        return session.state_hash(), session.events()


def replayed_hash(data: Path, *options: str) -> str:
    result = avm("replay", str(data), *options, timeout=300.0)
    assert result.returncode == 0, f"avm replay failed:\n{result.stdout}{result.stderr}"
    match = HASH_LINE.search(result.stdout)
    assert match is not None, f"no state hash in the output of avm replay:\n{result.stdout}"
    return match.group(1)


def test_replay_reproduces_the_state_hash(nodes: Nodes, tmp_path: Path) -> None:
    """A short log, with snapshots: replay from the start and from the latest snapshot
    reach the live hash, which is also what a fresh node given the same calls reaches."""
    tape = compile_tape(TALLIES, tmp_path, "tallies")
    data = tmp_path / "data"
    durable = start_durable(nodes, tape, data, "--snapshot-every", "700")
    live, _ = fill_log(durable, 3_000)
    assert durable.terminate() == 0, durable.log()
    assert sorted(data.glob("snapshot-*")), "no snapshot was written"
    assert replayed_hash(data, "--from-start") == live
    assert replayed_hash(data) == live
    fresh, _ = fill_log(start_reference(nodes, tape), 3_000)
    assert fresh == live


@pytest.mark.slow
def test_replay_of_100k_events_reproduces_the_state_hash(nodes: Nodes, tmp_path: Path) -> None:
    tape = compile_tape(TALLIES, tmp_path, "tallies")
    data = tmp_path / "data"
    live, events = fill_log(start_durable(nodes, tape, data), 100_000)
    assert events >= 100_000
    nodes.close()  # SIGKILL: replay must not need a clean shutdown
    assert replayed_hash(data, "--from-start") == live
