"""`avm node --http` and `--log-format` on real node processes (docs/observability.md):
/health, /metrics in Prometheus' text format, the /events stream of trace entries (failures
with their reasons), a subscriber that never reads, the token, bad requests, and the log.

Two nodes share the module (alpha serves HTTP, beta holds an account alpha's bank calls), so
counters are compared before and after each test's own calls, never against fixed totals.
"""

from __future__ import annotations

import io
import json
import logging
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from node_harness import HOST, Node, Nodes, Session, avm, compile_tape, wait_connected

from avm_vm.node.logs import LOG_FORMATS, SummaryHandler
from avm_vm.values import NOTHING, Just, ObjectRef

BANK = Path(__file__).parents[1] / "examples" / "bank.avm"
SERVING = re.compile(r"serving http on http://127\.0\.0\.1:(\d+)/")
WAIT = 30.0  # seconds anything a test waits for may take on two loaded cores
# A Prometheus text sample: name, optional labels, value (the format's grammar, simplified).
SAMPLE = re.compile(
    r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_]+="[^"]*"(?:,[a-zA-Z_]+="[^"]*")*\})? (\S+)'
)
ENTRY_KEYS = {"timestamp", "event_type", "executing_controller", "duct", "reverted"}


def http_port(node: Node) -> int:
    """The port the node's HTTP side reported in its log (it listens on port 0: any)."""
    found = SERVING.findall(node.log())
    assert found, f"node {node.name} logged no http address\n{node.log()}"
    return int(found[-1])


