"""Intents on a node (docs/intents.md), at the engine: the events `intent`, `intent_batch`
and `intent_expired` applied as a node applies them, live and in replay.

The barter ring of examples/barter.avm: Alice has an apple and wants a cherry, Bob has a
banana and wants an apple, Carol has a cherry and wants a banana. No pair of their intents
settles; the three settle in one batch, all or nothing. The node-level tests (real
processes, a SIGKILL in the middle of solving, `avm replay`) are in test_intents_node.py.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from avm_vm import cli as avm_cli
from avm_vm.format.bytecode import encode
from avm_vm.node.codec import value_to_json
from avm_vm.node.directory import Directory
from avm_vm.node.engine import Engine, Step
from avm_vm.node.intents import MAX_BATCH, MAX_TRIES
from avm_vm.node.state import capture, full_hash, restore, state_hash
from avm_vm.runtime.core import RuntimeOptions
from avm_vm.runtime.runs import Done, Failed
from avm_vm.trace import SearchEnded, TransactionCommitted
from avm_vm.trace.mermaid import ABORTED_FILL, COMMITTED_FILL
from avm_vm.values import ObjectRef, Value
from avmc.compiler import compile_path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ITEMS = {"alice": "apple", "bob": "banana", "carol": "cherry"}
WANTS = {"alice": "cherry", "bob": "apple", "carol": "banana"}


class World:
    """An engine fed events as a node feeds them; every event is kept for a replay."""

    def __init__(self, example: str = "barter") -> None:
        self.engine = _engine()
        self.events: list[dict[str, Any]] = []
        self.clock = 1_000
        tape = encode(compile_path(EXAMPLES / f"{example}.avm"))
        self.apply({"k": "load", "tape": base64.b64encode(tape).decode(), "upgrade": False})

    def apply(self, event: dict[str, Any]) -> Step:
        self.clock += 1
        event = {**event, "t": self.clock}
        self.events.append(event)
        return self.engine.apply(event)

    def create(self, behavior: str) -> int:
        step = self.apply({"k": "client_create", "behavior": behavior, "controller": None})
        assert type(step.outcome) is Done
        return step.outcome.value.id  # type: ignore[union-attr]

    def call(self, target: int, value: Value) -> Value:
        step = self.apply({"k": "client_call", "target": target, "input": value_to_json(value)})
        assert type(step.outcome) is Done
        return step.outcome.value.value  # type: ignore[union-attr]  # `just v`

    def intent(self, target: int, offer: Value, check: Value, wait: int = 60_000) -> int:
        event = {"k": "intent", "target": target, "wait": wait}
        event.update(offer=value_to_json(offer), check=value_to_json(check))
        step = self.apply(event)
        assert step.reply is not None
        return step.reply["intent"]

    def batch(self, numbers: list[int]) -> Step:
        return self.apply({"k": "intent_batch", "intents": numbers})

    def report(self, number: int) -> dict[str, Any]:
        return self.engine.intents.report(number)


def _engine() -> Engine:
    return Engine(RuntimeOptions(machine="a", node_prefix=7, jit="off"), Directory("a", 7))


def ring(world: World) -> tuple[dict[str, int], dict[str, int]]:
    """The three traders stocked, and their intents submitted (Alice's first)."""
    traders = {name: world.create("Trader") for name in ITEMS}
    for name, item in ITEMS.items():
        world.call(traders[name], ("stock", item))
    intents = {}
    for name, trader in traders.items():
        partners = tuple(ObjectRef(t) for other, t in traders.items() if other != name)
        offer, check = ("give", ITEMS[name], partners), ("want", WANTS[name])
        intents[name] = world.intent(trader, offer, check)
    return traders, intents


def holdings(world: World, traders: dict[str, int]) -> dict[str, Value]:
    return {name: world.call(t, ("items",)) for name, t in traders.items()}


def test_no_pair_settles_and_a_failed_batch_changes_nothing() -> None:
    world = World()
    traders, intents = ring(world)
    before = holdings(world, traders)
    a, b, c = intents.values()
    for pair in ([a, b], [a, c], [b, c]):
        step = world.batch(pair)
        assert type(step.outcome) is Failed
        assert step.outcome.failure.error.kind.qualified_name == "NoSolution"
        assert holdings(world, traders) == before, "a batch that failed moved an item"
    assert world.engine.intents.counts["batches_tried"] == 3
    assert world.engine.intents.counts["batches_committed"] == 0
    report = world.report(intents["alice"])
    assert report["state"] == "pending" and report["attempts"] == 2
    assert report["reason"].startswith("NoSolution: no choice satisfies the requirements")


def test_the_ring_settles_in_one_transaction() -> None:
    world = World()
    world.engine.runtime.trace.recording = True
    traders, intents = ring(world)
    step = world.batch(sorted(intents.values()))
    assert type(step.outcome) is Done
    assert holdings(world, traders) == {
        "alice": ("cherry",),
        "bob": ("apple",),
        "carol": ("banana",),
    }
    for number in intents.values():
        report = world.report(number)
        assert report["state"] == "settled" and report["batch"] == sorted(intents.values())
    assert world.engine.intents.pending == {} and world.engine.intents.by_object == {}
    # One transaction: one search solved, one commit, its choices the recipients chosen.
    events = [entry.event for entry in world.engine.runtime.trace.entries]
    solved = [e for e in events if type(e) is SearchEnded]
    assert [e.outcome for e in solved] == ["solved"]
    # The batch's marking choice, then each offer's recipient: Alice gives to Bob, Bob to
    # Carol, Carol to Alice.
    recipients = [ObjectRef(traders[name]) for name in ("bob", "carol", "alice")]
    assert list(solved[0].value) == [True, *recipients]
    assert sum(type(e) is TransactionCommitted for e in events) == 1
    # Settled intents are gone: a batch naming them again runs nothing.
    again = world.batch(sorted(intents.values()))
    assert again.outcome is None
    assert again.error == f"intent {intents['alice']} is no longer pending"


def test_a_failing_body_fails_the_whole_batch() -> None:
    """All or nothing: the ring plus an intent whose offer fails moves no item."""
    world = World()
    traders, intents = ring(world)
    before = holdings(world, traders)
    stray = world.intent(traders["alice"], ("no such message",), ("items",))
    step = world.batch([intents["alice"], intents["bob"], stray])
    assert type(step.outcome) is Failed
    assert holdings(world, traders) == before
    assert world.report(stray)["reason"].startswith("Failed: no clause of behavior Trader")


def test_the_swap_settles_at_the_lowest_price_both_accept() -> None:
    world = World("swap")
    sam, bea, cy = (world.create("Trader") for _ in range(3))
    world.call(sam, ("stock", "bike"))
    world.call(bea, ("fund", 100))
    world.call(cy, ("fund", 100))
    sell = world.intent(sam, ("sell", "bike", (ObjectRef(bea), ObjectRef(cy)), 40), ("paid",))
    cheap = world.intent(cy, ("buy", ObjectRef(sam), 30), ("got", "bike"))
    fair = world.intent(bea, ("buy", ObjectRef(sam), 60), ("got", "bike"))
    assert type(world.batch([sell, cheap]).outcome) is Failed
    assert type(world.batch([sell, fair]).outcome) is Done
    assert world.call(sam, ("holdings",)) == ("", 40)
    assert world.call(bea, ("holdings",)) == ("bike", 60)
    assert world.call(cy, ("holdings",)) == ("", 100)
    assert world.report(cheap)["state"] == "pending"


def test_candidates_grow_oldest_first_and_skip_unrelated_intents() -> None:
    world = World()
    traders, intents = ring(world)
    loner = world.create("Trader")
    unrelated = world.intent(loner, ("items",), ("items",))
    pool = world.engine.intents
    a, b, c = intents.values()
    assert a < b < c, "numbered in the order they came"
    assert pool.candidates(c) == [[c], [a, c], [b, c], [a, b, c]]
    assert pool.candidates(unrelated) == [[unrelated]]
    # Many related intents: the list stops at MAX_TRIES batches, none over MAX_BATCH.
    for _ in range(30):
        world.intent(traders["alice"], ("items",), ("items",))
    many = pool.candidates(intents["carol"])
    assert len(many) == MAX_TRIES and max(len(b) for b in many) <= MAX_BATCH
    assert many[:3] == [[c], [a, c], [b, c]]


def test_expiry_fails_an_intent_with_its_reason() -> None:
    world = World()
    traders, intents = ring(world)
    a, b, c = intents.values()
    world.batch([a, b])
    world.apply({"k": "intent_expired", "intent": a})
    report = world.report(intents["alice"])
    assert report["state"] == "failed"
    assert "deadline passed" in report["reason"] and "NoSolution" in report["reason"]
    assert world.engine.intents.counts["expired"] == 1
    # A batch with an expired intent runs nothing; an expiry after settling changes nothing.
    assert world.batch([a, b, c]).error == f"intent {a} is no longer pending"
    world.apply({"k": "intent_expired", "intent": intents["alice"]})
    assert world.engine.intents.counts["expired"] == 1
    lone = world.intent(traders["bob"], ("items",), ("want", "melon"))
    world.apply({"k": "intent_expired", "intent": lone})
    assert "no batch was tried" in world.report(lone)["reason"]


def test_overdue_reads_deadlines_from_event_time() -> None:
    world = World()
    traders, _ = ring(world)
    number = world.intent(traders["bob"], ("items",), ("items",), wait=500)
    deadline = world.engine.intents.pending[number].deadline
    assert deadline == world.clock + 500
    assert number not in world.engine.intents.overdue(deadline - 1)
    assert number in world.engine.intents.overdue(deadline)


def test_a_batch_refuses_a_call_to_another_node() -> None:
    """A batch searches from its start, so a remote call fails instead of parking it."""
    world = World()
    traders, _ = ring(world)
    away = (99 << 48) + 5
    world.apply({"k": "peer", "machine": "b", "prefix": 99})
    world.apply({"k": "learn", "object_id": away, "machine": "b"})
    number = world.intent(traders["alice"], ("give", "apple", (ObjectRef(away),)), ("items",))
    step = world.batch([number])
    assert type(step.outcome) is Failed
    assert step.outcome.failure.error.kind.qualified_name == "NotSearchable"
    assert world.engine.runtime.parked == {}


def test_a_snapshot_keeps_the_pool() -> None:
    """Pending intents (with their attempts), finished ones and the counts survive a
    snapshot: the restored pool answers and solves exactly as the one it was taken from."""
    world = World()
    _, intents = ring(world)
    world.batch([intents["alice"], intents["bob"]])  # fails: noted on both
    world.apply({"k": "intent_expired", "intent": intents["bob"]})
    assert not world.engine.unsettled  # nothing stops a snapshot now
    restored = _engine()
    restore(restored, capture(world.engine))
    pool, again = world.engine.intents, restored.intents
    assert again.status() == pool.status() and again.finished == pool.finished
    assert again.by_object == pool.by_object
    assert again.report(intents["alice"]) == pool.report(intents["alice"])
    assert full_hash(capture(restored)) == full_hash(capture(world.engine))


@pytest.mark.parametrize("settle", [False, True])
def test_replaying_the_events_reaches_the_same_state(settle: bool) -> None:
    world = World()
    _, intents = ring(world)
    world.batch([intents["alice"], intents["bob"]])
    if settle:
        world.batch(sorted(intents.values()))
    else:
        world.apply({"k": "intent_expired", "intent": intents["bob"]})
    again = _engine()
    for event in world.events:
        again.apply(event)
    assert state_hash(capture(again)) == state_hash(capture(world.engine))
    assert again.intents.status() == world.engine.intents.status()
    assert again.intents.finished == world.engine.intents.finished


def test_candidates_rank_intents_sharing_more_objects_first() -> None:
    """Thirty older intents touch Alice's trader: the ring is still tried, and before
    any batch of theirs, since its intents share all three traders."""
    world = World()
    traders = {name: world.create("Trader") for name in ITEMS}
    for name, item in ITEMS.items():
        world.call(traders[name], ("stock", item))
    older = [world.intent(traders["alice"], ("items",), ("want", "melon")) for _ in range(30)]
    numbers = []
    for name, trader in traders.items():
        partners = tuple(ObjectRef(t) for other, t in traders.items() if other != name)
        numbers.append(world.intent(trader, ("give", ITEMS[name], partners), ("want", WANTS[name])))
    alice, bob, carol = numbers
    batches = world.engine.intents.candidates(carol)
    assert batches[:3] == [[carol], [alice, carol], [bob, carol]]
    assert [older[0], carol] in batches
    triples = [b for b in batches if len(b) == 3]
    assert triples[0] == [alice, bob, carol]
    for batch in batches:  # the solver: the first batch that commits settles the ring
        if type(world.batch(batch).outcome) is Done:
            break
    assert world.report(carol)["state"] == "settled"
    assert world.report(older[0])["state"] == "pending"


def test_numbers_survive_a_snapshot() -> None:
    """An intent's number is its event's index, which a snapshot keeps: a node restarted
    from a snapshot numbers new intents as the node that wrote it did."""
    world = World()
    traders, intents = ring(world)
    world.batch(sorted(intents.values()))
    restored = _engine()
    restore(restored, capture(world.engine))
    offer, check = ("give", "cherry", (ObjectRef(traders["bob"]),)), ("want", "melon")
    number = world.intent(traders["alice"], offer, check)
    assert restored.apply(world.events[-1]).reply["intent"] == number  # type: ignore[index]
    assert number not in intents.values()
    assert state_hash(capture(restored)) == state_hash(capture(world.engine))


def test_the_mermaid_diagram_shows_the_settled_batch(tmp_path: Path) -> None:
    """`avm run` of the example draws each batch as a transaction box: the ring's is
    green, with its solved search inside; the pairs' are red."""
    tape = tmp_path / "barter.tape"
    tape.write_bytes(encode(compile_path(EXAMPLES / "barter.avm")))
    out = tmp_path / "barter.mmd"
    ran = CliRunner().invoke(
        avm_cli.main, ["run", str(tape), "--trace-format", "mermaid", "--trace-out", str(out)]
    )
    assert ran.exit_code == 0, ran.output
    diagram = out.read_text(encoding="utf-8")
    assert diagram.count(f"rect {COMMITTED_FILL}") == 1  # the ring
    assert diagram.count(f"rect {ABORTED_FILL}") == 3  # the three pairs
    assert diagram.count("solved: ") == 1 and diagram.count("exhausted: ") == 3
