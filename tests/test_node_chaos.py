"""Four `avm node` processes, all peers of each other, under a steady stream of calls while
seeded random faults hit them: SIGKILL and restart, SIGTERM and restart, SIGSTOP and, a few
seconds later, SIGCONT (a hung peer). Two of the nodes keep their state in a data directory
(`--data`, docs/durability.md); the other two start empty after a restart.

What must hold throughout (docs/wire.md, "Node behaviour"):

- every node that runs and is not stopped answers `status` within 1 s (a prober checks
  them all the time), whatever its peers are doing;
- no client call outlives its bound: the call timeout, plus the keep-alive window in which
  a peer that answered pings is still waited for, plus slack for a loaded machine;
- a node stopped by SIGTERM exits 0;
- every call a client saw acknowledged left its effect on a `--data` node, after all the
  restarts (the ledgers record every argument: nothing acknowledged is missing, nothing
  appears twice, nothing appears that no client sent); on the other nodes the same holds
  for the calls made since their last restart;
- at the end the idle nodes use almost no CPU.

Failures reproduce with the seed (`AVM_CHAOS_SEED`, printed in the report), up to timing.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from node_harness import (
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
from test_node_processes import BEHAVIORS

from avm_vm.node.client import ClientError
from avm_vm.values import Just, ObjectRef, Value, values_equal

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("AVM_CHAOS_SEED", "20261204"))
NAMES = ("alpha", "beta", "gamma", "delta")
DURABLE = ("alpha", "beta")  # the nodes started with --data
EVENTS = 36
CLIENTS = 4
CALL_TIMEOUT = 2.0  # --call-timeout of every node
# A request whose timer runs out while the peer answered a ping in the last 2 s waits on,
# looked at every 0.5 s (docs/wire.md, "Requests and timeouts").
ALIVE_WINDOW = 2.5
SLACK = 3.0  # for a loaded machine; a hung call overshoots it by far
CALL_BOUND = CALL_TIMEOUT + ALIVE_WINDOW + SLACK
DRAIN = 5.0  # SIGTERM lets runs finish for up to this long
HANG = (1.5, 5.0)  # seconds a node stays stopped by SIGSTOP
# A call whose entry node hangs meanwhile waits for it on top (a killed one fails at once,
# a terminated one answers within its drain).
DISTURBED_BOUND = max(HANG[1], DRAIN) + CALL_BOUND
DOWN = (0.2, 2.0)  # seconds a killed or terminated node stays down
GAP = (1.0, 3.0)  # seconds between the starts of two events
MOST_DISTURBED = 2  # nodes that are down or hung at once, at the most
STATUS_BOUND = 1.0
IDLE_WINDOW = 1.5
IDLE_CPU = 0.3  # share of one core an idle node may use (a spinning loop takes ~1.0)
REPLAYED = 30_000  # events a restarted node replays in the replay test

LEDGER = """
// Records every argument it is given, in order.
behavior ledger {
  field seen = []
  on ["add", x] { seen = append(seen, x); return x }
  on ["seen"] { return seen }
}
"""


@dataclass(frozen=True)
class Event:
    at: float  # seconds after the chaos starts
    node: str
    kind: str  # "kill", "term" or "hang"
    lasts: float  # seconds the node stays down or hung


def schedule(rng: random.Random) -> list[Event]:
    """The events, at most `MOST_DISTURBED` nodes disturbed at once, one event per node at
    a time (a restart is counted as taking a second)."""
    events: list[Event] = []
    busy = dict.fromkeys(NAMES, 0.0)  # when each node is expected to be up again
    at = 1.0
    while len(events) < EVENTS:
        at += rng.uniform(*GAP)
        free = [name for name in NAMES if busy[name] <= at]
        if len(NAMES) - len(free) >= MOST_DISTURBED:
            continue
        kind = rng.choice(("kill", "term", "hang"))
        lasts = rng.uniform(*(HANG if kind == "hang" else DOWN))
        node = rng.choice(free)
        busy[node] = at + lasts + 1.0
        events.append(Event(round(at, 2), node, kind, round(lasts, 2)))
    return events


@dataclass
class Ack:
    """A call the client saw succeed."""

    target: str  # the node holding the ledger
    token: int
    generations: tuple[int, int]  # the target's generation before and after the call


@dataclass
class Figures:
    """What every thread measured, under one lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    acks: list[Ack] = field(default_factory=list)
    sent: dict[str, set[int]] = field(default_factory=lambda: {name: set() for name in NAMES})
    outcomes: Counter[str] = field(default_factory=Counter)
    worst_call: float = 0.0  # calls whose entry node stayed up
    worst_disturbed_call: float = 0.0  # calls whose entry node was stopped meanwhile
    late_calls: list[str] = field(default_factory=list)
    worst_status: tuple[float, str] = (0.0, "")
    status_failures: list[str] = field(default_factory=list)
    probes: int = 0
    term_exits: list[int | None] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # the driver's own failures


