"""Real `avm node` processes for tests and benchmarks: start, wait until ready, stop, clean up.

A node is a child process listening on 127.0.0.1. By default it binds port 0 and the OS
picks a free port, which the node reports in its ready line, so two tests can never race
for a port; a restart reuses the node's port and tries again while the old socket lingers.
The node's stdout is drained by a thread (the ready line is the first thing it prints);
its stderr goes to a file that failure messages quote. `Nodes` kills every process it
started in `close`, whatever the test did.

`Session` is a client connection with its own event loop, for code that makes many calls
(spawning `avm call` per call would measure process start-up, not the node); `call_many`
pipelines calls on it, so a test can feed a node tens of thousands of events quickly.
"""

from __future__ import annotations

import asyncio
import os
import queue
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

from avm_vm.format.bytecode import encode
from avm_vm.node.auth import Tls
from avm_vm.node.client import Client, ClientError
from avm_vm.node.messages import message
from avm_vm.node.wire import WireError
from avm_vm.values import Value
from avmc.compiler import compile_source

HOST = "127.0.0.1"
# The `avm` command as a child process, without relying on a script on PATH.
AVM = (sys.executable, "-c", "from avm_vm.cli import main; main()")
READY = re.compile(r"avm node (\S+) listening on (\S+):(\d+)")
START_TIMEOUT = 30.0  # seconds for a node to print its ready line (two loaded cores are slow)
STOP_TIMEOUT = 15.0  # seconds for a node to exit after a signal
CLI_TIMEOUT = 30.0  # seconds any one `avm call/create/status` may take
BIND_ATTEMPTS = 20  # a restart on the old port: tries while the port is still taken
BIND_RETRY_DELAY = 0.25
PIPELINE_WINDOW = 256  # calls a pipelining client keeps unanswered at once


class NodeStartError(RuntimeError):
    """A node did not come up; the message holds its exit status and stderr."""


def compile_tape(source: str | Path, directory: Path, name: str) -> Path:
    """``source`` (text, or an `.avm` file) compiled with avmc into ``directory/name.tape``."""
    if isinstance(source, Path):
        source, filename = source.read_text(encoding="utf-8"), str(source)
    else:
        filename = f"{name}.avm"
    path = directory / f"{name}.tape"
    path.write_bytes(encode(compile_source(source, filename)))
    return path


