"""Durable nodes (`avm node --data DIR`): the cost of logging, replaying and restarting.

    python bench/durable_bench.py                # 80,000 pipelined calls per node, in 8 rounds
    python bench/durable_bench.py --calls 5000 --restart-events 10000   # a quick look

Every event is the same client call: ``["add", n]`` on one of 64 tally objects. Figures:

- logging: calls per second a client gets from a node with --data against the same node
  without --data; pipelined (256 calls in flight) and one call at a time. The two nodes
  alternate in rounds, each round's two pipelined runs back to back (which goes first
  alternates too), so a busy machine or disk slows both alike. The line
  ``durable/plain: R`` is the median over the rounds of the pipelined ratio: it is near 1
  only if the node shares one fsync among many events. Also the CPU time (user + system,
  all threads, from /proc) each node process spent per pipelined call.
- recording in process: events per second through `Recorder.record` with no log, with an
  fsync per event (``sync_each``) and with a flush per 256 events (group commit): what the
  data layer allows, without the network. Once more with a flush per 256 events in a store
  of 100,000 objects, with the node's snapshot and checkpoint intervals, over as many
  events: capturing the state for those costs in proportion to the store.
- pauses with 100,000 objects: the seconds the loop stops for a checkpoint (the state's
  hash) and for a snapshot (capturing the state; the VM thread writes it), with the whole
  state printed afresh (as before `StateTexts`) and as the node does it, reprinting only
  the objects and states that changed since the last one (here: the 64 tallies).
- restart in process: seconds `open_data` takes on logs of 10,000 and 100,000 events with a
  snapshot 500 events before the end, with log segments (as written now), with the same
  events in one ``events.log`` (as before segments: the whole file is read), and with no
  snapshot (the whole log is replayed). Median of a few opens.
- replaying: events per second of `avm replay DIR --from-start` on the log the logging runs
  wrote (the whole process, start-up included), and of the replay function in this process.
- restarting: seconds from launching the node to its ready line, on the same log, from its
  latest snapshot and from the start of the log (a copy of DIR without its snapshots),
  against a node with no data directory. Median of a few launches.
"""

from __future__ import annotations

import argparse
import base64
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from avm_vm.node.client import ClientError
from avm_vm.node.directory import Directory
from avm_vm.node.durable import Meta, Recorder, describe, open_data, replay, settle_meta
from avm_vm.node.engine import Engine
from avm_vm.node.eventlog import LEGACY_NAME, MAGIC, segments
from avm_vm.node.state import capture, full_hash
from avm_vm.runtime.core import RuntimeOptions
from avm_vm.runtime.runs import Done
from avm_vm.values import ObjectRef

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the node-process harness the tests use
from node_harness import Node, Nodes, Session, avm, compile_tape, cpu_seconds  # noqa: E402

TALLIES = """
behavior tally {
  field total = 0
  field count = 0
  on ["add", n] { total += n; count += 1; return [total, count] }
}
"""
OBJECTS = 64
ROUNDS = 8  # alternating rounds of the logging figures (their ratio is the median's)
LAUNCHES = 5
REPLAYED = re.compile(r"replayed (\d+) events")  # what a node says it replayed at start
BATCH = 256  # events per flush in the group-commit figures (the node's batch size)
LARGE_STORE = 100_000  # objects held in the last recording figure
RECENT = 500  # events after the snapshot in the restart figures
OPENS = 3  # opens per restart figure


