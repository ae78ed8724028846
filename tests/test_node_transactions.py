"""Transactions that span nodes (docs/transactions.md): a remote call inside a transaction
joins it, and its commit is all or nothing on every node it reached.

Nodes run in this process (tests/test_node.py's harness) so that a test can look at their
engines; the engine-level tests drive one node's part of a transaction event by event, as
a coordinator's messages would, so each step of the protocol is checked exactly. Crashes at
each step are in tests/test_node_tx_crash.py, random transfers in test_node_tx_random.py.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest
from test_node import run
from test_runtime_park import Network as Far  # everything with prefix 1 lives on "far"

from avm_vm.errors import ErrorKind
from avm_vm.format.bytecode import encode
from avm_vm.node.client import Client
from avm_vm.node.codec import value_to_json
from avm_vm.node.directory import Directory
from avm_vm.node.engine import Engine
from avm_vm.node.messages import message
from avm_vm.node.node import Node
from avm_vm.node.wire import read_message, write_message
from avm_vm.runtime.core import Runtime, RuntimeOptions
from avm_vm.runtime.runs import Decision, Done, NoAnswer, Parked, Prepare
from avm_vm.runtime.store import ObjectRecord
from avm_vm.trace import TransactionAborted, TransactionCommitted
from avm_vm.values import NOTHING, Just, ObjectRef, Value
from avmc.compiler import compile_path, compile_source

BANK = compile_path(Path(__file__).parents[1] / "examples" / "bank.avm")
AUDIT = compile_source(
    """
    behavior Audit {
      // Reads an account elsewhere, writes only here: the other node's part is read-only.
      on ["note", account] {
        atomic { let b = call!(account, ["balance"]); set_state([b]); return b }
        else (err) { return ["refused", err] }
      }
      on ["probe", o, m] { atomic { return call!(o, m) } else (err, kind) { return [kind, err] } }
      on ["who"] { return current_controller() }
      on ["check", account] {
        let b = call!(account, ["balance"])
        if b < 1000 { fail "too low" }
        return b
      }
      on ["careful", account] {
        atomic { let r = call(self, ["check", account]); set_state([r]); return r }
        else (err) { return ["refused", err] }
      }
      on ["ask", o] { atomic under "c9" { return call!(o, ["who"]) } }
    }
    """,
    "audit.avm",
)


async def _balances(clients: list[Client], *accounts: tuple[int, int]) -> list[Value]:
    """Each (client index, account) balance."""
    return [await clients[i].call(a, ("balance",)) for i, a in accounts]


def _settled(nodes: list[Node]) -> bool:
    """No node holds a part of a transaction, a lock or an unacknowledged decision."""
    return not any(
        n.engine.branches or n.engine.outcomes or n.engine.runtime.store.locks for n in nodes
    )


async def _until_settled(nodes: list[Node]) -> None:
    async with asyncio.timeout(10):
        while not _settled(nodes):
            await asyncio.sleep(0.01)


def _accounts_test(amounts: list[tuple[int, Value]]) -> Any:
    """Alice's account and the bank on alpha, Bob's on beta, 100 each; each transfer of
    ``amounts`` from Alice to Bob answers what it says, and money is conserved after each."""

    async def test(nodes: list[Node], clients: list[Client]) -> None:
        alice, bank = await clients[0].create("Account"), await clients[0].create("Bank")
        bob = await clients[1].create("Account")
        await clients[0].call(alice, ("deposit", 100))
        await clients[1].call(bob, ("deposit", 100))
        expected = [100, 100]
        for amount, answer in amounts:
            got = await clients[0].call(
                bank, ("transfer", ObjectRef(alice), ObjectRef(bob), amount)
            )
            assert got == answer
            if answer == Just(("done", amount)):
                expected = [expected[0] - amount, expected[1] + amount]
            await _until_settled(nodes)
            assert await _balances(clients, (0, alice), (1, bob)) == [Just(x) for x in expected]
        commits = [type(e.event) for e in nodes[1].engine.runtime.trace.entries]
        done = sum(answer == Just(("done", amount)) for amount, answer in amounts)
        assert commits.count(TransactionCommitted) == done

    return test


def test_a_refused_transfer_across_nodes_moves_no_money() -> None:
    """The issue's case: the deposit ran on beta inside the transfer's transaction, so the
    refused withdrawal on alpha takes it back there too; an accepted one moves the money."""

    def refused(amount: int) -> Value:
        return Just(("refused", amount, "insufficient funds"))

    plan = [(500, refused(500)), (30, Just(("done", 30))), (71, refused(71))]
    plan.append((70, Just(("done", 70))))
    run(_accounts_test(plan), [BANK], [BANK], volatile_commit=True)


RELAY = compile_source(
    """
    behavior Relay {
      on ["deposit", account, amount] { return call!(account, ["deposit", amount]) }
    }
    behavior Teller {
      on ["transfer", relay, from, to, amount] {
        atomic {
          call!(relay, ["deposit", to, amount])
          call!(from, ["withdraw", amount])
        } else (reason) { return ["refused", reason] }
        return "done"
      }
    }
    """,
    "relay.avm",
)


def test_a_node_reached_through_another_takes_part_too() -> None:
    """alpha → beta → gamma: gamma's part is known to alpha only from beta's vote, and it
    commits or rolls back with the rest."""

    async def test(nodes: list[Node], clients: list[Client]) -> None:
        alice, teller = await clients[0].create("Account"), await clients[0].create("Teller")
        relay, bob = await clients[1].create("Relay"), await clients[2].create("Account")
        await clients[0].call(alice, ("deposit", 100))
        refs = (ObjectRef(relay), ObjectRef(alice), ObjectRef(bob))
        refused = await clients[0].call(teller, ("transfer", *refs, 500))
        assert refused == Just(("refused", "insufficient funds"))
        await _until_settled(nodes)
        assert await _balances(clients, (0, alice), (2, bob)) == [Just(100), Just(0)]
        assert await clients[0].call(teller, ("transfer", *refs, 30)) == Just("done")
        await _until_settled(nodes)
        assert await _balances(clients, (0, alice), (2, bob)) == [Just(70), Just(30)]

    run(test, [BANK, RELAY], [RELAY], [BANK], volatile_commit=True)


def test_a_node_without_a_log_refuses_to_commit_its_part() -> None:
    """Without --data a node cannot promise to commit after a crash: it votes no, and the
    transfer is refused with the reason and what to do (--data, or --volatile-commit)."""

    async def test(nodes: list[Node], clients: list[Client]) -> None:
        alice, bank = await clients[0].create("Account"), await clients[0].create("Bank")
        bob = await clients[1].create("Account")
        await clients[0].call(alice, ("deposit", 100))
        got = await clients[0].call(bank, ("transfer", ObjectRef(alice), ObjectRef(bob), 30))
        assert type(got) is Just and got.value[0] == "refused"  # type: ignore[index]
        reason = got.value[2]  # type: ignore[index]
        assert reason.startswith(f"transaction conflict: tx:{1 << 48}: node beta: node beta ")
        assert "keeps no log" in reason and "--data" in reason and "--volatile-commit" in reason
        await _until_settled(nodes)
        assert await _balances(clients, (0, alice), (1, bob)) == [Just(100), Just(0)]

    run(test, [BANK], [BANK])


def test_a_read_only_part_needs_no_log_and_no_decision() -> None:
    """A part that only read votes "read-only": it is checked, forgotten at once, and the
    transaction commits on the coordinator without either node keeping a log."""

    async def test(nodes: list[Node], clients: list[Client]) -> None:
        audit = await clients[0].create("Audit")
        account = await clients[1].create("Account")
        await clients[1].call(account, ("deposit", 42))
        assert await clients[0].call(audit, ("note", ObjectRef(account))) == Just(42)
        assert nodes[0].engine.runtime.store.state(audit) == (42,)
        assert _settled(nodes)

    run(test, [AUDIT, BANK], [BANK])


def test_a_failed_callee_that_only_read_another_node_does_not_stop_the_commit() -> None:
    """The check read beta's account (a part that changed nothing) and failed: undoing it
    leaves nothing behind on beta, so the transaction still commits."""

    async def test(nodes: list[Node], clients: list[Client]) -> None:
        audit, account = await clients[0].create("Audit"), await clients[1].create("Account")
        assert await clients[0].call(audit, ("careful", ObjectRef(account))) == Just(NOTHING)
        assert nodes[0].engine.runtime.store.state(audit) == (NOTHING,)
        assert _settled(nodes)

    run(test, [AUDIT], [BANK])


def test_a_joined_call_runs_under_the_transactions_controller() -> None:
    async def test(nodes: list[Node], clients: list[Client]) -> None:
        asker, answerer = await clients[0].create("Audit"), await clients[1].create("Audit")
        assert await clients[0].call(asker, ("ask", ObjectRef(answerer))) == Just(Just("c9"))
        assert await clients[1].call(answerer, ("who",)) == Just(NOTHING)  # outside: none

    run(test, [AUDIT], [AUDIT])


def test_a_call_that_cannot_join_fails_its_transaction_clearly() -> None:
    """A peer that speaks protocol 2 cannot hold a part of a transaction: the call inside
    one fails with TxCannotJoin naming the call and the node, instead of escaping it."""

    async def test(nodes: list[Node], clients: list[Client]) -> None:
        alpha = nodes[0]
        reader, writer = await asyncio.open_connection("127.0.0.1", alpha.port)
        hello = message(
            "hello", version=2, name="elder", role="node", nonce="ab" * 32, prefix=9
        )  # a node of protocol 2, without a secret: the hellos are the whole handshake
        await write_message(writer, hello)
        assert (await read_message(reader))["type"] == "hello"  # type: ignore[index]
        elder_object = (9 << 48) + 1
        await write_message(
            writer, message("create_notify", object_id=elder_object, machine_id="elder")
        )
        async with asyncio.timeout(10):
            while alpha.directory.versions.get("elder") != 2 or not alpha.directory.locate(
                elder_object
            ):
                await asyncio.sleep(0.01)
        audit = await clients[0].create("Audit")
        got = await clients[0].call(audit, ("probe", ObjectRef(elder_object), ("x",)))
        assert type(got) is Just
        kind, text = got.value  # type: ignore[misc]
        assert kind == "TxCannotJoin"
        assert f"the call to obj:{elder_object} on node elder cannot join" in text
        assert "speaks wire protocol 2" in text
        writer.close()

    run(test, [AUDIT], [BANK])


def test_profile_r_keeps_the_specs_remote_calls_outside_transactions() -> None:
    """`--profile r`: the spec's rule, where the deposit on beta escapes the refused
    transfer (the money it creates is why ours is the default)."""

    async def test(nodes: list[Node], clients: list[Client]) -> None:
        alice, bank = await clients[0].create("Account"), await clients[0].create("Bank")
        bob = await clients[1].create("Account")
        await clients[0].call(alice, ("deposit", 100))
        got = await clients[0].call(bank, ("transfer", ObjectRef(alice), ObjectRef(bob), 500))
        assert got == Just(("refused", 500, "insufficient funds"))
        assert await _balances(clients, (0, alice), (1, bob)) == [Just(100), Just(500)]
        assert _settled(nodes) and not nodes[1].engine.outcomes

    run(test, [BANK], [BANK], profile="r")


# ----------------------------------------------------------------------------- one node's part


def _engine(machine: str = "beta", prefix: int = 2) -> Engine:
    options = RuntimeOptions(machine=machine, node_prefix=prefix, jit="off")
    engine = Engine(options, Directory(machine, prefix))
    tape = base64.b64encode(encode(BANK)).decode()
    engine.apply({"k": "load", "tape": tape, "upgrade": False, "t": 0})
    return engine


def _apply(engine: Engine, **event: Any) -> Any:
    """Apply an event at time 1 s (its input a value); the outcome's value, or the step."""
    if "input" in event:
        event["input"] = value_to_json(event["input"])
    step = engine.apply({"t": 1000, **event})
    outcome = step.outcome
    return outcome.value if type(outcome) is Done else step