def avm(*args: str, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run one `avm` command to completion and capture its output as text."""
    return subprocess.run(
        [*AVM, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


class Node:
    """One running `avm node` process."""

    def __init__(
        self, name: str, args: list[str], stderr_path: Path, env: Mapping[str, str] = {}
    ) -> None:
        self.name = name
        self.args = args  # everything after `--listen HOST:PORT`, so a restart repeats it
        # Added to the parent's environment at each launch; clear it to restart without.
        self.env = dict(env)
        self.port = 0  # known once the node is ready
        self.stderr_path = stderr_path
        self.process: subprocess.Popen[str] | None = None
        self.lines: queue.Queue[str | None] = queue.Queue()

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def launch(self, port: int) -> None:
        """Start the process on ``port`` (0: any) and wait for its ready line."""
        self.lines = queue.Queue()
        command = [*AVM, "node", "--name", self.name, "--listen", f"{HOST}:{port}", *self.args]
        with self.stderr_path.open("a", encoding="utf-8") as stderr:
            stderr.write(f"=== {' '.join(command[3:])}\n")
            stderr.flush()
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env={**os.environ, **self.env} if self.env else None,
            )
        threading.Thread(target=self._drain, args=(self.process, self.lines), daemon=True).start()
        self._wait_ready(port)

    @staticmethod
    def _drain(process: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
        """Read stdout to the end so the node never blocks on a full pipe."""
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    def _wait_ready(self, port: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                self.kill()
                raise NodeStartError(
                    f"node {self.name} printed no ready line within {START_TIMEOUT:g} s\n"
                    f"{self.log()}"
                ) from None
            if line is None:
                status = self.wait(STOP_TIMEOUT)
                raise NodeStartError(
                    f"node {self.name} exited with status {status} before it was ready\n"
                    f"{self.log()}"
                )
            match = READY.fullmatch(line.strip())
            if match is None or match.group(1) != self.name:
                raise NodeStartError(f"node {self.name} printed {line!r}, not its ready line")
            if port and int(match.group(3)) != port:
                raise NodeStartError(f"node {self.name} listens on {match.group(3)}, not {port}")
            self.port = int(match.group(3))
            return

    def log(self) -> str:
        """What the node wrote to stderr so far (all its runs)."""
        try:
            text = self.stderr_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = ""
        return f"--- stderr of node {self.name} ---\n{text}"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait(self, timeout: float) -> int | None:
        """The exit status, or None while the node still runs at ``timeout``."""
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """SIGKILL: the node gets no chance to say goodbye to its peers."""
        if self.alive():
            assert self.process is not None
            self.process.kill()
        self.wait(STOP_TIMEOUT)

    def terminate(self) -> int | None:
        """SIGTERM and the exit status, or None when the node still runs after the bound."""
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)
        return self.wait(STOP_TIMEOUT)


class Nodes:
    """The nodes of one test or benchmark; ``close`` kills every one of them."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[Node] = []

    def start(
        self,
        name: str,
        tapes: Iterable[Path],
        *,
        peers: Mapping[str, Node] = {},
        secret_file: Path | None = None,
        options: Sequence[str] = (),
        label: str | None = None,
        certs: Path | None = None,
        env: Mapping[str, str] = {},
    ) -> Node:
        """Start node ``name`` on a port the OS picks and wait until it is ready. ``label``
        names its stderr file when two nodes share a name; ``certs``, a directory made by
        `avm certs init`, gives it mutual TLS with its certificate ``NAME.crt``; ``env``
        adds variables to its environment (`Node.env`, kept for restarts)."""
        args: list[str] = []
        for peer, node in peers.items():
            args += ["--peer", f"{peer}={node.address}"]
        for tape in tapes:
            args += ["--load", str(tape)]
        if secret_file is not None:
            args += ["--secret-file", str(secret_file)]
        if certs is not None:
            args += tls_args(certs, name)
        args += options
        node = Node(name, args, self.directory / f"node-{label or name}.stderr", env)
        self.started.append(node)
        node.launch(0)
        return node

    def restart(self, node: Node) -> Node:
        """The node, stopped if it runs, started again with the same name, port and options."""
        node.kill()
        for attempt in range(BIND_ATTEMPTS):
            try:
                node.launch(node.port)
                return node
            except NodeStartError as error:
                if "in use" not in str(error) or attempt + 1 == BIND_ATTEMPTS:
                    raise
                time.sleep(BIND_RETRY_DELAY)
        raise AssertionError("unreachable")

    def close(self) -> None:
        for node in self.started:
            with suppress(OSError):
                node.kill()


class Session:
    """A `Client` connection to a node, driven synchronously on its own event loop."""

    def __init__(
        self,
        node: Node,
        secret: bytes | None = None,
        timeout: float = 10.0,
        tls: Tls | None = None,
    ) -> None:
        self.timeout = timeout
        self.runner = asyncio.Runner()
        try:
            self.client = self.runner.run(Client.connect(HOST, node.port, secret, timeout, tls))
        except BaseException:
            self.runner.close()
            raise

    def call(self, target: int, value: Value) -> Value:
        return self.runner.run(self.client.call(target, value, self.timeout))

    def create(self, behavior: str) -> int:
        return self.runner.run(self.client.create(behavior, None, self.timeout))

    def status(self) -> dict[str, Any]:
        return self.runner.run(self.client.status(self.timeout))

    def state_hash(self) -> str:
        """The hash of the node's state (a durable node's objects, code, counters)."""
        return self.runner.run(self.client.state_hash(self.timeout))[0]

    def events(self) -> int:
        """How many events the node has applied (a durable node: logged)."""
        return self.runner.run(self.client.state_hash(self.timeout))[1]

    def snapshot(self) -> tuple[int, str]:
        """Have a `--data` node write a snapshot: its event index and state hash."""
        return self.runner.run(self.client.snapshot(self.timeout))

    def peek(self, object_id: int) -> dict[str, Any]:
        """An object's record and state (JSON values), read without logging an event."""
        return self.runner.run(self.client.peek(object_id, self.timeout))

    def call_many(
        self, calls: Sequence[tuple[int, Value]], window: int = PIPELINE_WINDOW
    ) -> list[Value]:
        """The answers (``just v``) to ``calls``, sent without waiting for each answer."""
        return self.runner.run(_pipeline(self.client, calls, window, self.timeout))

    def close(self) -> None:
        with suppress(Exception):
            self.runner.run(self.client.close())
        self.runner.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _pipeline(
    client: Client, calls: Sequence[tuple[int, Value]], window: int, timeout: float
) -> list[Value]:
    """Up to ``window`` calls in flight; the node answers each by its request id. Any failed
    call (or a lost connection) raises `ClientError` naming the call."""
    first = client.next_id
    client.next_id += len(calls)
    answers: list[Value | None] = [None] * len(calls)
    room = asyncio.Semaphore(window)

    async def send() -> None:
        for index, (target, value) in enumerate(calls):
            await room.acquire()
            request = message("client_call", request_id=first + index, target=target, input=value)
            await client.send(request)

    async def receive() -> None:
        for _ in calls:
            async with asyncio.timeout(timeout):
                answer = await client.receive()
            if answer is None:
                raise ClientError("the node closed the connection")
            index = answer.get("request_id", first - 1) - first
            if answer["type"] != "call_response" or not 0 <= index < len(calls):
                raise ClientError(f"unexpected answer {answer!r}")
            if not answer["ok"]:
                raise ClientError(f"call {index} failed: {answer['error_kind']}: {answer['error']}")
            answers[index] = answer["value"]
            room.release()

    try:
        await asyncio.gather(send(), receive())
    except (OSError, TimeoutError, WireError) as error:
        raise ClientError(f"pipelined calls broke off: {error!r}") from None
    return answers  # type: ignore[return-value]  # receive filled every slot


def wait_connected(
    node: Node,
    peers: Iterable[str],
    timeout: float = START_TIMEOUT,
    tls: Tls | None = None,
    secret: bytes | None = None,
) -> None:
    """Wait until ``node`` reports a live connection to each of ``peers`` (asking as the
    client ``tls`` proves, or with ``secret``, for a node that needs one)."""
    wanted = set(peers)
    deadline = time.monotonic() + timeout
    with Session(node, secret, tls=tls) as session:
        while True:
            connected = {p["name"] for p in session.status()["peers"] if p["connected"]}
            if wanted <= connected:
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"node {node.name} connected to {sorted(connected)}, not {sorted(wanted)} "
                    f"within {timeout:g} s\n{node.log()}"
                )
            time.sleep(0.05)


