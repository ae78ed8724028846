"""Nodes in one process: several `Node`s on 127.0.0.1 in one event loop, driven by `Client`s.

Cross-node answers are compared with the same program run on one runtime, so a test fails
when distribution changes a result. Timeouts are configured short; no assertion is about
time, only about what the node answered (DESIGN.md §11).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from avm_vm.format.program import Program
from avm_vm.node.auth import handshake
from avm_vm.node.client import Client, ClientError
from avm_vm.node.messages import message
from avm_vm.node.node import Node, NodeConfig
from avm_vm.node.wire import read_message, write_message
from avm_vm.runtime.core import Runtime, RuntimeOptions
from avm_vm.trace import ExecutionMoved, ObjectCalled, ObjectFetched, ObjectMoved
from avm_vm.value_text import parse_value
from avm_vm.values import render
from avmc.compiler import compile_path, compile_source

EXAMPLES = Path(__file__).parents[1] / "examples"
PINGPONG = compile_path(EXAMPLES / "pingpong.avm")

CELL = compile_source(
    """
    behavior Cell {
      on ["get"] { return [current_machine(), get_state()] }
      on ["set", v] { set_state([v]); return v }
      on ["move", o, m] { return move_object(o, m) }
      on ["fetch", o] { return [fetch(o), get_machine(o)] }
      on ["where", o] { return get_machine(o) }
      on ["hop", m] { let a = current_machine(); return [a, teleport(m), current_machine()] }
      on ["hop_and_call", m, o] { teleport(m); return [current_machine(), call!(o, ["get"])] }
      on ["probe", o, m] { atomic { return call(o, m) } else (err) { return ["error", err] } }
      on ["make", keep] {
        let t = begin()
        let c = create Cell
        if keep { commit(t) } else { abort(t) }
        return c
      }
      on ["destroy", o] { return destroy(o) }
      on ["leave_open"] { begin("c"); create Cell; return 1 }
      on ["in_tx", o] {
        atomic { set_state([7]); return call!(o, ["get"]) } else (err) { return err }
      }
      on ["spin", n] { let i = 0; while i < n { i += 1 } return i }
      on ["huge"] { let s = "x"; while len(s) < 20000000 { s = s ++ s } return s }
      on ["relay", []] { return [current_machine()] }
      on ["relay", [next, rest]] { return [current_machine(), call!(next, ["relay", rest])] }
    }
    """,
    "cell.avm",
)
OTHER = compile_source("behavior Other { on _ { return 1 } }", "other.avm")
NAMES = ("alpha", "beta", "gamma")


def run(test: Callable[..., Awaitable[None]], *programs: list[Program], **config: Any) -> None:
    """Start one node per program list (alpha, beta, gamma; each later node dials every
    earlier one), wait until all are connected, run ``test(nodes, clients)``, stop all."""

    async def main() -> None:
        nodes: list[Node] = []
        for index, loaded in enumerate(programs):
            peers = {n.name: ("127.0.0.1", n.port) for n in nodes}
            settings = {"prefix": index + 1, "jit": "off", "record_trace": True, **config}
            node = Node(NodeConfig(NAMES[index], peers=peers, **settings), loaded)
            await node.start()
            nodes.append(node)
        await _until(lambda: all(len(n.links) == len(nodes) - 1 for n in nodes))
        clients = [await Client.connect("127.0.0.1", n.port) for n in nodes]
        try:
            await asyncio.wait_for(test(nodes, clients), 60)
        finally:
            for client in clients:
                await client.close()
            for node in nodes:
                await node.stop()

    asyncio.run(main())


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        while not condition():
            await asyncio.sleep(0.01)


def _single_node_pingpong(rounds: int) -> str:
    """The answer of examples/pingpong.avm's main with ``rounds`` on one runtime."""
    source = (EXAMPLES / "pingpong.avm").read_text(encoding="utf-8")
    source = source.replace('["Ping", 0, 3, q]', f'["Ping", 0, {rounds}, q]')
    runtime = Runtime(compile_source(source, "pingpong.avm"), RuntimeOptions(jit="off"))
    return render(runtime.run_main())


async def _call(client: Client, target: int, text: str) -> str:
    return render(await client.call(target, parse_value(text)))


def _events(node: Node, kind: type) -> list:
    return [e.event for e in node.engine.runtime.trace.entries if type(e.event) is kind]


# ----------------------------------------------------------------------------- calls