def _joined_deposit(engine: Engine, account: int, amount: int, tx: int) -> Any:
    """alpha's call ``deposit`` made inside its transaction ``tx``."""
    duct = [["alpha", 0, 1]]
    return _apply(
        engine, k="call", target=account, input=("deposit", amount), sender=0, duct=duct,
        tx=tx, coordinator="alpha",
    )  # fmt: skip


TX = (1 << 48) + 5  # a transaction alpha (prefix 1) began


def test_a_part_holds_its_changes_until_the_decision() -> None:
    engine = _engine()
    account = _apply(engine, k="client_create", behavior="Account", controller=None).id
    assert _joined_deposit(engine, account, 30, TX) == 30  # it reads its own write
    store = engine.runtime.store
    assert store.state(account) == ()  # nothing applied yet
    assert engine.branches[TX].tx.states == {account: (30,)}
    vote = _apply(engine, k="prepare", tx=TX).reply
    assert (vote["ok"], vote["read_only"], vote["error"]) == (True, False, None)
    assert store.locks == {account: TX}
    locked = _apply(engine, k="client_call", target=account, input=("balance",))
    failure = locked.outcome.failure
    assert failure.error.kind is ErrorKind.OBJ_LOCKED  # at once, with who holds it
    assert (
        str(failure)
        == f"ObjLocked: obj:{account} is locked while tx:{TX} commits across nodes; try again"
    )
    again = _apply(engine, k="prepare", tx=TX).reply  # a repeated prepare: the same vote
    assert again["ok"] is True
    _apply(engine, k="decide", tx=TX, commit=True)
    assert store.state(account) == (30,) and not store.locks and not engine.branches
    assert _apply(engine, k="client_call", target=account, input=("balance",)) == Just(30)


