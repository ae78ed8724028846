"""Seeded random transfers across three nodes with concurrent clients (docs/transactions.md):
after every round, once the nodes are quiet, money is conserved, no node holds a lock, and
every balance is what the clients' answers say happened.

Nodes alpha, beta and gamma list each other as peers and keep `--data`; each holds a Bank
and two Accounts of examples/bank.avm, unchanged. A seeded generator plans every round:
each client makes transfers one after another, each through a random node's bank, between
two random accounts (anywhere), of a random amount, some larger than the balance, so
refused. The clients run at the same time, each on its own connections, so transfers
contend for the same accounts on the same nodes, and the bank's runs are parked on remote
calls while others run: where the planning is seeded, the interleaving is not, and a failure
message lists the round's answers.

The answers fix the expected balances exactly, whatever order the transfers ran in: a
"done" moved its amount, a "refused" or a failed call moved nothing, and the sum of the
moves is order-free. So a transfer that was acknowledged but lost, applied but refused, or
applied over another's stale read shows up, as does money made or lost. At the end each
node's log, replayed by `avm replay`, must reach the state hash the node had. A slow variant
SIGKILLs a random node in every round and starts it again (`--data`): there only the total
is certain, since a call the dead node never answered may have gone either way.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from node_harness import (
    Nodes,
    Session,
    compile_tape,
    own_errors,
    peer_args,
    plan,
    replayed_hash,
    wait_connected,
    wait_settled,
)

from avm_vm.node.client import ClientError
from avm_vm.node.wire import WireError
from avm_vm.values import Just, ObjectRef, Value

BANK = Path(__file__).resolve().parents[1] / "examples" / "bank.avm"
NAMES = ("alpha", "beta", "gamma")
ACCOUNTS_PER_NODE = 2
CALL_TIMEOUT = 30.0  # a node answers every call well within this, or the test fails
SETTLE_TIMEOUT = 30.0  # seconds for the nodes to finish every transaction after a round
UNANSWERED = (ClientError, OSError, TimeoutError, WireError)  # what a call or connect may raise


@dataclass(frozen=True)
class Account:
    node: str
    id: int


@dataclass(frozen=True)
class Transfer:
    bank: Account  # the bank it goes through (the transaction's coordinator)
    source: Account
    target: Account
    amount: int

    def call(self) -> Value:
        return ("transfer", ObjectRef(self.source.id), ObjectRef(self.target.id), self.amount)


@dataclass(frozen=True)
class Answer:
    transfer: Transfer
    moved: bool | None  # None: no answer came (the node failed to answer in time)
    kind: str  # done, refused, failed (the bank's run failed) or unanswered
    text: str  # the answer as it came, for failure messages


class Cluster:
    """The three nodes, their banks and accounts, and the balances the answers imply."""

    def __init__(self, nodes: Nodes, tmp_path: Path, rng: random.Random) -> None:
        tape = compile_tape(BANK, tmp_path, "bank")
        self.nodes = plan(nodes, NAMES)
        for name, node in self.nodes.items():
            others = {peer: self.nodes[peer] for peer in NAMES if peer != name}
            node.args = [*peer_args(others), "--load", str(tape), "--data", str(tmp_path / name)]
        for node in self.nodes.values():
            nodes.restart(node)
        self.wait_linked()
        self.banks: list[Account] = []
        self.expected: dict[Account, int] = {}
        for name, node in self.nodes.items():
            with Session(node) as session:
                self.banks.append(Account(name, session.create("Bank")))
                for _ in range(ACCOUNTS_PER_NODE):
                    account = Account(name, session.create("Account"))
                    self.expected[account] = rng.randint(50, 150)
                    session.call(account.id, ("deposit", self.expected[account]))
        self.total = sum(self.expected.values())

    def wait_linked(self) -> None:
        for name, node in self.nodes.items():
            wait_connected(node, [peer for peer in NAMES if peer != name])

    def plan_round(self, rng: random.Random, clients: int, transfers: int) -> list[list[Transfer]]:
        accounts = list(self.expected)
        return [
            [
                Transfer(rng.choice(self.banks), *rng.sample(accounts, 2), rng.randint(1, 120))
                for _ in range(transfers)
            ]
            for _ in range(clients)
        ]

    def run_round(self, plans: list[list[Transfer]]) -> list[Answer]:
        """Every client's transfers, the clients at the same time; the answers."""
        answers: list[list[Answer]] = [[] for _ in plans]
        threads = [
            threading.Thread(target=self._client, args=(transfers, answers[index]))
            for index, transfers in enumerate(plans)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(CALL_TIMEOUT * (len(plans[0]) + 1))
            assert not thread.is_alive(), "a client is stuck although every call has a timeout"
        return [answer for client in answers for answer in client]

    def _client(self, transfers: list[Transfer], answers: list[Answer]) -> None:
        """One client: a connection per node, made again after one broke (a node killed)."""
        sessions: dict[str, Session] = {}
        try:
            for transfer in transfers:
                name = transfer.bank.node
                try:
                    if name not in sessions:
                        sessions[name] = Session(self.nodes[name], timeout=CALL_TIMEOUT)
                except UNANSWERED as error:
                    answers.append(Answer(transfer, None, "unanswered", f"no connection: {error}"))
                    continue
                answers.append(ask(sessions[name], transfer))
                if answers[-1].moved is None:
                    sessions.pop(name).close()
        finally:
            for session in sessions.values():
                session.close()

    def balances(self) -> dict[Account, int]:
        found: dict[Account, int] = {}
        for name, node in self.nodes.items():
            with Session(node) as session:
                for account in self.expected:
                    if account.node == name:
                        answer = session.call(account.id, ("balance",))
                        assert isinstance(answer, Just), f"balance of {account}: {answer!r}"
                        found[account] = answer.value  # type: ignore[assignment]
        return found


def ask(session: Session, transfer: Transfer) -> Answer:
    """One transfer; whether the answer says it moved money."""
    try:
        value, failure = session.runner.run(
            session.client.call_reason(transfer.bank.id, transfer.call(), CALL_TIMEOUT)
        )
    except UNANSWERED as error:
        return Answer(transfer, None, "unanswered", str(error))
    if not isinstance(value, Just):  # the bank's run failed: its transaction with it
        return Answer(transfer, False, "failed", str(failure))
    outcome = value.value
    assert isinstance(outcome, tuple) and outcome[0] in ("done", "refused"), outcome
    return Answer(transfer, outcome[0] == "done", outcome[0], repr(outcome))


def play(
    nodes: Nodes,
    tmp_path: Path,
    seed: int,
    rounds: int,
    clients: int,
    per: int,
    kills: bool = False,
) -> None:
    """``rounds`` rounds of ``clients`` clients making ``per`` transfers each, checked after
    each. ``kills``: in each round a random node is SIGKILLed at a random moment and started
    again; the calls it leaves unanswered may have gone either way, so such a round checks
    the total, and every later round starts from the balances found."""
    rng = random.Random(seed)
    cluster = Cluster(nodes, tmp_path, rng)
    members = list(cluster.nodes.values())
    for number in range(rounds):
        plans = cluster.plan_round(rng, clients, per)
        crash = None
        if kills:
            victim = cluster.nodes[rng.choice(NAMES)]
            crash = threading.Timer(rng.uniform(0.05, 0.5), nodes.restart, [victim])
            crash.start()
        answers = cluster.run_round(plans)
        if crash is not None:
            crash.join()
            cluster.wait_linked()
        wait_settled(members, SETTLE_TIMEOUT)  # also: no node holds a locked object
        for answer in answers:
            if answer.moved:
                cluster.expected[answer.transfer.source] -= answer.transfer.amount
                cluster.expected[answer.transfer.target] += answer.transfer.amount
        found = cluster.balances()
        where = f"seed {seed}, round {number}"
        report = "\n".join(f"  {a.transfer}: {a.text}" for a in answers)
        kinds = dict(Counter(a.kind for a in answers))
        unanswered = [a for a in answers if a.moved is None]
        assert kills or not unanswered, f"{where}: calls got no answer ({kinds}):\n{report}"
        assert sum(found.values()) == cluster.total, (
            f"{where}: money not conserved, {sum(found.values())} from {cluster.total} "
            f"({kinds}):\n{report}"
        )
        assert min(found.values()) >= 0, f"{where}: an overdrawn account: {found}"
        wrong = {
            a: (found[a], cluster.expected[a]) for a in found if found[a] != cluster.expected[a]
        }
        assert unanswered or not wrong, (
            f"{where}: balances (found, as the answers imply) differ: {wrong} ({kinds}):\n{report}"
        )
        cluster.expected = found
    hashes = {}
    for node in members:
        with Session(node) as session:
            hashes[node.name] = session.state_hash()
    for node in members:
        assert node.terminate() == 0, node.log()
        assert replayed_hash(tmp_path / node.name) == hashes[node.name], node.log()
        assert not own_errors(node.log()), node.log()
        assert "Traceback" not in node.log(), node.log()


@pytest.mark.parametrize(
    "seed",
    [20_261_205, *(pytest.param(s, marks=pytest.mark.slow) for s in (20_261_206, 20_261_207))],
)
def test_random_transfers_across_three_nodes(nodes: Nodes, tmp_path: Path, seed: int) -> None:
    play(nodes, tmp_path, seed, rounds=4, clients=8, per=10)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(20_261_210, 20_261_215))
