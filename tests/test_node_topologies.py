"""A node outlives every peer that leaves it, whoever listed whom (real `avm node` processes).

What docs/wire.md promises ("Node behaviour", sections Connections, Requests and timeouts,
What the caller's program sees, Stopping):

- `--peer NAME=HOST:PORT` is dialled at start and redialled after a failure with backoff
  (0.1 s doubling to 2 s); accepted connections are keyed by their `hello` name, so one
  side listing the other is enough, and when both dial, both keep the connection opened by
  the node whose name sorts first.
- Keep-alive: a connection silent for 1 s is pinged, one silent for 4 s is closed; when a
  connection closes, every request sent on it fails at once (`connection lost`).
- A request to a configured peer that is not connected waits for the connection under
  `--call-timeout`, then fails; to a peer nobody configured, it fails at once. The caller's
  `call` fails with `MachineUnreachable` either way.
- SIGTERM: queued and parked runs may finish for up to 5 s, then the node exits 0.

The regression guarded here (fixed in 2797a98): a node whose `--peer` was stopped spun at
100% CPU, ignored SIGTERM and let handshakes time out. For each topology (one side lists the
other, both list each other in either start order, a ring of three), each test starts the
nodes once and stops each side in turn, by SIGTERM or SIGKILL, with or without a call in
flight to the node being stopped; then it checks the survivors (status within 1 s, an idle
event loop, `MachineUnreachable` within the call timeout), brings the node back and checks
calls both ways. At the end every node must exit 0 on SIGTERM, each one after its peers.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from node_harness import (
    Node,
    Nodes,
    Session,
    compile_tape,
    cpu_shares,
    own_errors,
    peer_args,
    plan,
    timed_status,
    wait_connected,
)
from test_node_processes import BEHAVIORS, spin_turns

from avm_vm.node.client import ClientError
from avm_vm.values import NOTHING, Just, ObjectRef, Value, render, values_equal

CALL_TIMEOUT = 2.0  # --call-timeout of every node
DRAIN = 5.0  # how long a node stopped by SIGTERM lets its runs finish (docs/wire.md)
BACKOFF_CAP = 2.0  # the longest pause between two dials of a peer (docs/wire.md)
SLACK = 2.0  # added to every bound for a loaded machine; a hang overshoots it by far
STATUS_BOUND = 1.0  # seconds a survivor may take to answer `status`
IDLE_WINDOW = 1.5  # seconds of wall time over which an idle survivor's CPU time is taken
IDLE_CPU = 0.3  # share of one core an idle survivor may use (a spinning loop takes ~1.0)
SHORT_SPIN, LONG_SPIN = 1.0, 6.0  # seconds of the in-flight call: drained, or killed midway
TERM, KILL = signal.SIGTERM, signal.SIGKILL


@dataclass(frozen=True)
class Stop:
    """One round: stop ``victim`` with ``signal``, check the others, start it again."""

    victim: str
    signal: signal.Signals
    in_flight: bool  # a call through the survivors to the victim is running at the signal
    # The survivors that list the victim route to it over the connection the victim opened,
    # their own diallers waiting for that link to end: the state in which nodes froze before
    # 2797a98. `waits`: give the diallers time to find that link first; `certain`: and check
    # that it is the one in use (where no dial of theirs can race with the victim's).
    waits: bool = False
    certain: bool = False

    def __str__(self) -> str:
        flight = "a call in flight" if self.in_flight else "idle"
        return f"{self.signal.name} to {self.victim} ({flight})"


class Cluster:
    """The nodes of one topology (``listed[name]``: the peers node ``name`` lists), each
    with a forwarder and a spinner."""

    def __init__(self, nodes: Nodes, tape: Path, listed: dict[str, list[str]]) -> None:
        self.nodes = nodes
        self.members = plan(nodes, listed)
        for name, peers in listed.items():
            wanted = {peer: self.members[peer] for peer in peers}
            options = ["--load", str(tape), "--call-timeout", str(CALL_TIMEOUT)]
            self.members[name].args = [*peer_args(wanted), *options]
        self.linked = {
            name: {peer for peer in listed if name in listed[peer]} | set(peers)
            for name, peers in listed.items()
        }
        self.forwarder: dict[str, int] = {}
        self.spinner: dict[str, int] = {}

    def start(self, name: str) -> None:
        """Start (or start again) node ``name`` and give it a fresh forwarder and spinner
        (a node without --data comes back empty)."""
        self.nodes.restart(self.members[name])
        with Session(self.members[name]) as session:
            self.forwarder[name] = session.create("forwarder")
            self.spinner[name] = session.create("spinner")

    def wait_linked(self, names: Sequence[str]) -> None:
        for name in names:
            wait_connected(self.members[name], self.linked[name])

    def links(self, name: str) -> dict[str, str]:
        """The peers node ``name`` is connected to, and the address of each connection."""
        status, _ = timed_status(self.members[name])
        return {peer["name"]: peer["address"] for peer in status["peers"] if peer["connected"]}

    def connected(self, name: str) -> set[str]:
        return set(self.links(name))


def started(
    nodes: Nodes, tmp_path: Path, listed: dict[str, list[str]], order: Sequence[str]
) -> Cluster:
    """The topology ``listed``, its nodes started in ``order`` and linked."""
    tape = compile_tape(BEHAVIORS, tmp_path, "behaviors")
    cluster = Cluster(nodes, tape, listed)
    for name in order:
        cluster.start(name)
    cluster.wait_linked(order)
    return cluster


@pytest.fixture(scope="module")
def turns() -> dict[float, int]:
    """Spinner turns for the short and the long in-flight call."""
    return {seconds: spin_turns(seconds) for seconds in (SHORT_SPIN, LONG_SPIN)}


def nested(times: int, value: Value) -> Value:
    """``value`` in ``times`` layers of `just`: a call's answer after ``times`` hops."""
    for _ in range(times):
        value = Just(value)
    return value