def get(port: int, path: str, token: str | None = None, method: str = "GET") -> tuple[int, str]:
    request = urllib.request.Request(f"http://{HOST}:{port}{path}", method=method)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=WAIT) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def metrics(port: int) -> dict[str, float]:
    """/metrics parsed: every line a comment or a sample; samples by name and labels."""
    status, text = get(port, "/metrics")
    assert status == 200
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        match = SAMPLE.fullmatch(line)
        assert match, f"not a Prometheus sample: {line!r}"
        samples[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return samples


class EventStream:
    """A GET /events connection read on a thread: the JSON of each `data:` line."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=WAIT)
        self.sock.sendall(f"GET /events HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        self.entries: list[dict[str, Any]] = []
        self.head = b""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buffer = b""
        try:
            while chunk := self.sock.recv(65536):
                buffer += chunk
                if not self.head and b"\r\n\r\n" in buffer:
                    self.head, buffer = buffer.split(b"\r\n\r\n", 1)
                *lines, buffer = buffer.split(b"\n")
                for line in lines:  # chunked framing lines are not `data:` lines
                    if line.startswith(b"data: "):
                        self.entries.append(json.loads(line[6:]))
        except OSError:
            pass

    def wait_for(self, test: Any, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            for entry in list(self.entries):
                if test(entry):
                    return entry
            time.sleep(0.05)
        raise AssertionError(f"no {what} in the event stream: {self.entries[-20:]}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """alpha (with --http on any port, JSON logs) and beta, connected, bank.avm loaded."""
    directory = tmp_path_factory.mktemp("http")
    tape = compile_tape(BANK, directory, "bank")
    nodes = Nodes(directory)
    try:
        # Without --data, a transfer across the two nodes commits only if both accept the
        # risk of a crash between vote and decision (docs/transactions.md).
        beta = nodes.start("beta", [tape], options=["--volatile-commit"])
        options = ["--http", "127.0.0.1:0", "--log-format", "json", "--volatile-commit"]
        alpha = nodes.start("alpha", [tape], peers={"beta": beta}, options=options)
        wait_connected(alpha, ["beta"])
        with Session(alpha) as at_alpha, Session(beta) as at_beta:
            mine, theirs = at_alpha.create("Account"), at_beta.create("Account")
            bank = at_alpha.create("Bank")
            at_alpha.call(mine, ("deposit", 100))
        yield {"alpha": alpha, "beta": beta, "port": http_port(alpha), "mine": mine,
               "theirs": theirs, "bank": bank, "nodes": nodes}  # fmt: skip
    finally:
        nodes.close()
        for node in nodes.started:
            print(node.log())


def test_health(cluster: dict[str, Any]) -> None:
    status, text = get(cluster["port"], "/health")
    assert status == 200
    health = json.loads(text)
    assert health["name"] == "alpha" and health["peers"] == {"beta": "up"}
    assert health["events_applied"] > 0 and health["parked_runs"] == 0
    assert health["uptime_seconds"] > 0


def test_metrics_count_calls_and_events_stream_them(cluster: dict[str, Any]) -> None:
    port, mine, theirs, bank = (cluster[key] for key in ("port", "mine", "theirs", "bank"))
    before = metrics(port)
    for name in (
        'avm_calls_total{outcome="ok"}',
        'avm_calls_total{outcome="failed"}',
        'avm_calls_total{outcome="error"}',
        'avm_call_latency_seconds_bucket{le="+Inf"}',
        "avm_call_latency_seconds_sum",
        "avm_remote_calls_total",
        "avm_bytes_in_total",
        "avm_bytes_out_total",
        "avm_events_applied_total",
        "avm_fsync_seconds_count",
        "avm_parked_runs",
        "avm_peers_up",
    ):
        assert name in before, name
    assert before["avm_peers_up"] == 1
    stream = EventStream(port)
    try:
        with Session(cluster["alpha"]) as session:
            assert session.call(bank, ("transfer", ObjectRef(mine), ObjectRef(theirs), 10)) == Just(
                ("done", 10)
            )
            refused = session.call(bank, ("transfer", ObjectRef(theirs), ObjectRef(mine), 500))
            assert refused == Just(("refused", 500, "insufficient funds"))
            assert session.call(mine, ("withdraw", 1000)) == NOTHING
        # The failed withdraw on beta, as alpha's bank saw it: its reason and its duct.
        remote = stream.wait_for(
            lambda e: (
                e["event_type"].get("ObjectCalled", {}).get("id") == theirs
                and "failure" in e["event_type"]["ObjectCalled"]
            ),
            "failed remote withdraw",
        )
        failure = remote["event_type"]["ObjectCalled"]["failure"]
        assert failure["kind"] == "Failed" and failure["message"] == "insufficient funds"
        assert failure["location"].startswith("bank.avm:")
        assert [link[0] for link in remote["duct"]] == [bank, theirs]
        assert set(remote) == ENTRY_KEYS
        local = stream.wait_for(
            lambda e: (
                e["event_type"].get("ObjectCalled", {}).get("input")
                == {"List": [{"Str": "withdraw"}, {"Nat": 1000}]}
            ),
            "failed local withdraw",
        )
        assert local["event_type"]["ObjectCalled"]["failure"]["message"] == "insufficient funds"
        stream.wait_for(lambda e: "TransactionAborted" in e["event_type"], "aborted transaction")
    finally:
        stream.close()
    after = metrics(port)
    grew = lambda name, by: after[name] - before[name] >= by  # noqa: E731
    assert grew('avm_calls_total{outcome="ok"}', 2)
    assert grew('avm_calls_total{outcome="failed"}', 1)
    assert grew("avm_call_latency_seconds_count", 3)
    assert grew("avm_remote_calls_total", 2)  # the deposit and the refused withdraw on beta
    assert grew("avm_bytes_in_total", 1)
    assert grew("avm_bytes_out_total", 1)
    assert grew("avm_events_applied_total", 3)
    assert grew("avm_trace_entries_total", 6)


def test_a_stream_opened_late_starts_with_the_last_entries(cluster: dict[str, Any]) -> None:
    """Entries made while no stream is open are kept (unrendered) for the next one."""
    mine = cluster["mine"]
    with Session(cluster["alpha"]) as session:
        session.call(mine, ("deposit", 4321))  # no stream is open
    stream = EventStream(cluster["port"])
    try:
        stream.wait_for(
            lambda e: (
                e["event_type"].get("ObjectCalled", {}).get("input")
                == {"List": [{"Str": "deposit"}, {"Nat": 4321}]}
            ),
            "the deposit made before the stream opened",
        )
    finally:
        stream.close()


def dead_subscriber(port: int) -> socket.socket:
    """A GET /events connection that will never read, on a tiny receive buffer."""
    dead = socket.socket()
    dead.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    dead.settimeout(WAIT)
    dead.connect((HOST, port))
    dead.sendall(f"GET /events HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
    return dead


def flood_until_dropped(cluster: dict[str, Any]) -> None:
    """Calls until the node counts entries dropped for a slow subscriber; every call must be
    answered (a stalled node would time the session out)."""
    port, mine = cluster["port"], cluster["mine"]
    before = metrics(port)["avm_events_dropped_total"]
    with Session(cluster["alpha"], timeout=WAIT) as session:
        for _ in range(4):
            answers = session.call_many([(mine, ("balance",))] * 5000)
            assert len(answers) == 5000
            if metrics(port)["avm_events_dropped_total"] > before:
                return
    raise AssertionError("20,000 calls and no entry dropped for the subscriber that never reads")


def test_a_subscriber_that_never_reads_does_not_stall_calls(cluster: dict[str, Any]) -> None:
    """Its entries pile up, then drop and are counted, while calls are answered as usual."""
    dead = dead_subscriber(cluster["port"])
    try:
        flood_until_dropped(cluster)
        assert get(cluster["port"], "/health")[0] == 200
    finally:
        dead.close()


@pytest.mark.slow
def test_a_subscriber_that_never_reads_is_disconnected(cluster: dict[str, Any]) -> None:
    """Within its write timeout (10 s) of its buffers filling up, the stream is closed."""
    port = cluster["port"]
    dead = dead_subscriber(port)
    try:
        flood_until_dropped(cluster)
        deadline = time.monotonic() + WAIT + 10
        while metrics(port)["avm_event_subscribers"] > 0:
            assert time.monotonic() < deadline, "the dead subscriber is still connected"
            time.sleep(0.5)
        dead.settimeout(WAIT)
        while dead.recv(65536):  # what the node had sent, then the end of the stream
            pass
    finally:
        dead.close()


def test_bad_requests_get_clean_answers_and_the_node_keeps_serving(
    cluster: dict[str, Any],
) -> None:
    port = cluster["port"]
    assert get(port, "/no-such-page")[0] == 404
    assert get(port, "/health", method="POST")[0] == 405
    for raw in (b"NONSENSE\r\n\r\n", b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n"):
        with socket.create_connection((HOST, port), timeout=WAIT) as sock:
            sock.sendall(raw)
            answer = sock.recv(4096)
        assert answer.split(b" ", 2)[1] == b"400", answer
    status, text = get(port, "/objects")
    assert status == 200
    shown = json.loads(text)
    accounts = {o["id"]: o for o in shown["objects"] if o["behavior"] == "Account"}
    assert set(accounts[cluster["mine"]]["state"]) == {"balance"}
    assert get(port, "/health")[0] == 200


def log_records(node: Node) -> list[dict[str, Any]]:
    """The node's JSON log records (the harness's own `---` and `===` lines aside)."""
    lines = node.log().splitlines()
    return [json.loads(line) for line in lines if line and not line.startswith(("---", "==="))]


def test_json_log_has_each_failure_once_with_reason_and_duct(cluster: dict[str, Any]) -> None:
    alpha, beta, mine, theirs, bank = (
        cluster[key] for key in ("alpha", "beta", "mine", "theirs", "bank")
    )
    # Repeats of one failure within 10 s are summed up in one line (a flood of failing
    # calls must not flood the log), so this test's failure is one no other test makes.
    failures = lambda node: [r for r in log_records(node) if "reason" in r]  # noqa: E731
    before = len(failures(alpha))
    with Session(alpha) as session:
        assert session.call(mine, ("no such method",)) == NOTHING
    deadline = time.monotonic() + WAIT
    while len(failures(alpha)) == before:
        assert time.monotonic() < deadline, alpha.log()
        time.sleep(0.1)
    time.sleep(0.5)  # a second record for the same failure would come now
    records = log_records(alpha)
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record), record
    assert any(r["message"].startswith("peer beta connected") for r in records)
    assert not [r for r in records if r["level"] in ("error", "critical")], records
    new = failures(alpha)[before:]
    assert len(new) == 1, new
    assert new[0]["level"] == "warning" and "no such method" in new[0]["reason"]
    assert new[0]["location"].startswith("bank.avm:") and new[0]["kind"], new[0]
    # beta (text log) served alpha's bank a withdraw that failed: its run is logged with
    # the duct it ran in, alpha's bank first (named by its machine: beta does not run it).
    with Session(alpha) as session:
        session.call(bank, ("transfer", ObjectRef(theirs), ObjectRef(mine), 10**6))
    deadline = time.monotonic() + WAIT
    while f"obj:{bank} @alpha" not in beta.log():
        assert time.monotonic() < deadline, beta.log()
        time.sleep(0.1)
    line = next(x for x in beta.log().splitlines() if f"obj:{bank} @alpha" in x)
    assert re.fullmatch(
        rf"\S+Z WARNING avm\.node: run \d+ failed: Failed: insufficient funds at bank\.avm:\d+:\d+ "
        rf"\(duct obj:{bank} @alpha#\d+ > obj:{theirs} Account#\d+\)",
        line,
    ), line


def test_the_token_is_required_and_checked(tmp_path: Path, nodes: Nodes) -> None:
    tape = compile_tape(BANK, tmp_path, "bank")
    token = "correct horse battery staple"
    node = nodes.start("gamma", [tape], options=["--http", "127.0.0.1:0", "--http-token", token])
    port = http_port(node)
    assert get(port, "/health")[0] == 401
    assert get(port, "/health", token="wrong")[0] == 401
    assert get(port, "/metrics", token="wrong")[0] == 401
    assert get(port, "/events", token="")[0] == 401
    status, text = get(port, "/health", token=token)
    assert status == 200 and json.loads(text)["name"] == "gamma"
    assert get(port, "/", token=None)[0] == 200  # the page itself holds no data


def test_http_beyond_loopback_needs_a_token(tmp_path: Path) -> None:
    """Refused before anything listens."""
    tape = compile_tape(BANK, tmp_path, "bank")
    result = avm("node", "--name", "delta", "--listen", f"{HOST}:0", "--load", str(tape),
                 "--http", "0.0.0.0:0")  # fmt: skip
    assert result.returncode == 1
    assert "needs --http-token" in result.stderr
    assert result.stdout == ""


def test_json_summaries_of_repeated_lines_are_json_too() -> None:
    """The handler's summary of repeats is a record like any other: JSON in JSON mode."""
    stream = io.StringIO()
    handler = SummaryHandler(stream, window=60.0)
    handler.setFormatter(LOG_FORMATS["json"]())
    log = logging.getLogger("avm.test.json")
    log.addHandler(handler)
    log.propagate = False
    try:
        for run in range(5):
            log.warning("run %d failed: boom\nforged line", run, extra={"run": run})
        handler.summarize(final=True)
    finally:
        log.removeHandler(handler)
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [r["message"] for r in records] == [
        "run 0 failed: boom\nforged line",
        "run 0 failed: boom\nforged line (and 4 more like it in 0 s)",
    ]
    assert records[0]["run"] == 0 and records[0]["level"] == "warning"
    assert records[1]["level"] == "warning" and records[1]["logger"] == "avm.test.json"