# ------------------------------------------------------------------------ mutual TLS


def tls_args(certs: Path, name: str) -> list[str]:
    """The `--tls-*` options for ``name``'s certificate in a directory of `avm certs init`."""
    return [
        *("--tls-cert", str(certs / f"{name}.crt"), "--tls-key", str(certs / f"{name}.key")),
        *("--tls-ca", str(certs / "ca.crt")),
    ]


def client_tls(certs: Path, name: str) -> Tls:
    """The TLS of client ``name`` (its certificate in ``certs``), for `Session`."""
    from avm_vm.node.certs import load_tls

    return load_tls(certs / f"{name}.crt", certs / f"{name}.key", certs / "ca.crt", "client")


# ------------------------------------------------------------------------ peers listing each other


def unused_port() -> int:
    """A port nothing listens on, below the range the OS hands out for port 0 and outgoing
    connections, so that no socket takes it before the node it is meant for binds it."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        port = random.randrange(max(1024, low - 10_000), low)
        with socket.socket() as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port found below {low}")


def plan(nodes: Nodes, names: Iterable[str]) -> dict[str, Node]:
    """Nodes that do not run yet but already have their ports, so that each may list any
    other as a peer whatever order they start in (nodes listing each other, a ring). Give a
    node its `args` (see `peer_args`), then start it with `Nodes.restart`."""
    planned: dict[str, Node] = {}
    ports: set[int] = set()
    for name in names:
        node = Node(name, [], nodes.directory / f"node-{name}.stderr")
        while node.port == 0 or node.port in ports:  # two nodes of a plan never share one
            node.port = unused_port()
        ports.add(node.port)
        nodes.started.append(node)
        planned[name] = node
    return planned


def peer_args(peers: Mapping[str, Node]) -> list[str]:
    """The `--peer NAME=HOST:PORT` options that list ``peers``."""
    return [arg for name, node in peers.items() for arg in ("--peer", f"{name}={node.address}")]


# --------------------------------------------------------------------------- liveness figures


def cpu_seconds(node: Node) -> float:
    """User plus system CPU time the node's process (all its threads) has used so far."""
    assert node.process is not None
    stat = Path(f"/proc/{node.process.pid}/stat").read_text(encoding="ascii")
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def cpu_shares(nodes: Sequence[Node], seconds: float) -> dict[str, float]:
    """The share of one core each node used during the next ``seconds`` of wall time, all
    over the same window (1.0: a core busy all the time, as a spinning event loop is)."""
    before = [cpu_seconds(node) for node in nodes]
    start = time.monotonic()
    time.sleep(seconds)
    after = [cpu_seconds(node) for node in nodes]
    wall = time.monotonic() - start
    spent = zip(nodes, before, after, strict=True)
    return {node.name: (end - begin) / wall for node, begin, end in spent}