def test_a_part_rolled_back_leaves_nothing() -> None:
    engine = _engine()
    account = _apply(engine, k="client_create", behavior="Account", controller=None).id
    _joined_deposit(engine, account, 30, TX)
    _apply(engine, k="prepare", tx=TX)
    _apply(engine, k="decide", tx=TX, commit=False)
    assert engine.runtime.store.state(account) == () and not engine.runtime.store.locks
    ended = [type(e.event) for e in engine.runtime.trace.entries if TX in e.event]
    assert ended == [TransactionAborted]
    # A decision on a part it no longer holds changes nothing (it is acknowledged).
    _apply(engine, k="decide", tx=TX, commit=True)
    assert engine.runtime.store.state(account) == ()


def test_a_part_whose_reads_changed_votes_no() -> None:
    """Serializable validation on a participant: the account changed after the part read
    it (a direct deposit committed meanwhile), so the part cannot commit."""
    engine = _engine()
    account = _apply(engine, k="client_create", behavior="Account", controller=None).id
    _joined_deposit(engine, account, 30, TX)
    assert _apply(engine, k="client_call", target=account, input=("deposit", 1)) == Just(1)
    vote = _apply(engine, k="prepare", tx=TX).reply
    assert vote["ok"] is False
    assert vote["error"] == f"node beta: obj:{account} changed after the transaction read it"
    assert not engine.branches and engine.runtime.store.state(account) == (1,)
    unknown = _apply(engine, k="prepare", tx=TX + 1).reply
    assert unknown["ok"] is False and "holds no part of it" in unknown["error"]