def bounded(limit: float, what: str, action: Callable[[], object]) -> object:
    """``action``'s result, asserting it took at most ``limit`` seconds."""
    start = time.monotonic()
    result = action()
    took = time.monotonic() - start
    assert took <= limit, f"{what} took {took:.2f} s, over the bound of {limit:g} s"
    return result


class InFlight:
    """A client call entering the first survivor's forwarder, hopping through each survivor
    in turn, and spinning on the victim: it is in flight once the last survivor has sent
    the victim its request."""

    def __init__(self, cluster: Cluster, route: list[str], victim: str, turns: int) -> None:
        target, value = cluster.spinner[victim], ("spin", turns)
        for hop in reversed(route):
            target, value = cluster.forwarder[hop], ("via", ObjectRef(target), value)
        self.success = nested(len(route) + 1, turns)
        self.outcome: list[object] = []
        self.ended = 0.0
        self.target, self.value = target, value
        self.thread = threading.Thread(target=self._call, args=(cluster.members[route[0]],))
        self.thread.start()
        last = cluster.members[route[-1]]
        deadline = time.monotonic() + 30
        while timed_status(last)[0]["pending_requests"] == 0:
            assert self.thread.is_alive(), f"the call ended before it was in flight: {self.outcome}"
            assert time.monotonic() < deadline, f"{last.name} never sent the call on"
            time.sleep(0.02)

    def _call(self, entry: Node) -> None:
        with Session(entry, timeout=DRAIN + 30) as session:
            try:
                self.outcome.append(session.call(self.target, self.value))
            except ClientError as error:
                self.outcome.append(error)
        self.ended = time.monotonic()

    def check(self, signalled: float, victim_signal: signal.Signals) -> str:
        """The call ended within its bound: with `nothing` (the victim's link broke under
        it), or, when SIGTERM let the victim finish, with the spinner's answer. Returns how
        it ended, for the round's figures."""
        self.thread.join(timeout=DRAIN + 60)
        assert not self.thread.is_alive(), "the in-flight call never ended"
        (outcome,) = self.outcome
        allowed = [NOTHING] if victim_signal == KILL else [NOTHING, self.success]
        assert any(values_equal(outcome, value) for value in allowed), outcome
        bound = (CALL_TIMEOUT if victim_signal == KILL else DRAIN) + SLACK
        took = self.ended - signalled
        assert took <= bound, f"the in-flight call ended {took:.2f} s after the signal"
        return f"{render(outcome)} {took:.2f} s after the signal"  # type: ignore[arg-type]


