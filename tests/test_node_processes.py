"""`avm node` as real processes on 127.0.0.1 (DESIGN.md §8, spec §11): calls across nodes give
the single-node answer; a node killed mid-run leaves the others serving and failing cleanly;
the shared secret, SIGTERM and the client commands' errors.

Expected answers come from running the same behaviors in one in-process runtime, never from
a node. Nodes start on ports the OS picks (tests/node_harness.py) and are killed at teardown.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from node_harness import (
    Node,
    Nodes,
    Session,
    avm,
    compile_tape,
    wait_connected,
)

from avm_vm.node.client import ClientError
from avm_vm.runtime.core import Runtime
from avm_vm.value_text import parse_value
from avm_vm.values import render
from avmc.compiler import compile_source

PINGPONG = Path(__file__).parents[1] / "examples" / "pingpong.avm"
PINGPONG_MAIN = 'return call(p, ["Ping", 0, 3, q])'

# Each relay counts its visits (state on every node) and forwards the message to the next
# object of the route; the last one answers with the visit counts seen along the way.
BEHAVIORS = """
behavior relay {
  field visits = 0
  on ["relay", [], trail] { visits += 1; return ["arrived", append(trail, visits)] }
  on ["relay", [next, ..rest], trail] {
    visits += 1
    return call(next, ["relay", rest, append(trail, visits)])
  }
}

// Work that takes a while: `n` turns of a loop, then the count.
behavior spinner {
  on ["spin", n] { let i = 0; while i < n { i += 1 } return i }
}

behavior forwarder {
  on ["via", target, message] { return call(target, message) }
}
"""
RELAY = (
    BEHAVIORS
    + """
main {
  let a = create relay
  let b = create relay
  let c = create relay
  return call(a, ["relay", [b, c, a, b, c, a], []])
}
"""
)
SPIN = BEHAVIORS + 'main { let s = create spinner; return call(s, ["spin", %d]) }'
RELAY_ROUTE = "[{b}, {c}, {a}, {b}, {c}, {a}]"


def single_node(source: str) -> str:
    """The canonical text of what ``main`` of ``source`` answers in one runtime."""
    return render(Runtime(compile_source(source, "single.avm")).run_main())


def pingpong_on_one_node(start: int, limit: int) -> str:
    source = PINGPONG.read_text(encoding="utf-8")
    assert PINGPONG_MAIN in source, "examples/pingpong.avm changed its main"
    return single_node(
        source.replace(PINGPONG_MAIN, f'return call(p, ["Ping", {start}, {limit}, q])')
    )


def ping_message(start: int, limit: int, partner: str) -> str:
    return f'["Ping", {start}, {limit}, {partner}]'


def created(node: Node, behavior: str) -> str:
    """`avm create` on ``node``: the new object's reference text."""
    result = avm("create", node.address, behavior)
    assert result.returncode == 0, result.stderr + node.log()
    assert result.stdout.startswith("obj:"), result.stdout
    return result.stdout.strip()


def called(node: Node, target: str, value: str) -> str:
    """`avm call` on ``node``: the answer's text (the command must succeed)."""
    result = avm("call", node.address, target, value)
    assert result.returncode == 0, result.stderr + node.log()
    assert result.stderr == ""
    return result.stdout.strip()