class Chaos:
    """The nodes, their objects and the shared bookkeeping of clients, prober and events."""

    def __init__(self, nodes: Nodes, tmp_path: Path) -> None:
        tape = compile_tape(BEHAVIORS + LEDGER, tmp_path, "chaos")
        self.nodes = nodes
        self.members = plan(nodes, NAMES)
        for name, node in self.members.items():
            others = {peer: self.members[peer] for peer in NAMES if peer != name}
            options = ["--load", str(tape), "--call-timeout", str(CALL_TIMEOUT)]
            if name in DURABLE:
                options += ["--data", str(tmp_path / f"data-{name}")]
            node.args = [*peer_args(others), *options]
        self.figures = Figures()
        self.state_lock = threading.Lock()  # held by the prober while it asks a node
        self.up = dict.fromkeys(NAMES, False)
        self.disturbed = dict.fromkeys(NAMES, 0)  # counts signals and restarts
        self.generation = dict.fromkeys(NAMES, 0)  # counts restarts without --data
        self.objects: dict[str, tuple[int, int]] = {}  # node → (ledger, forwarder)
        self.node_locks = {name: threading.Lock() for name in NAMES}
        self.stop = threading.Event()

    # ------------------------------------------------------------------ nodes

    def start(self, name: str) -> None:
        """Start (or restart) a node; one without --data gets a new ledger and forwarder."""
        node = self.members[name]
        self.nodes.restart(node)
        if name not in self.objects or name not in DURABLE:
            with Session(node) as session:
                self.objects[name] = (session.create("ledger"), session.create("forwarder"))
        self.set_up(name, True)

    def set_up(self, name: str, up: bool) -> None:
        with self.state_lock:
            self.up[name] = up
            self.disturbed[name] += 1

    def hit(self, event: Event) -> None:
        """One event, on its own thread: the node's lock keeps its events in order."""
        node = self.members[event.node]
        with self.node_locks[event.node]:
            try:
                self.set_up(event.node, False)
                if event.kind == "hang":
                    os.kill(node.process.pid, signal.SIGSTOP)  # type: ignore[union-attr]
                    time.sleep(event.lasts)
                    os.kill(node.process.pid, signal.SIGCONT)  # type: ignore[union-attr]
                    self.set_up(event.node, True)
                    return
                if event.kind == "kill":
                    node.kill()
                else:
                    status = node.terminate()
                    with self.figures.lock:
                        self.figures.term_exits.append(status)
                # Only now: a call that reached the old process began in the old generation.
                self.generation[event.node] += 1
                time.sleep(event.lasts)
                self.start(event.node)
            except Exception as error:  # reported at the end, with the seed
                with self.figures.lock:
                    self.figures.errors.append(f"{event}: {error!r}")

    # ------------------------------------------------------------------ prober

    def probe(self) -> None:
        """Every live, running node answers status within `STATUS_BOUND`, all the time."""
        figures = self.figures
        while not self.stop.is_set():
            for name, node in self.members.items():
                with self.state_lock:
                    if not self.up[name]:
                        continue
                    try:
                        _, took = timed_status(node, STATUS_BOUND + SLACK)
                    except ClientError as error:
                        with figures.lock:
                            figures.status_failures.append(f"{name}: {error}")
                        continue
                with figures.lock:
                    figures.probes += 1
                    if took > figures.worst_status[0]:
                        figures.worst_status = (took, name)
            time.sleep(0.1)

    # ------------------------------------------------------------------ clients

    def client(self, index: int) -> None:
        """Calls, one at a time: to a ledger on the entry node, or through the entry node's
        forwarder to a ledger elsewhere. Every argument is a fresh token."""
        rng = random.Random(SEED * 100 + index)
        sessions: dict[str, Session] = {}
        sequence = 0
        try:
            while not self.stop.is_set():
                live = [name for name in NAMES if self.up[name]]
                if not live:
                    time.sleep(0.05)
                    continue
                sequence += 1
                self.one_call(rng, sessions, rng.choice(live), index * 10**7 + sequence)
        finally:
            for session in sessions.values():
                session.close()

    def one_call(
        self, rng: random.Random, sessions: dict[str, Session], entry: str, token: int
    ) -> None:
        figures = self.figures
        target = rng.choice(NAMES)
        ledger, _ = self.objects[target]
        forwarder = self.objects[entry][1]
        if entry == target:
            call: tuple[int, Value] = (ledger, ("add", token))
            expected: Value = Just(token)
        else:
            call = (forwarder, ("via", ObjectRef(ledger), ("add", token)))
            expected = Just(Just(token))
        generation, disturbed = self.generation[target], self.disturbed[entry]
        with figures.lock:
            figures.sent[target].add(token)
        start = time.monotonic()
        try:
            if entry not in sessions:
                sessions[entry] = Session(self.members[entry], timeout=HANG[1] + DRAIN + 30)
            answer = sessions[entry].call(*call)
            outcome = "acknowledged" if values_equal(answer, expected) else "nothing"
        except ClientError as error:
            outcome = f"failed: {str(error).split(':')[0]}"
            session = sessions.pop(entry, None)
            if session is not None:
                session.close()
        took = time.monotonic() - start
        calm = self.disturbed[entry] == disturbed
        with figures.lock:
            figures.outcomes[outcome] += 1
            if calm:
                figures.worst_call = max(figures.worst_call, took)
            else:
                figures.worst_disturbed_call = max(figures.worst_disturbed_call, took)
            if took > (CALL_BOUND if calm else DISTURBED_BOUND):
                figures.late_calls.append(f"{entry} -> {target}: {outcome} in {took:.2f} s")
            if outcome == "acknowledged":
                generations = (generation, self.generation[target])
                figures.acks.append(Ack(target, token, generations))

    # ------------------------------------------------------------------ the end

    def ledger(self, name: str) -> tuple[int, ...]:
        with Session(self.members[name]) as session:
            answer = session.call(self.objects[name][0], ("seen",))
        assert isinstance(answer, Just), answer
        return answer.value  # type: ignore[return-value]

    def audit(self) -> tuple[dict[str, str], dict[str, int]]:
        """Per node, what is wrong with its ledger (nothing, for a sound run), and how many
        acknowledged calls it was checked against."""
        wrong: dict[str, str] = {}
        checked: dict[str, int] = {}
        for name in NAMES:
            seen = self.ledger(name)
            durable = name in DURABLE
            final = self.generation[name]
            wanted = {
                ack.token
                for ack in self.figures.acks
                if ack.target == name and (durable or ack.generations == (final, final))
            }
            checked[name] = len(wanted)
            lost = wanted - set(seen)
            twice = len(seen) - len(set(seen))
            strangers = set(seen) - self.figures.sent[name]
            if lost or twice or strangers:
                wrong[name] = (
                    f"{len(lost)} acknowledged missing (e.g. {sorted(lost)[:5]}), {twice} "
                    f"twice, {len(strangers)} never sent (e.g. {sorted(strangers)[:5]})"
                )
        return wrong, checked