def unreachable(cluster: Cluster, survivor: str, victim: str) -> float:
    """A client call on ``survivor`` to the victim's object fails with MachineUnreachable
    within the call timeout."""
    target = cluster.spinner[victim]
    with Session(cluster.members[survivor], timeout=CALL_TIMEOUT + 30) as session:
        start = time.monotonic()
        with pytest.raises(ClientError) as failure:
            session.call(target, ("spin", 1))
        took = time.monotonic() - start
    assert "MachineUnreachable" in str(failure.value), failure.value
    assert f"machine:{victim}" in str(failure.value), failure.value
    assert took <= CALL_TIMEOUT + SLACK, f"{survivor} took {took:.2f} s to give up on {victim}"
    return took


def calls_both_ways(cluster: Cluster, one: str, other: str) -> None:
    for here, there in ((one, other), (other, one)):
        message = ("via", ObjectRef(cluster.spinner[there]), ("spin", 3))
        with Session(cluster.members[here], timeout=CALL_TIMEOUT + 30) as session:
            answer = session.call(cluster.forwarder[here], message)
        assert values_equal(answer, nested(2, 3)), f"{here} -> {there}: {answer}"


def answers_status(node: Node, when: str) -> float:
    """``node`` answers `status` within `STATUS_BOUND` (a frozen loop does not even finish
    the handshake)."""
    try:
        _, took = timed_status(node, STATUS_BOUND + SLACK)
    except ClientError as error:
        raise AssertionError(f"{when}: {node.name} does not answer status: {error}") from None
    assert took <= STATUS_BOUND, f"{when}: {node.name} answered status in {took:.2f} s"
    return took


def settled(cluster: Cluster) -> None:
    """Wait out the longest dial backoff, so that every dialler has woken and found its
    link; meanwhile the nodes, linked and idle, must not spin."""
    shares = cpu_shares(list(cluster.members.values()), BACKOFF_CAP + 0.3)
    for name, share in shares.items():
        assert share < IDLE_CPU, f"linked and idle, {name} used {share:.0%} of a core"


def stop_and_return(cluster: Cluster, stop: Stop, turns: dict[float, int]) -> None:
    victim = cluster.members[stop.victim]
    names = [name for name in cluster.members if name != stop.victim]
    survivors = [cluster.members[name] for name in names]
    if stop.waits:
        settled(cluster)
    if stop.certain:  # an accepted connection's address is the victim's own port
        for name in names:
            address = cluster.links(name)[stop.victim]
            assert address != victim.address, f"{stop}: {name} dialled {stop.victim} itself"
    flight = None
    if stop.in_flight:
        spin = turns[SHORT_SPIN if stop.signal == TERM else LONG_SPIN]
        flight = InFlight(cluster, names, stop.victim, spin)
    signalled = time.monotonic()
    if stop.signal == KILL:
        victim.kill()
    else:
        assert victim.terminate() == 0, f"{stop}: the victim did not exit 0\n{victim.log()}"
    ended = "none" if flight is None else flight.check(signalled, stop.signal)

    status = max(answers_status(node, str(stop)) for node in survivors)
    shares = cpu_shares(survivors, IDLE_WINDOW)
    for name, share in shares.items():
        assert share < IDLE_CPU, f"{stop}: idle {name} used {share:.0%} of a core"
    for name in names:
        assert stop.victim not in cluster.connected(name), f"{stop}: {name} still linked"
    with ThreadPoolExecutor(len(names)) as pool:  # the survivors wait side by side
        waits = list(pool.map(lambda name: unreachable(cluster, name, stop.victim), names))

    cluster.start(stop.victim)
    cluster.wait_linked(cluster.members)
    for name in names:
        calls_both_ways(cluster, name, stop.victim)
    cpu = ", ".join(f"{name} {share:.1%}" for name, share in shares.items())
    print(
        f"{stop}: in-flight call: {ended}; survivors' status within {status:.3f} s; idle CPU "
        f"{cpu}; calls to {stop.victim} failed within {max(waits):.2f} s"
    )