def test_a_node_without_a_log_votes_no_only_for_a_part_that_changes_something() -> None:
    engine = _engine()
    engine.volatile = "no log here"
    account = _apply(engine, k="client_create", behavior="Account", controller=None).id
    _apply(
        engine, k="call", target=account, input=("balance",), sender=0, duct=[["alpha", 0, 1]],
        tx=TX, coordinator="alpha",
    )  # fmt: skip
    assert _apply(engine, k="prepare", tx=TX).reply["read_only"] is True
    _joined_deposit(engine, account, 5, TX + 1)
    vote = _apply(engine, k="prepare", tx=TX + 1).reply
    assert (vote["ok"], vote["error"]) == (False, "node beta: no log here")


def test_the_coordinator_answers_what_became_of_its_transactions() -> None:
    engine = _engine("alpha", 1)
    engine.outcomes[TX] = {"beta"}
    assert engine.outcome(TX) == "commit"
    _apply(engine, k="acked", tx=TX, machine="beta")
    assert engine.outcomes == {} and engine.outcome(TX) == "abort"  # presumed abort


# ----------------------------------------------------------------------------- isolation

ISOLATION = compile_source(
    f"""
    behavior Wallet {{
      field balance = 100
      on ["withdraw", amount] {{
        atomic {{
          let seen = balance
          call!(obj:{1 << 48}, ["ping"])  // waits on another node, inside the transaction
          if amount > seen {{ fail "insufficient funds" }}
          balance = seen - amount
          return balance
        }} else (err) {{ return ["refused", err] }}
      }}
      on ["relay"] {{ return call!(obj:{1 << 48}, ["ping"]) }}
      on ["relay_then_fail"] {{ call!(obj:{1 << 48}, ["ping"]); fail "after" }}
      on ["careless", m] {{
        atomic {{ let r = call(self, [m]); balance = 1; return r }}
        else (err) {{ return ["refused", err] }}
      }}
    }}
    """,
    "wallet.avm",
)