class Feeder:
    """One node and a client session on it, with tallies to call."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.session = Session(node, timeout=120.0)
        self.targets = [self.session.create("tally") for _ in range(OBJECTS)]
        self.next = 0

    def batch(self, count: int) -> list[tuple[int, tuple[str, int]]]:
        calls = [
            (self.targets[n % OBJECTS], ("add", n)) for n in range(self.next, self.next + count)
        ]
        self.next += count
        return calls

    def pipelined(self, count: int) -> float:
        calls = self.batch(count)
        start = time.perf_counter()
        self.session.call_many(calls)
        return time.perf_counter() - start

    def one_by_one(self, count: int) -> float:
        calls = self.batch(count)
        start = time.perf_counter()
        for target, value in calls:
            self.session.call(target, value)
        return time.perf_counter() - start


def logging_rates(
    nodes: Nodes, tape: Path, data: Path, calls: int
) -> tuple[dict[str, float], list[float], dict[str, float]]:
    """Calls per second with and without --data, pipelined and one at a time; the
    pipelined ratio of each round (the two nodes' runs of a round are back to back, in
    turn first, so a slow spell of the machine or its disk weighs on one round only); and
    each node's CPU seconds per pipelined call."""
    durable = nodes.start("bench", [tape], options=["--data", str(data), "--prefix", "7"])
    plain = nodes.start("bench", [tape], options=["--prefix", "7"], label="plain")
    feeders = {"with --data": Feeder(durable), "without --data": Feeder(plain)}
    seconds = {(name, mode): 0.0 for name in feeders for mode in ("pipelined", "one by one")}
    per_round, sequential = calls // ROUNDS, max(1, calls // (10 * ROUNDS))
    for feeder in feeders.values():  # warm-up: code paths, JIT, page cache
        feeder.pipelined(min(2_000, per_round))
    ratios = []
    cpu = dict.fromkeys(feeders, 0.0)
    for number in range(ROUNDS):
        order = list(feeders.items())
        taken = {}
        for name, feeder in order if number % 2 == 0 else reversed(order):
            before = cpu_seconds(feeder.node)
            taken[name] = feeder.pipelined(per_round)
            cpu[name] += cpu_seconds(feeder.node) - before
            seconds[name, "pipelined"] += taken[name]
        ratios.append(taken["without --data"] / taken["with --data"])
        for name, feeder in order:
            seconds[name, "one by one"] += feeder.one_by_one(sequential)
    durable_feeder = feeders["with --data"]
    durable_feeder.session.snapshot()  # the restart figures start from this one
    for feeder in feeders.values():
        feeder.session.close()
    durable.terminate()
    counts = {"pipelined": per_round * ROUNDS, "one by one": sequential * ROUNDS}
    rates = {f"{name}, {mode}": counts[mode] / s for (name, mode), s in seconds.items()}
    return rates, ratios, {name: spent / counts["pipelined"] for name, spent in cpu.items()}


def launch_seconds(
    nodes: Nodes, tape: Path, data: Path | None, keep_snapshots: bool, label: str
) -> tuple[float, int]:
    """Median seconds from launch to ready line over a few launches, each on a fresh copy
    of ``data`` (a start may write a snapshot of its own); and the events the last launch
    replayed, as the node reports it."""
    samples, replayed = [], 0
    for n in range(LAUNCHES):
        options = ["--prefix", "7"]
        if data is not None:
            copy = nodes.directory / f"{label}-{n}"
            shutil.copytree(data, copy)
            if not keep_snapshots:
                for path in copy.glob("snapshot-*"):
                    path.unlink()
            options = ["--data", str(copy)]
        start = time.perf_counter()
        node = nodes.start("bench", [tape], options=options, label=f"{label}-{n}")
        samples.append(time.perf_counter() - start)
        node.terminate()
        found = REPLAYED.findall(node.log())
        replayed = int(found[-1]) if found else 0
    return statistics.median(samples), replayed


# --------------------------------------------------------------------------- in process


def recorder_on(data: Path | None, tape: bytes) -> tuple[Recorder, list[int]]:
    """A recorder (logging into ``data``, or not at all) with the tallies created."""
    meta = Meta("bench", 7, RuntimeOptions.fuel)
    if data is None:
        recorder = Recorder(Engine(meta.options(), Directory(meta.name, meta.prefix)))
    else:
        recorder = reopen(data)
        recorder.sync_each = False
    recorder.snapshot_every = 1 << 62  # snapshots only where the benchmark takes them
    recorder.record({"k": "load", "tape": base64.b64encode(tape).decode(), "upgrade": False})
    targets = []
    for _ in range(OBJECTS):
        step = recorder.record({"k": "client_create", "behavior": "tally", "controller": None})
        assert type(step.outcome) is Done and type(step.outcome.value) is ObjectRef, step
        targets.append(step.outcome.value.id)
    recorder.flush()
    return recorder, targets


def reopen(data: Path) -> Recorder:
    meta = settle_meta(data, "bench", 7, 7, RuntimeOptions.fuel)
    recorder, _ = open_data(data, meta, RuntimeOptions.jit, False, None, Directory("bench", 7))
    return recorder


def feed(recorder: Recorder, targets: list[int], count: int, batch: int) -> float:
    """Seconds to record ``count`` calls, flushing every ``batch`` (0: never; the
    recorder's ``sync_each`` decides) and once at the end."""
    start = time.perf_counter()
    for n in range(count):
        event = {
            "k": "client_call",
            "target": targets[n % OBJECTS],
            "input": {"List": [{"Str": "add"}, {"Nat": n}]},
        }
        recorder.record(event)
        if batch and n % batch == batch - 1:
            recorder.flush()
    recorder.flush()
    return time.perf_counter() - start