@pytest.mark.parametrize("rounds", [0, 3, 40])
def test_pingpong_across_two_nodes_answers_as_on_one(rounds: int) -> None:
    async def test(nodes: list[Node], clients: list[Client]) -> None:
        ping = await clients[0].create("ping")
        pong = await clients[1].create("pong")
        answer = await _call(clients[0], ping, f'["Ping", 0, {rounds}, obj:{pong}]')
        assert answer == _single_node_pingpong(rounds)
        if rounds == 3:
            assert answer == 'just just just just ["done", 3]'
        # Every hop after the first crosses the network: pong on beta, ping back on alpha.
        assert nodes[0].counters.remote_calls == (rounds + 1) // 2
        assert nodes[1].counters.remote_calls == rounds // 2
        assert not nodes[0].engine.runtime.parked and not nodes[1].engine.runtime.parked

    run(test, [PINGPONG], [PINGPONG])


def test_remote_calls_log_object_called_with_a_duct_across_nodes() -> None:
    async def test(nodes: list[Node], clients: list[Client]) -> None:
        ping = await clients[0].create("ping")
        pong = await clients[1].create("pong")
        await _call(clients[0], ping, f'["Ping", 0, 2, obj:{pong}]')
        alpha = [e for e in nodes[0].engine.runtime.trace.entries if type(e.event) is ObjectCalled]
        # alpha logs its call of pong (remote, §7.5), and of ping twice (client, and served).
        remote = [e for e in alpha if e.event.id == pong]
        assert [render(e.event.output) for e in remote] == ['just ["done", 2]']
        chain = remote[0].duct
        assert [link[0] for link in chain] == [ping, pong]
        # beta's entries carry the duct that came from alpha: it starts at alpha's ping.
        beta = nodes[1].engine.runtime.trace.entries
        served = [e for e in beta if type(e.event) is ObjectCalled]
        assert served and served[0].duct[0][:2] == (ping, "@alpha")

    run(test, [PINGPONG], [PINGPONG])


def test_relay_across_three_nodes() -> None:
    async def test(nodes: list[Node], clients: list[Client]) -> None:
        a, b, c = [await client.create("Cell") for client in clients]
        answer = await _call(clients[0], a, f'["relay", [obj:{b}, [obj:{c}, []]]]')
        assert answer == 'just ["alpha", ["beta", ["gamma"]]]'
        # gamma's object is reached from beta without gamma ever talking to beta first.
        assert nodes[1].counters.remote_calls == 1 and nodes[2].counters.calls_served == 1

    run(test, [CELL], [CELL], [CELL])


def test_unknown_objects_and_behaviors_are_answered_with_errors() -> None:
    async def test(nodes: list[Node], clients: list[Client]) -> None:
        with pytest.raises(ClientError, match="ObjNotFound: object not found: obj:77"):
            await clients[0].call(77, 1)
        with pytest.raises(ClientError, match='BehaviorNotFound: behavior not found: "Nope"'):
            await clients[0].create("Nope")
        probe = await clients[0].create("Cell")
        # An id of beta's prefix that beta never made: beta answers, the caller sees R's kind.
        missing = (2 << 48) + 99
        answer = await _call(clients[0], probe, f'["probe", obj:{missing}, 1]')
        assert answer == (
            'just ["error", "machine unreachable: machine:beta — remote error: '
            f'ObjNotFound: object not found: obj:{missing}"]'
        )
        # A remote behavior that ran and failed is a failed callee, as on one machine: the
        # call answers nothing (its reason travels; tests/test_failure_reasons.py).
        cell = await clients[1].create("Cell")
        answer = await _call(clients[0], probe, f'["probe", obj:{cell}, "hello"]')
        assert answer == "just nothing"
        assert await _call(clients[0], probe, '["get"]') == 'just ["alpha", []]'

    run(test, [CELL], [CELL])


def test_a_call_to_a_dead_peer_fails_within_the_timeout() -> None:
    """beta dials alpha: after alpha stops, beta waits for it up to the timeout, then fails
    the call; alpha, which never dialled beta, fails its calls to beta at once."""

    async def test(nodes: list[Node], clients: list[Client]) -> None:
        far = await clients[0].create("Cell")
        probe = await clients[1].create("Cell")
        await nodes[0].stop()
        await _until(lambda: "alpha" not in nodes[1].links)
        answer = await _call(clients[1], probe, f'["probe", obj:{far}, ["get"]]')
        assert answer == (
            'just ["error", "machine unreachable: machine:alpha (not connected within 0.3 s)"]'
        )
        assert nodes[1].counters.remote_failures == 1
        assert await _call(clients[1], probe, '["set", 4]') == "just 4"  # still serving

    run(test, [CELL], [CELL], call_timeout=0.3)


