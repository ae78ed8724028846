"""Parked runs resume as their answers come, in any order (docs/semantics.md, "Nodes: parked
runs"): a node does not hold an answered run back until newer parked runs are answered, and
its log names the run each answer resumed, so replay resumes the same one.

Nodes run in one process and event loop; a peer is kept from answering by holding its VM
lock (`Node.vm`), which is what decides the order the answers come in."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from avm_vm.format.bytecode import encode
from avm_vm.node.client import Client
from avm_vm.node.directory import Directory
from avm_vm.node.durable import replay
from avm_vm.node.engine import Engine
from avm_vm.node.eventlog import read_log
from avm_vm.node.node import Node, NodeConfig
from avm_vm.runtime.core import RuntimeOptions
from avm_vm.runtime.runs import Done, Parked
from avm_vm.values import Just, ObjectRef
from avmc.compiler import compile_source

# The relay keeps the last answer it got: the order runs resume in shows in the state.
RELAY = compile_source(
    """
    behavior Relay {
      on ["via", t, n] { let r = call!(t, ["echo", n]); set_state([r]); return r }
    }
    behavior Echo { on ["echo", n] { set_state([n]); return n } }
    """,
    "relay.avm",
)
NAMES = ("alpha", "beta", "gamma")


def _run(test: Callable[[list[Node]], Awaitable[Any]], data: Path | None = None) -> Any:
    """alpha, beta and gamma (each dials the earlier ones; ``data`` is alpha's)."""

    async def main() -> Any:
        nodes: list[Node] = []
        for index, name in enumerate(NAMES):
            peers = {n.name: ("127.0.0.1", n.port) for n in nodes}
            config = NodeConfig(
                name,
                peers=peers,
                prefix=index + 1,
                jit="off",
                call_timeout=30.0,
                data=data if index == 0 else None,
            )
            node = Node(config, [RELAY])
            await node.start()
            nodes.append(node)
        async with asyncio.timeout(10):
            while not all(len(n.links) == 2 for n in nodes):
                await asyncio.sleep(0.01)
        try:
            return await asyncio.wait_for(test(nodes), 60)
        finally:
            for node in nodes:
                await node.stop()

    return asyncio.run(main())


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        while not condition():
            await asyncio.sleep(0.01)


async def _older_answer_first(nodes: list[Node]) -> tuple[str, list[int]]:
    """Two calls park on alpha (the first waits on beta, the second on gamma); beta answers
    first. Answers alpha's state hash and its run numbers, in the order they parked."""
    alpha, beta, gamma = nodes
    clients = [await Client.connect("127.0.0.1", node.port) for node in nodes]
    first, second = clients[0], await Client.connect("127.0.0.1", alpha.port)
    try:
        relay = await first.create("Relay")
        near, far = await clients[1].create("Echo"), await clients[2].create("Echo")
        parked = alpha.engine.runtime.parked
        await beta.vm.acquire()
        await gamma.vm.acquire()
        try:
            one = asyncio.create_task(first.call(relay, ("via", ObjectRef(near), 1)))
            await _until(lambda: len(parked) == 1)
            two = asyncio.create_task(second.call(relay, ("via", ObjectRef(far), 2)))
            await _until(lambda: len(parked) == 2)
            numbers = list(parked)
            beta.vm.release()
            # The older run's answer is used at once: the newer run still waits on gamma.
            assert await asyncio.wait_for(one, 10) == Just(1)
            assert list(parked) == numbers[1:] and not two.done()
        finally:
            if beta.vm.locked():
                beta.vm.release()
            gamma.vm.release()
        assert await asyncio.wait_for(two, 10) == Just(2)
        assert not parked
        relay_state = await first.peek(relay)
        assert relay_state["state"] == [{"Nat": 2}]  # resumed last: its answer stays
        digest, _ = await first.state_hash()
        return digest, numbers
    finally:
        for client in [*clients, second]:
            await client.close()


def test_an_older_parked_run_resumes_while_a_newer_one_waits() -> None:
    _run(_older_answer_first)


def test_replay_resumes_the_runs_the_log_names(tmp_path: Path) -> None:
    data = tmp_path / "alpha"
    digest, numbers = _run(_older_answer_first, data)
    resumed = [event["run"] for event in read_log(data).events if event["k"] == "resume"]
    assert resumed == numbers  # the older first: out of last-parked-first order
    report = replay(data, from_start=True)
    assert report.divergence is None and report.final_hash == digest


def _engine() -> tuple[Engine, int]:
    """An engine that knows a peer, beta, and an Echo object there; answers a Relay's id."""
    engine = Engine(RuntimeOptions(machine="alpha", jit="off"), Directory("alpha", 1))
    tape = base64.b64encode(encode(RELAY)).decode()
    engine.apply({"k": "load", "t": 0, "tape": tape, "upgrade": False})
    engine.apply({"k": "peer", "t": 0, "machine": "beta", "prefix": 2})
    step = engine.apply({"k": "client_create", "t": 0, "behavior": "Relay", "controller": None})
    assert type(step.outcome) is Done
    return engine, step.outcome.value.id  # type: ignore[union-attr]


def _answer(n: int) -> dict[str, Any]:
    """beta's answer to a call, as a node logs it (wire JSON)."""
    return {
        "type": "call_response",
        "request_id": n,
        "ok": True,
        "value": {"Nat": n},
        "error_kind": None,
        "error": None,
    }


def test_a_resume_event_resumes_the_run_it_names_or_else_the_newest() -> None:
    engine, relay = _engine()
    far = (2 << 48) + 5
    runs = []
    for n in (10, 20, 30):
        event = {"k": "client_call", "t": 0, "target": relay, "input": _via(far, n)}
        outcome = engine.apply(event).outcome
        assert type(outcome) is Parked
        runs.append(outcome.run.number)
    step = engine.apply({"k": "resume", "t": 0, "run": runs[1], "answer": _answer(20)})
    assert type(step.outcome) is Done and step.outcome.value == Just(20)
    assert list(engine.runtime.parked) == [runs[0], runs[2]]
    # A log written before resume events named their run: the newest parked one.
    step = engine.apply({"k": "resume", "t": 0, "answer": _answer(30)})
    assert type(step.outcome) is Done and step.outcome.run.number == runs[2]
    assert list(engine.runtime.parked) == [runs[0]]
    try:
        engine.apply({"k": "resume", "t": 0, "run": runs[2], "answer": _answer(30)})
    except LookupError as error:
        assert f"no run {runs[2]} is parked" in str(error)
    else:
        raise AssertionError("a resume of a run that is not parked applied")


def _via(target: int, n: int) -> dict[str, Any]:
    return {"List": [{"Str": "via"}, {"ObjectRef": target}, {"Nat": n}]}