def recording_rates(
    tmp: Path, tape: bytes, events: int
) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """Events per second through `Recorder.record`: no log, fsync each, group commit; and
    the pauses of a store of `LARGE_STORE` objects."""
    rates = {}
    for name, data, sync_each, batch in (
        ("no log (no --data)", None, False, 0),
        ("an fsync per event (sync_each)", tmp / "rec-each", True, 0),
        (f"a flush per {BATCH} events", tmp / "rec-batch", False, BATCH),
    ):
        recorder, targets = recorder_on(data, tape)
        recorder.sync_each = sync_each
        rates[name] = events / feed(recorder, targets, events, batch)
        recorder.close()
    recorder, targets = recorder_on(tmp / "rec-large", tape)
    for n in range(LARGE_STORE):
        recorder.record({"k": "client_create", "behavior": "tally", "controller": None})
        if n % BATCH == BATCH - 1:
            recorder.flush()
    recorder.snapshot_every = Recorder.snapshot_every  # as a node takes them
    large = max(events, LARGE_STORE)
    name = f"a flush per {BATCH} events, {LARGE_STORE:,} objects"
    rates[name] = large / feed(recorder, targets, large, BATCH)
    engine, texts = recorder.engine, recorder.texts

    def paused(work: Callable[[], object]) -> float:
        """The median seconds of a few runs of ``work``, each after every tally changed."""
        samples = []
        for _ in range(OPENS):
            feed(recorder, targets, OBJECTS, 0)
            start = time.perf_counter()
            work()
            samples.append(time.perf_counter() - start)
        return statistics.median(samples)

    pauses = {
        "checkpoint (the state's hash)": (
            paused(lambda: full_hash(capture(engine))),
            paused(lambda: texts.capture(engine).full_hash()),
        ),
        "snapshot (capturing the state)": (
            paused(lambda: capture(engine)),
            paused(lambda: texts.capture(engine)),
        ),
    }
    recorder.close()
    return rates, pauses


def one_file_copy(data: Path, copy: Path) -> None:
    """``data`` as a node from before log segments kept it: the same events in one file."""
    shutil.copytree(data, copy, ignore=shutil.ignore_patterns("events-*"))
    with (copy / LEGACY_NAME).open("wb") as out:
        out.write(MAGIC)
        for _, path in segments(data):
            out.write(path.read_bytes()[len(MAGIC) :])


def open_seconds(data: Path) -> tuple[float, str]:
    """Median seconds `open_data` takes on ``data``, and the state it reaches."""
    samples, reached = [], ""
    for _ in range(OPENS):
        start = time.perf_counter()
        recorder = reopen(data)
        samples.append(time.perf_counter() - start)
        reached = full_hash(capture(recorder.engine))
        recorder.close()
    return statistics.median(samples), reached