def test_a_live_peer_working_longer_than_the_timeout_still_answers() -> None:
    """The timeout catches silent peers; one that keeps answering pings is waited for."""

    async def test(nodes: list[Node], clients: list[Client]) -> None:
        far = await clients[1].create("Cell")
        probe = await clients[0].create("Cell")
        answer = await _call(clients[0], probe, f'["probe", obj:{far}, ["spin", 2000000]]')
        assert answer == "just just 2000000"

    run(test, [CELL], [CELL], call_timeout=0.1)


def test_a_peer_that_did_not_dial_back_is_not_waited_for() -> None:
    async def test(nodes: list[Node], clients: list[Client]) -> None:
        far = await clients[1].create("Cell")
        probe = await clients[0].create("Cell")
        await nodes[1].stop()
        await _until(lambda: "beta" not in nodes[0].links)
        answer = await _call(clients[0], probe, f'["probe", obj:{far}, ["get"]]')
        assert answer == 'just ["error", "machine unreachable: machine:beta (not connected)"]'

    run(test, [CELL], [CELL], call_timeout=30)


def test_a_silent_peer_times_out_and_its_late_answer_is_ignored() -> None:
    """A peer that takes calls and never answers, not even pings: the call times out."""

    async def test(nodes: list[Node], clients: list[Client]) -> None:
        node = nodes[0]
        reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
        await handshake(
            reader, writer, name="mute", role="node", secret=None, prefix=7, timeout=5,
            initiator=True,
        )  # fmt: skip
        await write_message(writer, message("ping", nonce=1))  # speaks once, then never again
        await _until(lambda: "mute" in node.links)
        probe = await clients[0].create("Cell")
        answer = await _call(clients[0], probe, f'["probe", obj:{(7 << 48) + 1}, 1]')
        assert answer.startswith('just ["error", "machine unreachable: machine:mute (timed out')
        assert answer.endswith(' s, the machine is silent)"]')
        call = None
        while call is None or call["type"] != "call":
            call = await read_message(reader)
        writer.close()
        assert call["sender_machine"] == "alpha" and call["request_id"] >> 48 == node.prefix

    run(test, [CELL], call_timeout=0.3)


def test_a_replaced_link_fails_the_requests_sent_on_it() -> None:
    """A peer that connects again while a request waits on its old connection: the answer
    cannot come on a connection that is gone, so the request fails at once, although the
    peer's name stays alive on the new one (it used to wait for ever, its run parked)."""

    async def speak_as_mute(node: Node) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
        await handshake(
            reader, writer, name="mute", role="node", secret=None, prefix=7, timeout=5,
            initiator=True,
        )  # fmt: skip
        await write_message(writer, message("ping", nonce=1))
        return reader, writer

    async def test(nodes: list[Node], clients: list[Client]) -> None:
        node = nodes[0]
        old_reader, old_writer = await speak_as_mute(node)
        await _until(lambda: "mute" in node.links)
        old = node.links["mute"]
        probe = await clients[0].create("Cell")
        target = (7 << 48) + 1
        pending = asyncio.create_task(_call(clients[0], probe, f'["probe", obj:{target}, 1]'))
        call = None
        while call is None or call["type"] != "call":
            call = await read_message(old_reader)  # the request is out, on the old link
        _, writer = await speak_as_mute(node)
        await _until(lambda: node.links.get("mute") not in (None, old))
        answer = await asyncio.wait_for(pending, 5)
        assert answer == 'just ["error", "machine unreachable: machine:mute (connection lost)"]'
        assert not node.engine.runtime.parked and len(node.pending) == 0
        for stale in (old_writer, writer):
            stale.close()

    # The call timeout is long and the new link keeps "mute" alive: only the fix ends it.
    run(test, [CELL], call_timeout=60)


