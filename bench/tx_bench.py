"""Transfers across nodes (two-phase commit, docs/transactions.md) against transfers on one
node, measured in one run with real `avm node` processes.

    python bench/tx_bench.py                    # 2,000 timed transfers per workload
    python bench/tx_bench.py --transfers 300    # a quick look

examples/bank.avm, unchanged: `Bank.transfer(from, to, 1)` deposits to `to` and withdraws
from `from` in one atomic block. Nodes alpha and beta both keep `--data` (a transaction
that changes objects on two nodes needs it; the single-node workload pays the same log). The
bank is on alpha; only where the accounts live changes:

- single-node: both accounts on alpha (one node's commit, no messages between nodes);
- cross-node: `from` on alpha, `to` on beta (a remote call that joins the transaction,
  then prepare, vote, logged decision and decide between the nodes).

Each workload runs one transfer at a time (p50/p99 latency) and pipelined (up to `WINDOW`
transfers in flight on one client connection, transfers/s). In flight at once are always
transfers between different accounts (`PAIRS` pairs, used in turn), so they do not contend
and none should be refused; every answer is checked, and so are the balances at the end.
Workloads alternate in rounds, so a busy machine slows both alike; the last line compares
the two from this one run:

    tx/cross-node vs single-node: rate R, p50 P

R is the cross-node pipelined transfers/s over the single-node's (higher is better), P the
cross-node one-at-a-time p50 over the single-node's (lower is better).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from avm_vm.node.client import ClientError
from avm_vm.values import Just, ObjectRef, Value

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the node-process harness the tests use
from node_harness import Node, Nodes, Session, compile_tape, wait_connected  # noqa: E402

BANK = ROOT / "examples" / "bank.avm"
START = 10**9  # each account's balance: transfers of 1 never run it dry
WARM_UP = 100
ROUNDS = 3
WINDOW = 32  # pipelined transfers in flight
PAIRS = 2 * WINDOW  # so a transfer still in flight never shares an account with a new one
TIMEOUT = 60.0


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Workload:
    """A bank and account pairs, the transfers made between them and their answers."""

    def __init__(self, bank: int, pairs: list[tuple[int, int]]) -> None:
        self.bank = bank
        self.pairs = pairs
        self.next = 0  # the pair the next transfer uses
        self.moved: Counter[tuple[int, int]] = Counter()  # done transfers per pair
        self.refused: list[Value] = []
        self.latency: list[float] = []
        self.seconds = 0.0  # pipelined
        self.done = 0  # pipelined

    def calls(self, n: int) -> list[tuple[int, Value]]:
        made = []
        for _ in range(n):
            source, target = self.pairs[self.next % len(self.pairs)]
            self.next += 1
            made.append((self.bank, ("transfer", ObjectRef(source), ObjectRef(target), 1)))
        return made

    def count(self, call: tuple[int, Value], answer: Value) -> bool:
        """Book one answer; whether the transfer was done."""
        _, (_, source, target, _) = call  # type: ignore[misc]
        if isinstance(answer, Just) and answer.value == ("done", 1):
            self.moved[source.id, target.id] += 1
            return True
        self.refused.append(answer)
        return False

    def one_at_a_time(self, session: Session, n: int) -> list[float]:
        seconds = []
        for call in self.calls(n):
            start = time.perf_counter()
            answer = session.call(*call)
            seconds.append(time.perf_counter() - start)
            self.count(call, answer)
        return seconds

    def pipelined(self, session: Session, n: int) -> tuple[float, int]:
        calls = self.calls(n)
        start = time.perf_counter()
        answers = session.call_many(calls, WINDOW)
        seconds = time.perf_counter() - start
        return seconds, sum(
            self.count(call, answer) for call, answer in zip(calls, answers, strict=True)
        )

    def row(self, name: str) -> str:
        p50, p99 = percentile(self.latency, 0.5) * 1e3, percentile(self.latency, 0.99) * 1e3
        serial = len(self.latency) / sum(self.latency)
        rate = self.done / self.seconds
        return (
            f"  {name:<44} {rate:11,.0f} {serial:9,.0f} {p50:8.2f} {p99:8.2f} {len(self.refused):8}"
        )


def accounts(session: Session, n: int) -> list[int]:
    made = [session.create("Account") for _ in range(n)]
    for account in made:
        session.call(account, ("deposit", START))
    return made


def check_balances(workloads: list[Workload], homes: dict[int, Node]) -> str:
    """Every account holds what the done transfers imply; the line saying so."""
    expected = dict.fromkeys(homes, START)
    for workload in workloads:
        for (source, target), n in workload.moved.items():
            expected[source] -= n
            expected[target] += n
    wrong = {}
    for account, node in homes.items():
        with Session(node, timeout=TIMEOUT) as session:
            found = session.call(account, ("balance",))
        if not (isinstance(found, Just) and found.value == expected[account]):
            wrong[account] = (found, expected[account])
    if wrong:
        raise SystemExit(f"balances (found, expected) differ from the answers: {wrong}")
    return f"balances: all {len(homes)} as the answers say, total {START * len(homes):,}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transfers", type=int, default=2000, help="timed per workload")
    args = parser.parse_args()
    per_round = max(1, args.transfers // ROUNDS)

    with tempfile.TemporaryDirectory() as directory:
        nodes = Nodes(Path(directory))
        try:
            tape = compile_tape(BANK, Path(directory), "bank")
            beta = nodes.start("beta", [tape], options=["--data", f"{directory}/beta"])
            alpha = nodes.start(
                "alpha", [tape], peers={"beta": beta}, options=["--data", f"{directory}/alpha"]
            )
            wait_connected(alpha, ["beta"])
            with (
                Session(alpha, timeout=TIMEOUT) as on_alpha,
                Session(beta, timeout=TIMEOUT) as on_beta,
            ):
                bank = on_alpha.create("Bank")
                here, there = accounts(on_alpha, 3 * PAIRS), accounts(on_beta, PAIRS)
                homes = {account: alpha for account in here} | {a: beta for a in there}
                workloads = {
                    "single": Workload(
                        bank, list(zip(here[:PAIRS], here[PAIRS : 2 * PAIRS], strict=True))
                    ),
                    "cross": Workload(bank, list(zip(here[2 * PAIRS :], there, strict=True))),
                }
                for workload in workloads.values():
                    workload.one_at_a_time(on_alpha, WARM_UP)
                    workload.pipelined(on_alpha, WARM_UP)
                for _ in range(ROUNDS):
                    for workload in workloads.values():
                        workload.latency += workload.one_at_a_time(on_alpha, per_round)
                        seconds, done = workload.pipelined(on_alpha, per_round * 3)
                        workload.seconds += seconds
                        workload.done += done
            balances = check_balances(list(workloads.values()), homes)
        except ClientError as error:
            raise SystemExit(f"transaction benchmark failed: {error}") from None
        finally:
            nodes.close()

    single, cross = workloads["single"], workloads["cross"]
    print(
        "bank transfers of 1 (examples/bank.avm), bank on node alpha, both nodes with --data\n"
        f"  {per_round * ROUNDS:,} one-at-a-time and {per_round * ROUNDS * 3:,} pipelined"
        f" transfers (window {WINDOW}, {PAIRS} account pairs) per workload,\n"
        f"  in {ROUNDS} alternating rounds after {2 * WARM_UP} warm-up transfers, one client"
        " connection on 127.0.0.1\n"
    )
    header = ("workload", "pipelined/s", "serial/s", "p50 ms", "p99 ms", "refused")
    print(
        f"  {header[0]:<44} {header[1]:>11} {header[2]:>9} {header[3]:>8} {header[4]:>8} "
        f"{header[5]:>8}"
    )
    print(single.row("single-node: both accounts on alpha"))
    print(cross.row("cross-node: from on alpha, to on beta (2PC)"))
    for name, workload in workloads.items():
        for answer in workload.refused[:3]:
            print(f"  {name}: a transfer answered {answer!r}")
    print(f"  {balances}")
    rate = cross.done / cross.seconds / (single.done / single.seconds)
    p50 = percentile(cross.latency, 0.5) / percentile(single.latency, 0.5)
    print(f"\ntx/cross-node vs single-node: rate {rate:.2f}, p50 {p50:.2f}")


if __name__ == "__main__":
    main()