def test_many_random_transfers_across_three_nodes(nodes: Nodes, tmp_path: Path, seed: int) -> None:
    play(nodes, tmp_path, seed, rounds=6, clients=8, per=25)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [20_261_220, 20_261_221])
def test_random_transfers_with_a_node_killed_each_round(
    nodes: Nodes, tmp_path: Path, seed: int
) -> None:
    play(nodes, tmp_path, seed, rounds=5, clients=6, per=25, kills=True)


def test_pipelined_transfers_on_one_pair(nodes: Nodes, tmp_path: Path) -> None:
    """The smallest case the random rounds found, without randomness: the bank on alpha,
    both accounts on beta, three transfers from a to b in flight at once. Whichever of
    them commit, the balances must be what the answers say."""
    tape = compile_tape(BANK, tmp_path, "bank")
    beta = nodes.start("beta", [tape], options=["--data", str(tmp_path / "beta")])
    alpha = nodes.start(
        "alpha", [tape], peers={"beta": beta}, options=["--data", str(tmp_path / "alpha")]
    )
    wait_connected(alpha, ["beta"])
    with Session(alpha, timeout=CALL_TIMEOUT) as on_alpha, Session(beta) as on_beta:
        bank = on_alpha.create("Bank")
        a, b = on_beta.create("Account"), on_beta.create("Account")
        on_beta.call(a, ("deposit", 100))
        on_beta.call(b, ("deposit", 100))
        amounts = (10, 20, 30)
        transfers = [(bank, ("transfer", ObjectRef(a), ObjectRef(b), n)) for n in amounts]
        answers = on_alpha.call_many(transfers)
        wait_settled([alpha, beta], SETTLE_TIMEOUT)
        moved = sum(
            n
            for n, answer in zip(amounts, answers, strict=True)
            if isinstance(answer, Just) and answer.value[0] == "done"  # type: ignore[index]
        )
        found = (on_beta.call(a, ("balance",)), on_beta.call(b, ("balance",)))
    assert [x.value for x in found] == [100 - moved, 100 + moved], (  # type: ignore[union-attr]
        f"answers {answers}: balances {found}"
    )