@pytest.mark.parametrize("prefix", [1, 2], ids=["own prefix", "a peer's prefix"])
def test_a_peer_with_a_prefix_in_use_is_refused(prefix: int) -> None:
    """Object and request ids carry their maker's prefix: a node announcing a prefix that
    this node or another peer already has is turned away with the reason, before it is
    linked, so no two nodes hand out the same ids."""

    async def test(nodes: list[Node], clients: list[Client]) -> None:
        node = nodes[0]
        reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
        await handshake(
            reader, writer, name="twin", role="node", secret=None, prefix=prefix, timeout=5,
            initiator=True,
        )  # fmt: skip
        answer = await asyncio.wait_for(read_message(reader), 5)
        assert answer is not None and answer["type"] == "error"
        assert answer["message"].startswith("refused: ") and f"prefix {prefix}" in answer["message"]
        assert await asyncio.wait_for(read_message(reader), 5) is None  # closed
        writer.close()
        assert "twin" not in node.links and node.links.keys() == {"beta"}

    run(test, [CELL], [CELL])  # alpha has prefix 1, its peer beta prefix 2


def test_reentrant_calls_keep_parked_transactions_apart() -> None:
    """A run parked inside a transaction: the call that comes back to it (A → B → A) runs
    inside that same transaction, as a local callee would: it sees the pending state and
    the transaction's controller (docs/transactions.md)."""
    source = """
    behavior Back { on [o] { return call!(o, ["get"]) } }
    behavior Cell {
      on ["get"] { return [get_state(), reify_context()[4]] }
      on ["go", back] {
        atomic under "c1" {
          set_state([1])
          let seen = call!(back, [self])
          return seen
        }
      }
    }
    """
    program = compile_source(source, "reentrant.avm")

    async def test(nodes: list[Node], clients: list[Client]) -> None:
        cell = await clients[0].create("Cell")
        back = await clients[1].create("Back")
        assert await _call(clients[0], cell, f'["go", obj:{back}]') == 'just [[1], just "c1"]'
        assert await _call(clients[0], cell, '["get"]') == "just [[1], nothing]"

    run(test, [program], [program])


def test_a_transaction_left_open_or_failed_leaves_the_store_as_before() -> None:
    async def test(nodes: list[Node], clients: list[Client]) -> None:
        cell = await clients[0].create("Cell")
        store = nodes[0].engine.runtime.store
        # The run ends with the callee's transaction open: the node aborts it, so the next
        # run can begin one (a leaked transaction would make begin fail: nothing).
        assert await _call(clients[0], cell, '["leave_open"]') == "just 1"
        assert await _call(clients[0], cell, '["leave_open"]') == "just 1"
        assert store.ids() == [cell] and nodes[0].engine.runtime.tx is None
        far = await clients[1].create("Cell")
        await nodes[1].stop()
        answer = await _call(clients[0], cell, f'["in_tx", obj:{far}]')
        assert answer.startswith('just "machine unreachable: machine:beta (')
        assert store.state(cell) == ()  # the failed call aborted the transaction

    run(test, [CELL], [CELL], call_timeout=0.3)


# ----------------------------------------------------------------------------- directory


def test_the_directory_follows_creates_commits_aborts_and_destroys() -> None:
    async def test(nodes: list[Node], clients: list[Client]) -> None:
        maker = await clients[1].create("Cell")
        beta_objects = nodes[0].directory.objects
        await _until(lambda: beta_objects.get(maker) == "beta")
        kept = (await clients[1].call(maker, ("make", True))).value.id  # type: ignore[union-attr]
        dropped = (await clients[1].call(maker, ("make", False))).value.id  # type: ignore[union-attr]
        await _until(lambda: kept in beta_objects)
        assert dropped not in beta_objects
        await _call(clients[1], maker, f'["destroy", obj:{kept}]')
        await _until(lambda: kept not in beta_objects)
        probe = await clients[0].create("Cell")
        assert await _call(clients[0], probe, f'["where", obj:{maker}]') == 'just just "beta"'

    run(test, [CELL], [CELL])


# ----------------------------------------------------------------------------- machine layer