def shut_down(cluster: Cluster) -> None:
    """SIGTERM to each node in turn: each exits 0 at once, the later ones after losing
    the earlier ones as peers. No node ever logged a failure of its own code."""
    gone: list[str] = []
    for name, node in cluster.members.items():
        assert not cluster.connected(name) & set(gone), f"{name} still linked to {gone}"
        status = bounded(DRAIN + SLACK, f"SIGTERM to {name}", node.terminate)
        assert status == 0, f"{name} exited with {status}\n{node.log()}"
        gone.append(name)
    slips = [
        f"{node.name}: {line}"
        for node in cluster.members.values()
        for line in own_errors(node.log())
    ]
    assert not slips, slips[:10]


def run(cluster: Cluster, stops: list[Stop], turns: dict[float, int]) -> None:
    for stop in stops:
        stop_and_return(cluster, stop, turns)
    shut_down(cluster)


# --------------------------------------------------------------------------- topologies


@pytest.mark.parametrize(
    "stops",
    [
        # The default run keeps one side listing the other and the ring of three (which has
        # both kinds of link); both orders of both listing each other and the other signals
        # run in the slow suite.
        pytest.param(
            [Stop("alpha", TERM, True), Stop("beta", TERM, False)], marks=pytest.mark.slow
        ),
        [Stop("alpha", KILL, False), Stop("beta", KILL, True)],
    ],
    ids=["sigterm", "sigkill"],
)
def test_one_side_lists_the_other(nodes, tmp_path, turns, stops):
    """alpha lists beta; beta only accepts. Stopping alpha leaves beta a peer nobody
    configured; stopping beta leaves alpha redialling it."""
    cluster = started(nodes, tmp_path, {"alpha": ["beta"], "beta": []}, ["beta", "alpha"])
    run(cluster, stops, turns)


@pytest.mark.parametrize(
    ("order", "stops"),
    [
        pytest.param(
            ["alpha", "beta"],
            [Stop("beta", TERM, False, waits=True), Stop("beta", KILL, True, waits=True)],
            marks=pytest.mark.slow,
        ),
        pytest.param(
            ["beta", "alpha"],
            [
                Stop("alpha", KILL, False, waits=True, certain=True),
                Stop("alpha", TERM, True, waits=True, certain=True),
            ],
            marks=pytest.mark.slow,
        ),
    ],
    ids=["alpha-first", "beta-first"],
)
def test_both_list_each_other(nodes, tmp_path, turns, order, stops):
    """Both dial. A node dials as it starts, while the other one's dialler backs off: so
    the survivor, started earlier, usually routes over the link the victim opened, and its
    dialler waits on that link. When the victim is alpha (beta-first) this is certain: had
    both dialled, both would keep alpha's connection, its name sorting first. Survivors
    that dialled their link themselves are in the other topologies."""
    cluster = started(nodes, tmp_path, {"alpha": ["beta"], "beta": ["alpha"]}, order)
    run(cluster, stops, turns)


def test_ring_of_three(nodes, tmp_path, turns):
    """a lists b, b lists c, c lists a: each node loses one peer it dials and one that
    dials it. The in-flight call hops through both survivors."""
    cluster = started(nodes, tmp_path, {"a": ["b"], "b": ["c"], "c": ["a"]}, ["a", "b", "c"])
    run(cluster, [Stop("a", TERM, True), Stop("b", KILL, False)], turns)