def rss_mb(node: Node) -> float:
    """The node process's resident memory (VmRSS), in MB."""
    assert node.process is not None
    for line in Path(f"/proc/{node.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS line")


def timed_status(node: Node, timeout: float = CLI_TIMEOUT) -> tuple[dict[str, Any], float]:
    """The node's status and the seconds it took, connection and handshake included (as
    for `avm status`); `ClientError` when no answer comes within ``timeout``."""
    start = time.monotonic()
    with Session(node, timeout=timeout) as session:
        status = session.status()
    return status, time.monotonic() - start


# What a node logs when its own code failed: it catches the exception, logs it and goes on.
# A log line's message, after the stamp of the text format (`TIME LEVEL LOGGER: `).
_MESSAGE = re.compile(r"(?:\S+Z [A-Z]+ [\w.]+: )?(.*)")
OWN_ERRORS = ("error handling ", "internal error", "error cleaning up")


def own_errors(log: str) -> list[str]:
    """The lines of a node's log (`Node.log`) that report a failure of its own code."""
    return [
        line
        for line in log.splitlines()
        if _MESSAGE.match(line).group(1).startswith(OWN_ERRORS)  # type: ignore[union-attr]
    ]


# --------------------------------------------------------------------------- transactions


def wait_settled(nodes: Sequence[Node], timeout: float = 30.0) -> None:
    """Wait until no node holds any part of a transaction across nodes: its status counts
    (`transactions`: parts, prepared, locked objects, unacknowledged decisions) are all 0.
    A node that cannot answer yet (restarting, busy) is asked again until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        seen: dict[str, Any] = {}
        for node in nodes:
            try:
                with Session(node, timeout=max(deadline - time.monotonic(), 1.0)) as session:
                    status = session.status()
                # A busy node answers its last known status, which may be old or empty.
                seen[node.name] = "busy" if status.get("busy") else status["transactions"]
            except (ClientError, OSError, TimeoutError, WireError) as error:
                seen[node.name] = repr(error)
        if all(isinstance(counts, dict) and not any(counts.values()) for counts in seen.values()):
            return
        if time.monotonic() > deadline:
            logs = "\n".join(node.log() for node in nodes)
            raise AssertionError(f"transactions not settled within {timeout:g} s: {seen}\n{logs}")
        time.sleep(0.1)


REPLAYED = re.compile(r"match; state hash ([0-9a-f]{64})")


def replayed_hash(data: Path, timeout: float = 120.0) -> str:
    """The state hash `avm replay DATA --from-start` reaches (asserting it succeeded)."""
    result = avm("replay", str(data), "--from-start", timeout=timeout)
    assert result.returncode == 0, f"avm replay {data}:\n{result.stdout}{result.stderr}"
    match = REPLAYED.search(result.stdout)
    assert match is not None, f"no state hash in the output of avm replay:\n{result.stdout}"
    return match.group(1)
