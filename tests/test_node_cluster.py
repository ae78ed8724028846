"""`avm node` processes on 127.0.0.1 in a full mesh, 16 of them (and 4, to compare; see
docs/scaling.md): every node creates counters, clients call counters on other nodes in a
seeded random order, and the directory must converge on every node while every object stays
reachable from every node.

Each node lists the nodes started before it as peers, so every pair has exactly one link.
The test prints what it measured: seconds to start and to connect the mesh, creates and
calls per second for the whole cluster, and directory entries per node with their bytes
(entries times the bytes one entry of a real Directory takes, measured here with tracemalloc).
"""

from __future__ import annotations

import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from node_harness import Node, Nodes, Session, compile_tape, wait_connected

from avm_vm.values import Just, Value, values_equal

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from scaling_sim import directory_entry_bytes  # noqa: E402

COUNTER = ROOT / "examples" / "counter.avm"
OBJECTS = 3_200  # counters in the cluster, made in equal shares by every node
CALLS = 32_000  # increments, each from a random node to a counter on another node
SEED = 20_260_116
TIMEOUT = 120.0  # seconds for any one wait (16 processes share two cores)
T = TypeVar("T")


def on_every_node(nodes: Sequence[Node], work: Callable[[Session, int], T]) -> list[T]:
    """``work(session, index)`` for every node at once, each on its own client connection."""

    def one(index: int) -> T:
        with Session(nodes[index], timeout=TIMEOUT) as session:
            return work(session, index)

    with ThreadPoolExecutor(len(nodes)) as pool:
        return list(pool.map(one, range(len(nodes))))


def statuses(nodes: Sequence[Node]) -> list[dict[str, Any]]:
    return on_every_node(nodes, lambda session, _: session.status())


def wait_converged(nodes: Sequence[Node], total: int) -> list[dict[str, Any]]:
    """Poll until every node's directory holds every object made on the other nodes."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        seen = statuses(nodes)
        if all(s["directory"] == total - s["object_count"] for s in seen):
            return seen
        if time.monotonic() > deadline:
            sizes = {s["name"]: (s["object_count"], s["directory"]) for s in seen}
            raise AssertionError(f"directories did not converge: (objects, entries) {sizes}")
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize("count", [4, 16])
def test_full_mesh(nodes: Nodes, tmp_path: Path, count: int) -> None:
    tape = compile_tape(COUNTER, tmp_path, "counter")
    names = [f"n{i:02d}" for i in range(count)]
    per_node = OBJECTS // count
    began = time.perf_counter()
    cluster: list[Node] = []
    for name in names:
        earlier = {node.name: node for node in cluster}
        cluster.append(nodes.start(name, [tape], peers=earlier, options=["--call-timeout", "60"]))
    start_s = time.perf_counter() - began
    began = time.perf_counter()
    for node in cluster:
        wait_connected(node, [name for name in names if name != node.name], TIMEOUT)
    mesh_s = time.perf_counter() - began

    # Every node creates its counters; the cluster's creates run side by side.
    began = time.perf_counter()
    made = on_every_node(cluster, lambda s, _: [s.create("Counter") for _ in range(per_node)])
    create_s = time.perf_counter() - began
    total = count * per_node
    assert len({oid for ids in made for oid in ids}) == total, "two creates gave one id"
    converged = wait_converged(cluster, total)
    converge_s = time.perf_counter() - began
    for status, ids in zip(converged, made, strict=True):
        assert status["object_count"] == per_node, status["name"]
        assert {entry[0] for entry in status["objects"]} == set(ids), status["name"]

    # Seeded random increments, each to a counter on another node than the caller's.
    rng = random.Random(SEED)
    plan: list[list[tuple[int, Value]]] = [[] for _ in cluster]
    for _ in range(CALLS):
        caller, owner = rng.sample(range(count), 2)
        plan[caller].append((rng.choice(made[owner]), ("inc",)))
    began = time.perf_counter()
    answers = on_every_node(cluster, lambda s, i: s.call_many(plan[i]))
    calls_s = time.perf_counter() - began
    # A counter's increments answer 1, 2, ..., k in some order: none lost, none doubled.
    seen: dict[int, list[int]] = {}
    for calls, got in zip(plan, answers, strict=True):
        for (target, _), answer in zip(calls, got, strict=True):
            assert type(answer) is Just, (target, answer)
            seen.setdefault(target, []).append(answer.value)
    for target, counts in seen.items():
        assert sorted(counts) == list(range(1, len(counts) + 1)), (target, sorted(counts))
    incs = Counter({target: len(counts) for target, counts in seen.items()})

    # Every object answers its count to every node.
    everything = [oid for ids in made for oid in ids]
    began = time.perf_counter()
    reads = on_every_node(cluster, lambda s, _: s.call_many([(o, ("get",)) for o in everything]))
    reads_s = time.perf_counter() - began
    for node, got in zip(cluster, reads, strict=True):
        for oid, answer in zip(everything, got, strict=True):
            assert values_equal(answer, Just(incs[oid])), (node.name, oid, answer)

    final = statuses(cluster)
    remote = count * total - total  # every read from a node that does not hold the object
    assert sum(s["counters"]["remote_calls"] for s in final) == CALLS + remote
    assert sum(s["counters"]["calls_served"] for s in final) == CALLS + remote
    for status in final:
        assert status["directory"] == total - per_node, status["name"]
        assert all(peer["connected"] for peer in status["peers"]), status["name"]

    entry_bytes = directory_entry_bytes()
    entries = final[0]["directory"]
    events = sum(s["events"] for s in final) / count
    print(
        f"\n{count} nodes, {count * (count - 1) // 2} links: started in {start_s:.1f} s "
        f"({start_s / count:.2f} s each), mesh connected {mesh_s:.1f} s later"
        f"\ncreates: {total} in {create_s:.2f} s = {total / create_s:.0f}/s for the cluster; "
        f"directories converged {converge_s:.2f} s after the first create"
        f"\ncalls to other nodes: {CALLS} in {calls_s:.2f} s = {CALLS / calls_s:.0f}/s; "
        f"reads of every object from every node: {count * total} in {reads_s:.2f} s = "
        f"{count * total / reads_s:.0f}/s"
        f"\ndirectory per node: {entries} entries x {entry_bytes:.0f} B "
        f"(estimate: entries from `avm status`, bytes per entry from tracemalloc on a real "
        f"Directory) = {entries * entry_bytes / 1024:.1f} KiB"
        f"\nevents applied on each node's VM: {events:.0f} on average, {entries} of "
        f"them directory updates from other nodes' creates"
    )
