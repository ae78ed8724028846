"""Intents on real `avm node --data` processes (docs/intents.md): the barter ring of
examples/barter.avm submitted with `avm intent` settles in one atomic batch; an intent that
never matches fails at its deadline with a reason; a node SIGKILLed in the middle of
solving comes back without losing or duplicating an intent; every log replays (`avm
replay`) to the state hash the node had.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from node_harness import AVM, CLI_TIMEOUT, Node, Nodes, Session, avm, compile_tape, replayed_hash

from avm_vm.values import Just, ObjectRef, Value

BARTER = Path(__file__).resolve().parents[1] / "examples" / "barter.avm"
ITEMS = {"alice": "apple", "bob": "banana", "carol": "cherry"}
WANTS = {"alice": "cherry", "bob": "apple", "carol": "banana"}
SETTLE_TIMEOUT = 60.0  # seconds for the pool to settle the ring on a loaded machine
# A decoy: an intent whose offer searches SPIN combinations and never commits. It touches
# Alice's trader, so the solver tries it with the ring's intents, and it expires.
SPINNER = """
fn upto(n) {
  let all = []
  let i = 0
  while i < n {
    all = append(all, i)
    i += 1
  }
  return all
}

behavior Spinner {
  on ["spin", n, near] {
    let x = choose(upto(n))
    require(x < 0)
    return near
  }
}
"""
SPIN = 300
DECOYS = 4
HOLD = "solver-before-batch"  # the failpoint that holds the solver (avm_vm/node/failpoints.py)


@pytest.fixture
def nodes(tmp_path: Path) -> Any:
    group = Nodes(tmp_path)
    yield group
    group.close()


def start(
    nodes: Nodes, tmp_path: Path, source: str | Path = BARTER, env: Mapping[str, str] = {}
) -> Node:
    tape = compile_tape(source, tmp_path, "intents")
    options = ["--data", str(tmp_path / "data"), "--trace-out", str(tmp_path / "trace.jsonl")]
    return nodes.start("market", [tape], options=options, env=env)


def stock(session: Session) -> dict[str, int]:
    traders = {name: session.create("Trader") for name in ITEMS}
    for name, item in ITEMS.items():
        session.call(traders[name], ("stock", item))
    return traders


def intent_text(traders: dict[str, int], name: str) -> str:
    partners = ", ".join(f"obj:{t}" for other, t in traders.items() if other != name)
    give = f'["give", "{ITEMS[name]}", [{partners}]]'
    return f'[obj:{traders[name]}, {give}, ["want", "{WANTS[name]}"]]'


def holdings(session: Session, traders: dict[str, int]) -> dict[str, Value]:
    return {name: session.call(t, ("items",)) for name, t in traders.items()}


def report(session: Session, number: int) -> dict[str, Any]:
    return session.runner.run(session.client.intent_status(number, session.timeout))


def wait_for(session: Session, numbers: list[int], states: set[str]) -> list[dict[str, Any]]:
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        reports = [report(session, n) for n in numbers]
        if all(r["state"] in states for r in reports) or time.monotonic() > deadline:
            return reports
        time.sleep(0.1)


def test_the_barter_ring_settles_in_one_batch(nodes: Nodes, tmp_path: Path) -> None:
    node = start(nodes, tmp_path)
    with Session(node) as session:
        traders = stock(session)
    procs = []
    for name in ITEMS:  # all three at once, as three parties would
        path = tmp_path / f"{name}.intent"
        path.write_text(intent_text(traders, name), encoding="utf-8")
        command = [*AVM, "intent", node.address, str(path), "--deadline", "30"]
        procs.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    outputs = [p.communicate(timeout=SETTLE_TIMEOUT + CLI_TIMEOUT) for p in procs]
    numbers = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, (out, err, node.log())
        accepted = re.match(rb"intent (\d+) accepted\n", out)
        assert accepted is not None, out
        numbers.append(int(accepted.group(1)))
    batch = ", ".join(str(n) for n in sorted(numbers)).encode()
    for out, _ in outputs:  # each party hears that all three settled together
        assert b"settled with intents " + batch + b" in one transaction" in out
    with Session(node) as session:
        assert holdings(session, traders) == {
            "alice": Just(("cherry",)),
            "bob": Just(("apple",)),
            "carol": Just(("banana",)),
        }
        pool = session.status()["intents"]
        assert pool["settled"] == 3 and pool["pending"] == 0
        assert pool["batches_committed"] == 1, "the ring settled as one batch"
        # An intent nothing matches fails at its deadline, and says why.
        lone = tmp_path / "lone.intent"
        lone.write_text(
            f'[obj:{traders["alice"]}, ["give", "cherry", [obj:{traders["bob"]}]], '
            '["want", "melon"]]',
            encoding="utf-8",
        )
        failed = avm("intent", node.address, str(lone), "--deadline", "0.5")
        assert failed.returncode == 1
        assert re.search(r"intent \d+ failed: its deadline passed before a batch", failed.stderr)
        assert "NoSolution" in failed.stderr
        assert holdings(session, traders)["alice"] == Just(("cherry",))
        text = avm("status", node.address).stdout
        assert "intents: 0 pending, 3 settled, 1 failed at their deadline" in text
        # An intent on an object the node does not hold is refused, and nothing is logged.
        events = session.events()
        lone.write_text('[obj:12345, ["items"], ["items"]]', encoding="utf-8")
        refused = avm("intent", node.address, str(lone), "--no-wait")
        assert refused.returncode == 1
        assert "intent refused: obj:12345 is not an object on node market" in refused.stderr
        assert session.events() == events
        digest = session.state_hash()
    assert node.terminate() == 0
    assert replayed_hash(tmp_path / "data") == digest
    # The trace shows one solved search, its transaction committed; the failed batches'
    # searches were exhausted and rolled back.
    events = [json.loads(line)["event_type"] for line in (tmp_path / "trace.jsonl").open()]
    ended = [e["SearchEnded"] for e in events if "SearchEnded" in e]
    solved = [e for e in ended if e["outcome"] == "solved"]
    assert len(solved) == 1 and {e["outcome"] for e in ended} == {"solved", "exhausted"}
    assert {"TransactionCommitted": solved[0]["tx"]} in events


@pytest.mark.slow  # about 15 s: the decoys' deadlines pass after the restart
def test_a_sigkill_while_solving_loses_and_duplicates_nothing(nodes: Nodes, tmp_path: Path) -> None:
    # The solver holds (a failpoint) once it has chosen its first batch, so the kill comes in
    # the middle of solving, with every intent accepted and none settled, however fast the
    # machine; the restarted node does not hold.
    source = BARTER.read_text(encoding="utf-8") + SPINNER
    node = start(nodes, tmp_path, source, env={"AVM_FAILPOINTS": HOLD})
    with Session(node) as session:
        traders = stock(session)
        spinners = [session.create("Spinner") for _ in range(DECOYS)]

        def submit(target: int, offer: Value, check: Value, wait_ms: int) -> int:
            ask = session.client.intent(target, offer, check, wait_ms, session.timeout)
            return session.runner.run(ask)

        def trade(name: str) -> int:
            partners = tuple(ObjectRef(t) for other, t in traders.items() if other != name)
            offer = ("give", ITEMS[name], partners)
            return submit(traders[name], offer, ("want", WANTS[name]), 60_000)

        ring = [trade("alice"), trade("bob")]
        near = ObjectRef(traders["alice"])
        decoys = [submit(s, ("spin", SPIN, near), ("spin", 1, near), 6_000) for s in spinners]
        ring.append(trade("carol"))  # the ring is complete, the solver holds
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while f"failpoint {HOLD} reached" not in node.log():
            assert time.monotonic() < deadline, node.log()
            time.sleep(0.02)
        pool = session.status()["intents"]
        assert (pool["accepted"], pool["pending"]) == (3 + DECOYS, 3 + DECOYS), pool
        assert pool["batches_tried"] == 0, pool
    node.kill()
    node.env = {}  # the restart solves
    nodes.restart(node)
    with Session(node) as session:
        numbers = ring + decoys
        assert len(set(numbers)) == len(numbers) == 3 + DECOYS
        settled = wait_for(session, ring, {"settled"})
        assert all(r["state"] == "settled" for r in settled), (settled, node.log())
        assert {tuple(r["batch"]) for r in settled} == {tuple(sorted(ring))}
        # The restarted node settled them: after the events it replayed.
        replayed = [int(n) for n in re.findall(r"replayed (\d+) events", node.log())]
        assert replayed and all(r["event"] >= replayed[-1] for r in settled), replayed
        assert holdings(session, traders) == {
            "alice": Just(("cherry",)),
            "bob": Just(("apple",)),
            "carol": Just(("banana",)),
        }
        left = wait_for(session, decoys, {"failed"})
        assert all(r["state"] == "failed" for r in left), left
        pool = session.status()["intents"]
        assert pool["accepted"] == len(numbers), "an intent was lost or duplicated"
        assert (pool["settled"], pool["expired"], pool["pending"]) == (3, DECOYS, 0)
        assert pool["batches_committed"] == 1
        digest = session.state_hash()
    assert node.terminate() == 0
    assert replayed_hash(tmp_path / "data") == digest
