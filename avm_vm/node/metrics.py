"""The node's metrics: counters the node bumps as it works, and their Prometheus text.

Plain integers and floats bumped on the event loop (or, for log writes, right after the VM
thread's write returns to it), so nothing here locks. `render` writes Prometheus' text
exposition format (version 0.0.4); the gauges (peers up, parked runs) are read from the node
when a scrape asks, so they cannot drift. No client library: a dozen metrics do not need one.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

# Bucket bounds in seconds: a local call takes microseconds, a remote one milliseconds, and a
# call waiting out a slow peer up to the call timeout (5 s by default).
LATENCY_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)
# A log write is one write and one fsync: from tens of microseconds to a slow disk's 100 ms.
FSYNC_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5)
OUTCOMES = ("ok", "failed", "error")


@dataclass
class Histogram:
    bounds: Sequence[float]
    counts: list[int] = field(default_factory=list)  # per bucket, not cumulative
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.bounds)

    def observe(self, value: float) -> None:
        self.total += value
        self.n += 1
        index = bisect_left(self.bounds, value)  # the first bucket whose bound is >= value
        if index < len(self.counts):
            self.counts[index] += 1

    def lines(self, name: str) -> Iterable[str]:
        running = 0
        for bound, count in zip(self.bounds, self.counts, strict=True):
            running += count
            yield f'{name}_bucket{{le="{bound:g}"}} {running}'
        yield f'{name}_bucket{{le="+Inf"}} {self.n}'
        yield f"{name}_sum {self.total:.9g}"
        yield f"{name}_count {self.n}"


@dataclass
class Metrics:
    """What the node counts. `answered` is called once per run requester answered."""

    calls: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    latency: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))
    log_writes: Histogram = field(default_factory=lambda: Histogram(FSYNC_BUCKETS))
    bytes_in: int = 0  # frame payloads read from peers and clients
    bytes_out: int = 0  # frames queued for peers and clients
    trace_entries: int = 0  # trace entries handed to /events streams
    events_dropped: int = 0  # entries a slow /events subscriber did not get

    def count_sent(self, size: int) -> None:
        self.bytes_out += size

    def answered(self, outcome: str, since: float) -> None:
        """A run's requester got its answer: ``outcome`` is ok, failed (the run or the
        called object failed) or error (the node could not run it)."""
        self.calls[outcome] += 1
        self.latency.observe(time.monotonic() - since)


@dataclass(frozen=True)
class Gauges:
    """What the node reads at scrape time."""

    remote_calls: int
    events_applied: int
    events_logged: int | None  # None: no data directory, nothing is logged
    parked_runs: int
    peers_up: int
    peers_known: int
    subscribers: int
    uptime: float


def render(metrics: Metrics, gauges: Gauges) -> str:
    """The Prometheus text exposition of ``metrics`` and ``gauges``, names prefixed avm_."""
    out: list[str] = []

    def family(name: str, kind: str, text: str, lines: Iterable[str]) -> None:
        out.extend((f"# HELP {name} {text}", f"# TYPE {name} {kind}", *lines))

    def one(name: str, kind: str, text: str, value: float) -> None:
        family(name, kind, text, [f"{name} {value}"])

    def histogram(name: str, text: str, histogram: Histogram) -> None:
        family(name, "histogram", text, histogram.lines(name))

    family(
        "avm_calls_total",
        "counter",
        "Runs answered (client calls and creates, peers' calls), by outcome.",
        (f'avm_calls_total{{outcome="{key}"}} {n}' for key, n in metrics.calls.items()),
    )
    histogram(
        "avm_call_latency_seconds",
        "Seconds from a request's arrival to its answer.",
        metrics.latency,
    )
    one("avm_remote_calls_total", "counter", "Calls this node sent to peers.", gauges.remote_calls)
    one("avm_bytes_in_total", "counter", "Frame bytes read from peers and clients.",
        metrics.bytes_in)  # fmt: skip
    one("avm_bytes_out_total", "counter", "Frame bytes sent to peers and clients.",
        metrics.bytes_out)  # fmt: skip
    one("avm_events_applied_total", "counter", "Events applied to the VM.", gauges.events_applied)
    if gauges.events_logged is not None:
        one("avm_events_logged_total", "counter", "Events written to the durable log.",
            gauges.events_logged)  # fmt: skip
    histogram(
        "avm_fsync_seconds",
        "Seconds per durable log write (one write and one fsync per group commit).",
        metrics.log_writes,
    )
    one("avm_parked_runs", "gauge", "Runs parked waiting for a peer.", gauges.parked_runs)
    one("avm_peers_up", "gauge", "Peer nodes connected now.", gauges.peers_up)
    one("avm_peers_known", "gauge", "Peer nodes configured or seen.", gauges.peers_known)
    one("avm_trace_entries_total", "counter", "Trace entries handed to /events streams.",
        metrics.trace_entries)  # fmt: skip
    one("avm_events_dropped_total", "counter",
        "Trace entries dropped for /events subscribers too slow to take them.",
        metrics.events_dropped)  # fmt: skip
    one("avm_event_subscribers", "gauge", "Open /events streams.", gauges.subscribers)
    one("avm_uptime_seconds", "gauge", "Seconds since the node started.", round(gauges.uptime, 3))
    return "\n".join(out) + "\n"