def test_move_object_and_fetch_across_nodes() -> None:
    async def test(nodes: list[Node], clients: list[Client]) -> None:
        x = await clients[0].create("Cell")
        mover = await clients[0].create("Cell")
        await _call(clients[0], x, '["set", 5]')
        assert await _call(clients[0], mover, f'["move", obj:{x}, "beta"]') == "just true"
        assert x not in nodes[0].engine.runtime.store
        assert nodes[1].engine.runtime.store.state(x) == (5,)
        assert await _call(clients[0], x, '["get"]') == 'just ["beta", [5]]'  # routed there
        assert _events(nodes[0], ObjectMoved) == [ObjectMoved(x, "alpha", "beta")]
        await _until(lambda: nodes[2].directory.objects.get(x) == "beta")
        # gamma lacks the behavior: the move answers false and the object stays.
        assert await _call(clients[1], x, f'["move", obj:{x}, "gamma"]') == "just false"
        assert await _call(clients[0], mover, f'["fetch", obj:{x}]') == 'just [true, just "alpha"]'
        assert await _call(clients[0], x, '["get"]') == 'just ["alpha", [5]]'
        assert _events(nodes[0], ObjectFetched) == [ObjectFetched(x, "alpha")]
        # A machine that is no peer is unreachable (spec §6.7 [A]); the mover's call fails.
        assert await _call(clients[0], mover, f'["move", obj:{x}, "nowhere"]') == "nothing"
        assert (
            await _call(clients[0], mover, f'["fetch", obj:{(9 << 48)}]') == "just [false, nothing]"
        )

    run(test, [CELL], [CELL], [OTHER])


def test_a_node_that_joins_after_a_move_finds_the_object() -> None:
    """A node that was not there when an object moved routes a call to it by its id's
    prefix to its creator; the creator tells every peer that connects where its objects
    that moved away live now, so the call reaches the object."""

    async def test(nodes: list[Node], clients: list[Client]) -> None:
        x = await clients[0].create("Cell")
        mover = await clients[0].create("Cell")
        assert await _call(clients[0], mover, f'["move", obj:{x}, "beta"]') == "just true"
        peers = {n.name: ("127.0.0.1", n.port) for n in nodes}
        late = Node(NodeConfig("gamma", peers=peers, prefix=3, jit="off"), [CELL])
        await late.start()
        client = await Client.connect("127.0.0.1", late.port)
        try:
            await _until(lambda: late.directory.objects.get(x) == "beta")
            assert await _call(client, x, '["get"]') == 'just ["beta", []]'
        finally:
            await client.close()
            await late.stop()

    run(test, [CELL], [CELL])


def test_teleport_continues_on_the_other_node_and_answers_at_the_origin() -> None:
    async def test(nodes: list[Node], clients: list[Client]) -> None:
        x = await clients[0].create("Cell")
        y = await clients[1].create("Cell")
        assert await _call(clients[0], x, '["hop", "beta"]') == 'just ["alpha", true, "beta"]'
        assert _events(nodes[1], ExecutionMoved) == [ExecutionMoved("alpha", "beta")]
        # After the hop, y is local to the activation and x is remote.
        answer = await _call(clients[0], x, f'["hop_and_call", "beta", obj:{y}]')
        assert answer == 'just ["beta", ["beta", []]]'
        # gamma lacks the code: the teleport fails there and the call fails here.
        assert await _call(clients[0], x, '["hop", "gamma"]') == "nothing"
        assert not nodes[0].engine.runtime.parked and not nodes[1].engine.runtime.parked

    run(test, [CELL], [CELL], [OTHER])


# ----------------------------------------------------------------------------- robustness


def test_a_malformed_frame_closes_only_that_connection() -> None:
    async def test(nodes: list[Node], clients: list[Client]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", nodes[0].port)
        await handshake(
            reader, writer, name="fuzzer", role="client", secret=None, prefix=0, timeout=5,
            initiator=True,
        )  # fmt: skip
        writer.write(b"\x00\x00\x00\x05hello")
        answer = await read_message(reader)
        assert answer is not None and answer["type"] == "error"
        assert await read_message(reader) is None  # closed
        writer.close()
        cell = await clients[0].create("Cell")
        assert await _call(clients[0], cell, '["set", 1]') == "just 1"

    run(test, [CELL])


def test_an_answer_too_big_for_a_frame_is_answered_with_an_error() -> None:
    async def test(nodes: list[Node], clients: list[Client]) -> None:
        cell = await clients[1].create("Cell")
        with pytest.raises(ClientError, match=r"the answer cannot be sent: .* over 16777216"):
            await clients[1].call(cell, ("huge",))
        probe = await clients[0].create("Cell")  # across nodes: the caller gets the error
        answer = await _call(clients[0], probe, f'["probe", obj:{cell}, ["huge"]]')
        assert "remote error: Failed: the answer cannot be sent" in answer

    run(test, [CELL], [CELL])