def test_four_nodes_under_faults(nodes: Nodes, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    events = schedule(rng)
    chaos = Chaos(nodes, tmp_path)
    began = time.monotonic()
    for name in NAMES:
        chaos.start(name)
    for name in NAMES:
        wait_connected(chaos.members[name], [peer for peer in NAMES if peer != name])

    threads = [threading.Thread(target=chaos.probe)]
    threads += [threading.Thread(target=chaos.client, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    hits: list[threading.Thread] = []
    try:
        chaos_start = time.monotonic()
        for event in events:
            time.sleep(max(0.0, chaos_start + event.at - time.monotonic()))
            hits.append(threading.Thread(target=chaos.hit, args=(event,)))
            hits[-1].start()
        for hit in hits:
            hit.join(timeout=120)
        time.sleep(1.0)  # calls and probes on the healed cluster
    finally:
        chaos.stop.set()
        for thread in threads + hits:
            thread.join(timeout=120)
    chaos_seconds = time.monotonic() - chaos_start
    figures = chaos.figures
    kinds = Counter(event.kind for event in events)
    worst_status, slowest = figures.worst_status
    print(
        f"\nchaos report (AVM_CHAOS_SEED={SEED}): {len(events)} events in {chaos_seconds:.0f} s "
        f"({kinds['kill']} SIGKILL+restart, {kinds['term']} SIGTERM+restart, "
        f"{kinds['hang']} SIGSTOP+SIGCONT)\n"
        f"  calls: {sum(figures.outcomes.values())}: "
        + ", ".join(f"{kind} {count}" for kind, count in figures.outcomes.most_common())
        + f"\n  worst call latency: {figures.worst_call:.2f} s with the entry node up "
        f"(bound {CALL_BOUND:g} s), {figures.worst_disturbed_call:.2f} s with it disturbed "
        f"(bound {DISTURBED_BOUND:g} s)\n"
        f"  status: {figures.probes} probes, worst {worst_status:.3f} s ({slowest}), "
        f"{len(figures.status_failures)} unanswered\n"
        f"  SIGTERM exits: {dict(Counter(figures.term_exits))}"
    )
    assert not any(thread.is_alive() for thread in threads + hits), "a thread never ended"

    # Acknowledged effects must survive one more abrupt restart of the durable nodes.
    for name in DURABLE:
        chaos.members[name].kill()
        chaos.start(name)
    for name in NAMES:
        wait_connected(chaos.members[name], [peer for peer in NAMES if peer != name])
    shares = cpu_shares(list(chaos.members.values()), IDLE_WINDOW)
    wrong, checked = chaos.audit()
    print(
        "  acknowledged effects checked: "
        + ", ".join(f"{name} {count}" for name, count in checked.items())
        + " (the --data nodes: all; the others: since their last restart)\n"
        "  idle CPU at the end: "
        + ", ".join(f"{name} {share:.1%}" for name, share in shares.items())
        + f"\n  whole test: {time.monotonic() - began:.0f} s"
    )
    assert not figures.errors, figures.errors
    assert not figures.status_failures, figures.status_failures[:10]
    assert worst_status <= STATUS_BOUND, f"{slowest} took {worst_status:.2f} s to answer status"
    assert not figures.late_calls, figures.late_calls[:10]
    assert set(figures.term_exits) <= {0}, figures.term_exits
    assert not wrong, wrong
    assert all(checked[name] > 0 for name in DURABLE), checked
    for name, share in shares.items():
        assert share < IDLE_CPU, f"idle {name} used {share:.0%} of a core"
    for name, node in chaos.members.items():
        assert node.terminate() == 0, f"{name} did not exit 0 on SIGTERM\n{node.log()}"
    slips = [f"{node.name}: {line}" for node in nodes.started for line in own_errors(node.log())]
    assert not slips, slips[:10]


def test_a_node_replaying_its_log_serves_nobody_half_started(nodes: Nodes, tmp_path: Path):
    """A restarted `--data` node replays its log before it runs. A client that connects as
    soon as it can, and a peer that dials it meanwhile, must be served as by a node that
    is ready: the status answered, the peer linked, no error in the node's own code."""
    tape = compile_tape(BEHAVIORS + LEDGER, tmp_path, "replay")
    options = ["--data", str(tmp_path / "data"), "--snapshot-every", "1000000000"]
    durable = nodes.start("durable", [tape], options=options)
    dialler = nodes.start("dialler", [tape], peers={"durable": durable})
    wait_connected(dialler, ["durable"])
    with Session(durable, timeout=120) as session:  # a long log: a second or so of replay
        spinner = session.create("spinner")
        session.call_many([(spinner, ("spin", 1))] * REPLAYED)
    durable.kill()  # no snapshot on the way out: the restart replays all of it
    restart = threading.Thread(target=nodes.restart, args=(durable,))
    restart.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                session = Session(durable, timeout=10)
                break
            except ClientError:
                assert time.monotonic() < deadline, f"durable never listened\n{durable.log()}"
                time.sleep(0.01)
        with session:
            try:
                events = session.status()["events"]
            except ClientError as error:
                raise AssertionError(f"status asked during the replay: {error}") from None
    finally:
        restart.join(timeout=60)
    assert events >= REPLAYED
    wait_connected(durable, ["dialler"])
    with Session(dialler) as session:
        assert values_equal(session.call(spinner, ("spin", 3)), Just(3))
    this_run = durable.log().rsplit("\n=== ", 1)[1]
    assert not own_errors(this_run), this_run
