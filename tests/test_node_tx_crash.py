"""A node SIGKILLed at each step of the two-phase commit (docs/transactions.md, "Crash
tests"): after a restart both nodes settle on one outcome, money is conserved, and each
node's log replays to the state hash it had.

examples/bank.avm, unchanged: Alice's account and the bank on node alpha (the coordinator
of every transfer), Bob's account on node beta (a participant), 100 each, both nodes with
`--data`. A failpoint (`AVM_FAILPOINTS`, avm_vm/node/failpoints.py) makes one node kill
itself at one step of a transfer; the node is started again without it.

Where the protocol fixes the outcome, the test demands it: a coordinator that dies before
its decision is logged aborts (the participant, told nothing, asks and hears "abort"); one
that dies after it commits when it comes back; a participant that dies before its yes vote
left aborts the transfer, and one that dies after voting yes commits it. A refused transfer
(500 > Alice's 100) aborts inside the bank's atomic block, before any vote, so only the
participant's failpoints on the abort decision are reached; the coordinator's are not, and
those pairs are left out.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest
from node_harness import (
    Node,
    Nodes,
    Session,
    avm,
    compile_tape,
    own_errors,
    replayed_hash,
    wait_connected,
    wait_settled,
)

from avm_vm.node.client import ClientError
from avm_vm.values import Just, ObjectRef, Value

BANK = Path(__file__).resolve().parents[1] / "examples" / "bank.avm"
START = 100  # each account's balance before the transfer
CRASH_TIMEOUT = 30.0  # seconds for the armed node to reach its failpoint and die
SETTLE_TIMEOUT = 30.0  # seconds for both nodes to finish the transfer after the restart
CALL_TIMEOUT = 15.0  # the transfer's own call: it may fail or time out, which is fine
HASH = re.compile(r"([0-9a-f]{64}) after \d+ events")

COMMITTED, ABORTED = "committed", "aborted"
CASES = [
    ("coordinator-before-prepare", 30, ABORTED),
    ("coordinator-before-decision", 30, ABORTED),
    ("coordinator-after-decision", 30, COMMITTED),
    ("participant-after-prepare", 30, ABORTED),  # the vote never reached the coordinator
    ("participant-before-apply", 30, COMMITTED),
    ("participant-before-apply", 500, ABORTED),
    ("participant-after-apply", 30, COMMITTED),
    ("participant-after-apply", 500, ABORTED),
]
DEFAULT_RUN = ("coordinator-after-decision", 30)  # the rest take a minute: marked slow


def start_pair(nodes: Nodes, tmp_path: Path, point: str) -> tuple[Node, Node]:
    """Alpha and beta with the bank loaded and `--data`; the failpoint armed on alpha for
    the coordinator's steps, on beta for the participant's."""
    tape = compile_tape(BANK, tmp_path, "bank")
    armed = {"AVM_FAILPOINTS": point}
    on_alpha = point.startswith("coordinator-")
    beta = nodes.start(
        "beta",
        [tape],
        options=["--data", str(tmp_path / "beta")],
        env={} if on_alpha else armed,
    )
    alpha = nodes.start(
        "alpha",
        [tape],
        peers={"beta": beta},
        options=["--data", str(tmp_path / "alpha")],
        env=armed if on_alpha else {},
    )
    wait_connected(alpha, ["beta"])
    return alpha, beta


def answered(value: Value) -> object:
    assert isinstance(value, Just), f"the call answered {value!r}"
    return value.value


def outcome_of(balances: tuple[object, object], amount: int) -> str:
    """What the balances say became of the transfer: both moved, or neither."""
    if balances == (START, START):
        return ABORTED
    assert balances == (START - amount, START + amount), (
        f"the nodes disagree or money was made or lost: Alice {balances[0]}, Bob "
        f"{balances[1]}, from {START} each and a transfer of {amount}"
    )
    return COMMITTED


def state_hash(node: Node) -> str:
    """The node's state hash as `avm state-hash` prints it."""
    result = avm("state-hash", node.address)
    match = HASH.fullmatch(result.stdout.strip())
    assert match is not None, f"avm state-hash {node.name}: {result.stdout}{result.stderr}"
    return match.group(1)


@pytest.mark.parametrize(
    ("point", "amount", "expected"),
    [
        pytest.param(*case, marks=() if case[:2] == DEFAULT_RUN else pytest.mark.slow)
        for case in CASES
    ],
)
def test_a_node_killed_in_the_commit_settles_on_one_outcome(
    nodes: Nodes, tmp_path: Path, point: str, amount: int, expected: str
) -> None:
    alpha, beta = start_pair(nodes, tmp_path, point)
    victim = alpha if point.startswith("coordinator-") else beta
    with Session(alpha) as on_alpha, Session(beta) as on_beta:
        alice, bank = on_alpha.create("Account"), on_alpha.create("Bank")
        bob = on_beta.create("Account")
        on_alpha.call(alice, ("deposit", START))
        on_beta.call(bob, ("deposit", START))
    answer: Value | None = None  # None when no answer came (its node died under it)
    try:
        with Session(alpha, timeout=CALL_TIMEOUT) as on_alpha:
            answer = on_alpha.call(bank, ("transfer", ObjectRef(alice), ObjectRef(bob), amount))
    except (ClientError, OSError, TimeoutError):
        pass

    status = victim.wait(CRASH_TIMEOUT)
    assert status == -signal.SIGKILL, f"{victim.name} did not die at {point}: {status}"
    assert f"failpoint {point} reached" in victim.log()
    victim.env = {}  # disarmed for the restart, same --data
    nodes.restart(victim)
    wait_connected(alpha, ["beta"])
    wait_settled([alpha, beta], SETTLE_TIMEOUT)

    with Session(alpha) as on_alpha, Session(beta) as on_beta:
        balances = (
            answered(on_alpha.call(alice, ("balance",))),
            answered(on_beta.call(bob, ("balance",))),
        )
    outcome = outcome_of(balances, amount)
    assert outcome == expected, f"{point}, a transfer of {amount}: {outcome}"
    if answer is not None:  # a client that heard an answer heard the truth
        said = answer.value[0] if isinstance(answer, Just) else "failed"  # type: ignore[index]
        assert said in (("done",) if outcome == COMMITTED else ("refused", "failed")), answer

    hashes = {node: state_hash(node) for node in (alpha, beta)}
    for node in (alpha, beta):
        assert node.terminate() == 0, node.log()
    for node, live in hashes.items():
        assert replayed_hash(tmp_path / node.name) == live, f"{node.name}'s log replays elsewhere"
        assert not own_errors(node.log()), node.log()
        assert "Traceback" not in node.log(), node.log()