def test_two_withdrawals_waiting_on_a_remote_call_cannot_both_commit() -> None:
    """The issue's lost update: two withdrawals of 60 from 100 both read 100 while parked.
    The first to commit changes the balance; the other fails validation (its read is
    stale) instead of committing a second 60 from the same 100."""
    rt = Runtime(ISOLATION, RuntimeOptions(jit="off", machine="here"), network=Far())
    wallet = rt.ids.object_id()
    rt.store.install(wallet, _record(rt))
    first = rt.start_call(wallet, ("withdraw", 60), 5, 900, None)
    second = rt.start_call(wallet, ("withdraw", 60), 5, 901, None)
    assert type(first) is Parked and type(second) is Parked
    done = rt.resume(second.run, "pong")
    assert type(done) is Parked and type(done.request) is Prepare  # far joined: 2PC
    done = rt.resume(done.run, Decision(True, writers=frozenset()))
    assert type(done) is Done and done.value == 40
    late = rt.resume(first.run, "pong")
    assert type(late) is Done and late.value[0] == "refused"  # type: ignore[index]
    assert (
        late.value[1]
        == f"transaction conflict: tx:0: obj:{wallet} changed after the transaction read it"
    )  # type: ignore[index]
    assert rt.store.state(wallet) == (40,)
    assert rt.decided[-1] == (0, False, frozenset({"far"}))  # far's part is rolled back


def _record(rt: Runtime) -> ObjectRecord:
    return ObjectRecord("Wallet", rt.registry.code_hash("Wallet"), "here", None, None)


def test_a_failed_vote_rolls_the_commit_back_with_the_reason() -> None:
    rt = Runtime(ISOLATION, RuntimeOptions(jit="off", machine="here"), network=Far())
    wallet = rt.ids.object_id()
    rt.store.install(wallet, _record(rt))
    parked = rt.start_call(wallet, ("withdraw", 10), 5, 900, None)
    committing = rt.resume(parked.run, "pong")
    assert rt.store.locks == {wallet: 0}  # locked while the votes come in
    refused = rt.resume(committing.run, Decision(False, "node far: busy", asked=frozenset({"far"})))
    assert type(refused) is Done
    assert refused.value == ("refused", "transaction conflict: tx:0: node far: busy")
    assert rt.store.state(wallet) == () and not rt.store.locks
    assert rt.decided == [(0, False, frozenset({"far"}))]


@pytest.mark.parametrize(
    ("method", "answer", "reason"),
    [
        ("relay", "no answer", "got no answer, so what it changed there is unknown"),
        ("relay_then_fail", "pong", "a call that failed had changed objects on another node"),
    ],
    ids=["no answer", "caller failed"],
)
def test_a_transaction_cannot_commit_what_it_cannot_undo_elsewhere(
    method: str, answer: str, reason: str
) -> None:
    """A remote call that got no answer may have changed the other node, or not; one whose
    caller failed afterwards cannot be undone there alone. Either way the program went on
    (its callee failed, `call` answered nothing), and the commit refuses, saying why."""
    rt = Runtime(ISOLATION, RuntimeOptions(jit="off", machine="here"), network=Far())
    wallet = rt.ids.object_id()
    rt.store.install(wallet, _record(rt))
    parked = rt.start_call(wallet, ("careless", method), 5, 900, None)
    assert type(parked) is Parked
    got: Any = answer
    if answer == "no answer":
        got = NoAnswer(ErrorKind.MACHINE_UNREACHABLE, machine="far (timed out)")
    refused = rt.resume(parked.run, got)
    assert type(refused) is Done and refused.value[0] == "refused"  # type: ignore[index]
    assert reason in refused.value[1]  # type: ignore[index]
    assert rt.store.state(wallet) == () and not rt.store.locks
    assert rt.decided == [(0, False, frozenset({"far"}))]