def restart_seconds(tmp: Path, tape: bytes, events: int) -> dict[str, float]:
    """Open times on one log of ``events`` calls with a snapshot ``RECENT`` events back:
    as written, as one file, without the snapshot. All three must reach the same state."""
    data = tmp / f"restart-{events}"
    recorder, targets = recorder_on(data, tape)
    feed(recorder, targets, events - RECENT, BATCH)
    recorder.snapshot()
    feed(recorder, targets, RECENT, BATCH)
    recorder.close()
    one_file_copy(data, tmp / f"one-file-{events}")
    shutil.copytree(data, tmp / f"no-snapshot-{events}", ignore=shutil.ignore_patterns("snap*"))
    figures, states = {}, set()
    for name, directory in (
        ("log segments (now)", data),
        ("one events.log (before segments)", tmp / f"one-file-{events}"),
        ("no snapshot: the whole log replayed", tmp / f"no-snapshot-{events}"),
    ):
        figures[name], reached = open_seconds(directory)
        states.add(reached)
    if len(states) != 1:
        raise SystemExit(f"restarts of the {events:,}-event log reached different states")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=80_000, help="pipelined calls per node")
    parser.add_argument(
        "--recorded", type=int, default=10_000, help="events per in-process recording figure"
    )
    parser.add_argument(
        "--restart-events",
        type=int,
        nargs="+",
        default=[10_000, 100_000],
        help="log lengths of the in-process restart figures",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        tmp = Path(directory)
        nodes = Nodes(tmp)
        try:
            tape = compile_tape(TALLIES, tmp, "tallies")
            data = tmp / "data"
            rates, ratios, cpu = logging_rates(nodes, tape, data, args.calls)

            start = time.perf_counter()
            report = replay(data, from_start=True)
            in_process = time.perf_counter() - start
            if report.divergence is not None:
                raise SystemExit(describe(report, data))
            events = report.replayed
            start = time.perf_counter()
            result = avm("replay", str(data), "--from-start", timeout=600.0)
            command = time.perf_counter() - start
            if result.returncode != 0:
                raise SystemExit(f"avm replay failed:\n{result.stdout}{result.stderr}")

            # The same log twice: as written (with its snapshot) and without any snapshot.
            from_snapshot, after_snapshot = launch_seconds(nodes, tape, data, True, "snap")
            from_start, whole = launch_seconds(nodes, tape, data, False, "start")
            no_data, _ = launch_seconds(nodes, tape, None, False, "none")

            tape_bytes = tape.read_bytes()
            recording, pauses = recording_rates(tmp, tape_bytes, args.recorded)
            restarts = {n: restart_seconds(tmp, tape_bytes, n) for n in args.restart_events}
        except ClientError as error:
            raise SystemExit(f"durable benchmark failed: {error}") from None
        finally:
            nodes.close()

    print(
        f"durable nodes: {args.calls:,} pipelined calls per node in {ROUNDS} alternating "
        f"rounds (+ {args.calls // 10:,} one at a time);\n"
        f"  each call one event on one of {OBJECTS} tally objects (127.0.0.1, one client)\n"
    )
    logging = rates["with --data, pipelined"]
    print(f"  {'logging (client calls)':<40} {'events/s':>10} {'vs no --data':>13}")
    for name, rate in rates.items():
        base = rates[f"without --data, {name.split(', ')[1]}"]
        print(f"  {name:<40} {rate:10,.0f} {rate / base:12.2f}x")
    print(f"\n  {'node CPU per pipelined call':<40} {'us':>10} {'vs no --data':>13}")
    for name, spent in cpu.items():
        print(f"  {name:<40} {spent * 1e6:10.1f} {spent / cpu['without --data']:12.2f}x")
    title = f"replaying {events:,} events"
    print(f"\n  {title:<40} {'events/s':>10} {'vs logging':>13}")
    for name, seconds in (
        ("in process (replay())", in_process),
        ("avm replay --from-start", command),
    ):
        rate = events / seconds
        print(f"  {name:<40} {rate:10,.0f} {rate / logging:12.2f}x")
    print(f"\n  {'restart (launch to ready line)':<40} {'seconds':>10} {'vs no data':>13}")
    for name, seconds in (
        ("no data directory", no_data),
        (f"from the latest snapshot (+{after_snapshot:,} ev.)", from_snapshot),
        (f"from the start of the log ({whole:,} ev.)", from_start),
    ):
        print(f"  {name:<40} {seconds:10.3f} {seconds / no_data:12.2f}x")
    print(f"\n  restart from the log start / from the snapshot: {from_start / from_snapshot:.2f}x")

    print(f"\n  {'recording in process':<40} {'events/s':>10} {'vs no log':>13}")
    for name, rate in recording.items():
        print(f"  {name:<40} {rate:10,.0f} {rate / recording['no log (no --data)']:12.2f}x")

    title = f"pauses with {LARGE_STORE:,} objects, seconds"
    print(f"\n  {title:<40}{'whole state':>14}{'kept texts':>14}{'whole/kept':>12}")
    for name, (whole, kept) in pauses.items():
        print(f"  {name:<40}{whole:14.3f}{kept:14.3f}{whole / kept:11.1f}x")

    lengths = list(restarts)
    heading = "".join(f"{f'{n:,} ev.':>14}" for n in lengths)
    print(f"\n  restart in process (open_data, snapshot {RECENT} events back)")
    print(f"  {'seconds':<40}{heading}{'longest/shortest':>18}")
    for name in restarts[lengths[0]]:
        cells = "".join(f"{restarts[n][name]:14.3f}" for n in lengths)
        growth = restarts[lengths[-1]][name] / restarts[lengths[0]][name]
        print(f"  {name:<40}{cells}{growth:17.2f}x")

    shown = " ".join(f"{ratio:.2f}" for ratio in sorted(ratios))
    print(f"\n  pipelined --data/no --data per round, sorted: {shown}")
    print(f"\ndurable/plain: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