def refused(result, *phrases: str) -> None:
    """A client command failed with status 1 and a one-line message naming ``phrases``."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, (phrase, result.stderr)


def create_on(node: Node, behavior: str) -> str:
    """A new object on ``node``, created through a client connection (no process start)."""
    with Session(node) as session:
        return f"obj:{session.create(behavior)}"


def ask(session: Session, target: str, value: str) -> str:
    """What ``target`` answers to ``value`` (both as text), through a client connection."""
    return render(session.call(int(target.removeprefix("obj:")), parse_value(value)))


def status_of(node: Node) -> dict:
    with Session(node) as session:
        return session.status()


def wait_for_log(node: Node, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in node.log():
        assert time.monotonic() < deadline, f"{text!r} never logged\n{node.log()}"
        time.sleep(0.05)


@pytest.fixture
def pingpong_tape(tmp_path: Path) -> Path:
    return compile_tape(PINGPONG, tmp_path, "pingpong")


@pytest.fixture
def relay_tape(tmp_path: Path) -> Path:
    return compile_tape(RELAY, tmp_path, "relay")


def two_nodes(nodes: Nodes, tape: Path, *options: str) -> tuple[Node, Node]:
    """alpha and beta, both running ``tape``; alpha dials beta."""
    beta = nodes.start("beta", [tape], options=options)
    alpha = nodes.start("alpha", [tape], peers={"beta": beta}, options=options)
    wait_connected(alpha, ["beta"])
    wait_connected(beta, ["alpha"])
    return alpha, beta


# --------------------------------------------------------------------------- calls across nodes


@pytest.mark.parametrize(
    "limits",
    [(3, 50), pytest.param((1000,), marks=pytest.mark.slow)],
    ids=["3-and-50-hops", "1000-hops"],
)
def test_pingpong_across_two_nodes_answers_as_on_one_node(nodes, pingpong_tape, limits):
    """1000 hops nest 1000 parked runs per node and answers too deep for the C JSON codec."""
    alpha, beta = two_nodes(nodes, pingpong_tape, "--call-timeout", "60")
    ping, pong = created(alpha, "ping"), created(beta, "pong")
    for limit in limits:
        answer = called(alpha, ping, ping_message(0, limit, pong))
        assert answer == pingpong_on_one_node(0, limit)
    # Every hop (one per count) was a call to the other node, not a local one.
    hops = sum(status_of(node)["counters"]["remote_calls"] for node in (alpha, beta))
    assert hops == sum(limits)


def test_three_node_relay_answers_as_on_one_node(nodes, relay_tape):
    gamma = nodes.start("gamma", [relay_tape])
    beta = nodes.start("beta", [relay_tape], peers={"gamma": gamma})
    alpha = nodes.start("alpha", [relay_tape], peers={"beta": beta, "gamma": gamma})
    wait_connected(alpha, ["beta", "gamma"])
    wait_connected(beta, ["alpha", "gamma"])
    wait_connected(gamma, ["alpha", "beta"])
    a, b, c = (create_on(node, "relay") for node in (alpha, beta, gamma))
    route = RELAY_ROUTE.format(a=a, b=b, c=c)
    answer = called(alpha, a, f'["relay", {route}, []]')
    assert answer == single_node(RELAY)
    for node in (alpha, beta, gamma):  # the route enters each node twice
        assert status_of(node)["counters"]["calls_served"] == 2, node.name


# --------------------------------------------------------------------------- faults


def test_kill_9_mid_run_then_restart(nodes, pingpong_tape):
    alpha, beta = two_nodes(nodes, pingpong_tape, "--call-timeout", "2")
    ping, pong = created(alpha, "ping"), created(beta, "pong")
    round_trip = pingpong_on_one_node(0, 3)
    outcomes: list[str] = []
    stop = threading.Event()

    def client_loop() -> None:
        with Session(alpha) as session:
            while not stop.is_set():
                try:
                    outcomes.append(ask(session, ping, ping_message(0, 3, pong)))
                except ClientError as error:
                    outcomes.append(f"error: {error}")

    def wait_outcomes(count: int) -> None:
        deadline = time.monotonic() + 30
        while len(outcomes) < count:
            assert time.monotonic() < deadline, outcomes[-5:]
            time.sleep(0.01)

    loop = threading.Thread(target=client_loop)
    loop.start()
    try:
        wait_outcomes(20)
        killed_at = len(outcomes)  # every call answered so far ended before the kill
        beta.kill()
        wait_outcomes(killed_at + 1)
    finally:
        stop.set()
        loop.join(timeout=60)
    assert not loop.is_alive()
    assert set(outcomes[:killed_at]) == {round_trip}
    # A call caught by the kill fails as a failed callee does; none hangs or answers garbage.
    assert set(outcomes[killed_at:]) <= {round_trip, "nothing"}, outcomes[killed_at:]
    assert outcomes[-1] == "nothing"

    # alpha still serves its own objects, and reports why the rest fails.
    with Session(alpha) as session:
        assert ask(session, ping, ping_message(3, 3, pong)) == pingpong_on_one_node(3, 3)
        status = session.status()
    refused(
        avm("call", alpha.address, pong, ping_message(0, 3, ping)), "MachineUnreachable", "beta"
    )
    assert status["counters"]["remote_failures"] >= 1
    assert {p["name"]: p["connected"] for p in status["peers"]} == {"beta": False}

    # Restarted, beta has none of its old objects (not durable) but takes calls again.
    nodes.restart(beta)
    wait_connected(alpha, ["beta"])
    with Session(beta) as on_beta, Session(alpha) as on_alpha:
        new_pong = f"obj:{on_beta.create('pong')}"
        assert ask(on_alpha, ping, ping_message(0, 3, new_pong)) == round_trip
        assert ask(on_beta, ping, ping_message(0, 3, new_pong)) == round_trip


# --------------------------------------------------------------------------- secret and signals


def write_secrets(directory: Path) -> tuple[Path, Path]:
    secret, wrong = directory / "secret", directory / "wrong"
    secret.write_text("correct horse battery staple\n")
    wrong.write_text("incorrect horse\n")
    return secret, wrong


def test_secret_keeps_out_clients_and_peers_without_it(nodes, pingpong_tape, tmp_path):
    secret, wrong = write_secrets(tmp_path)
    guarded = nodes.start("guarded", [pingpong_tape], secret_file=secret)
    friend = nodes.start("friend", [pingpong_tape], peers={"guarded": guarded}, secret_file=secret)
    stranger = nodes.start("stranger", [pingpong_tape], peers={"guarded": guarded})
    impostor = nodes.start(
        "impostor", [pingpong_tape], peers={"guarded": guarded}, secret_file=wrong
    )

    refused(avm("status", guarded.address), "shared secret")
    refused(avm("status", guarded.address, "--secret-file", str(wrong)), "authentication failed")
    result = avm("status", guarded.address, "--json", "--secret-file", str(secret))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["name"] == "guarded"

    # A peer holding the secret takes part in calls.
    result = avm("create", friend.address, "pong", "--secret-file", str(secret))
    assert result.returncode == 0, result.stderr
    pong = result.stdout.strip()
    result = avm("create", guarded.address, "ping", "--secret-file", str(secret))
    ping = result.stdout.strip()
    result = avm(
        "call", guarded.address, ping, ping_message(0, 3, pong), "--secret-file", str(secret)
    )
    assert (result.returncode, result.stdout.strip()) == (0, pingpong_on_one_node(0, 3))

    # The others are told why, and never become the guarded node's peers.
    wait_for_log(stranger, "shared secret")
    wait_for_log(impostor, "authentication failed")
    result = avm("status", guarded.address, "--json", "--secret-file", str(secret))
    peers = {p["name"]: p["connected"] for p in json.loads(result.stdout)["peers"]}
    assert peers == {"friend": True}, peers
    assert "Traceback" not in guarded.log() + stranger.log() + impostor.log()


def test_peer_without_the_secret_never_counts_as_connected(nodes, pingpong_tape, tmp_path):
    """The refused side must not believe, even for a moment, that the link is up: calls
    routed to it meanwhile would go into a connection the other side is about to drop."""
    secret, _ = write_secrets(tmp_path)
    guarded = nodes.start("guarded", [pingpong_tape], secret_file=secret)
    stranger = nodes.start("stranger", [pingpong_tape], peers={"guarded": guarded})
    wait_for_log(stranger, "shared secret")
    assert "peer guarded connected" not in stranger.log()


def test_non_loopback_listen_needs_a_secret(pingpong_tape):
    result = avm("node", "--name", "open", "--listen", "0.0.0.0:0", "--load", str(pingpong_tape))
    assert result.returncode == 1, result.stdout
    assert "secret" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


def spin_turns(seconds: float) -> int:
    """Turns of the spinner's loop that take about ``seconds`` in this runtime (the node
    runs the same VM with the same options)."""
    turns = 300_000
    runtime = Runtime(compile_source(SPIN % turns, "spin.avm"))
    start = time.perf_counter()
    runtime.run_main()
    return int(turns * seconds / (time.perf_counter() - start)) + 1


def test_sigterm_drains_the_running_call_and_exits_0(nodes, relay_tape):
    node = nodes.start("quitter", [relay_tape])
    spinner = created(node, "spinner")
    turns = spin_turns(1.0)
    answers: list[str] = []
    connected = threading.Event()

    def spin() -> None:
        with Session(node, timeout=30) as session:
            connected.set()
            answers.append(ask(session, spinner, f'["spin", {turns}]'))

    caller = threading.Thread(target=spin)
    caller.start()
    assert connected.wait(timeout=30)
    time.sleep(0.3)  # usually mid-spin; if the spin already ended, the checks still hold
    assert node.terminate() == 0, node.log()
    caller.join(timeout=30)
    assert answers == [f"just {turns}"]


def test_remote_call_that_outlasts_the_call_timeout_still_answers(nodes, relay_tape):
    """The call timeout is there to notice dead or unreachable peers (the keep-alive does
    too); a live peer that simply works longer must still deliver the single-node answer."""
    alpha, beta = two_nodes(nodes, relay_tape, "--call-timeout", "0.5")
    forwarder, spinner = created(alpha, "forwarder"), create_on(beta, "spinner")
    turns = spin_turns(1.5)
    answer = called(alpha, forwarder, f'["via", {spinner}, ["spin", {turns}]]')
    assert answer == f"just just {turns}"


# --------------------------------------------------------------------------- client errors


def test_client_commands_fail_with_clear_messages(nodes, pingpong_tape):
    node = nodes.start("solo", [pingpong_tape])
    ping = created(node, "ping")
    missing = f"obj:{int(ping[4:]) + 1000}"

    result = avm("call", node.address, ping, '["Ping", 0')
    assert result.returncode == 2 and "VALUE" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    result = avm("call", node.address, "pong", "1")
    assert result.returncode == 2 and "OBJECT" in result.stderr, result.stderr
    refused(avm("call", node.address, missing, "1"), "ObjNotFound", missing)
    refused(avm("create", node.address, "nosuch"), "BehaviorNotFound", "nosuch")

    node.terminate()
    for command in (("call", node.address, ping, "1"), ("status", node.address)):
        refused(avm(*command), "cannot connect", node.address)
