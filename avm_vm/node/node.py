"""`avm node`: an asyncio server around one VM, with peers, a directory and a run scheduler.

The VM runs in one worker thread (`Engine`, a single-thread executor), one job at a time,
so the event loop keeps answering frames and pings while it computes. A run that needs
another machine parks (`avm_vm.runtime.runs`); the node sends the request, and the scheduler
starts other work meanwhile (inbound calls, client requests) as new runs. Any parked run
resumes as soon as its answer is in, in the order the answers came (each run keeps its own
undo entries; docs/semantics.md, "Nodes: parked runs"). That is what lets A→B→A re-entrant
calls complete (the reference deadlocks, spec §11.8), and pipelined remote calls flow.

Every request to a peer has a unique id (the node prefix in bits 63..48, spec §11.5 reuses
ids) and an entry in the pending map, failed on timeout and on disconnect, so nothing waits
forever. Wire details and the node's behaviour: docs/wire.md.

Every input that changes the VM is an event handed to `Recorder.record` (avm_vm.node.durable):
with `--data` it is logged durably before it is applied, and its outputs (answers, requests,
notices) leave only after both. The VM's state is then a pure function of the log
(docs/durability.md).
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from avm_vm.errors import AvmError, ErrorKind
from avm_vm.format.bytecode import encode
from avm_vm.format.program import Program
from avm_vm.node.auth import HandshakeError, Hello, Tls, handshake
from avm_vm.node.directory import JOINING_PROTOCOL, PREFIX_SHIFT, Directory
from avm_vm.node.durable import (
    RESTARTED,
    DataLock,
    Meta,
    Recorder,
    nothing_to_write,
    open_data,
    settle_meta,
)
from avm_vm.node.engine import Engine, LoadError, Step, failure_of
from avm_vm.node.eventlog import Event, LogError, LogWriteError
from avm_vm.node.failpoints import reach
from avm_vm.node.fairqueue import FairQueue
from avm_vm.node.intents import IntentDesk
from avm_vm.node.logs import log_failed_call, log_failed_run, logger
from avm_vm.node.messages import Message, RequestIds, encode_message, message
from avm_vm.node.metrics import Metrics
from avm_vm.node.peers import NODE_ROOM, Connection, Limits, peer_address, refuse
from avm_vm.node.requests import (
    Answer,
    PendingMap,
    call_answer,
    failed_answer,
    object_answer,
    request_message,
    vote,
)
from avm_vm.node.state import StateError
from avm_vm.node.wire import LARGE_FRAME, MAX_FRAME, WireError
from avm_vm.runtime.core import RuntimeOptions
from avm_vm.runtime.runs import (
    Done,
    Failed,
    Parked,
    Prepare,
    RemoteCall,
    Request,
    Run,
)

HANDSHAKE_TIMEOUT = 5.0
BACKOFF_FIRST, BACKOFF_CAP = 0.1, 2.0  # seconds between dial attempts, doubling
MAX_PARKED = 10_000  # parked runs before new work waits (bounds memory under a flood)
# A batch of jobs on the loop thread ends after this many jobs or this long, whichever first.
BATCH_JOBS, BATCH_SECONDS = 256, 0.002
VM_SLICE = 20_000  # VM steps a run takes on the loop thread before the VM thread goes on
# A log write of fewer events than this waits one turn of the loop for the batch that is
# ready to run, so writes (each an fsync, some a hand-off to the VM thread) carry more events.
COMMIT_GATHER = 64
# A log write runs on the loop thread while the last one took less than this (seconds).
INLINE_WRITE = 0.001
# How long a thread may keep the GIL while another waits for it. The node's VM thread
# finishes log writes (an fsync) and long runs, and each must take the GIL back to hand its
# result to the loop; at Python's default of 5 ms that wait held every answer of a group
# commit back and cost durable nodes a third of their throughput (bench/durable_bench.py:
# 0.63 of a node without --data at 5 ms, 0.80 at 0.2 ms, with no loss without --data).
GIL_SWITCH_SECONDS = 0.0002
# The youngest generation's collection threshold for a node's process. A node keeps many
# young objects alive for a while (decoded requests, steps held until their log write), which
# Python's default of 700 allocations makes the collector rescan over and over; runs already
# collect this seldom (`Runtime._drive`).
GC_YOUNG_THRESHOLD = 10_000

_PEER_KINDS = frozenset(
    {
        "call",
        "call_response",
        "create_notify",
        "destroy_notify",
        "ping",
        "pong",
        "move_object",
        "fetch_object",
        "object_response",
        "teleport",
        "error",
        "prepare",
        "vote",
        "decide",
        "decided",
        "outcome",
        "outcome_response",
    }
)
_CLIENT_KINDS = frozenset(
    {
        "client_call",
        "client_create",
        "status",
        "ping",
        "error",
        "state_hash",
        "snapshot",
        "peek",
        "load",
        "intent",
        "intent_status",
    }
)
SNAPSHOT_POLL = 0.02  # seconds between tries of an on-demand snapshot while runs are parked
# Transactions across nodes: how often a node looks for decisions to resend and for parts
# of others' transactions to ask about, and how long a part may sit untouched before it asks.
SETTLE_EVERY = 1.0
IDLE_PART_SECONDS = 5.0


@dataclass(frozen=True)
class NodeConfig:
    name: str
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port (tests)
    peers: dict[str, tuple[str, int]] = field(default_factory=dict)
    secret: bytes | None = None
    tls: Tls | None = None  # mutual TLS: peers and clients prove their names by certificate
    client_loaders: frozenset[str] = frozenset()  # with TLS: the clients allowed to `load`
    prefix: int | None = None  # None: the listening port, as the reference does (§11.7)
    call_timeout: float = 5.0
    fuel: int = RuntimeOptions.fuel
    max_value_bytes: int = RuntimeOptions.max_value_bytes
    jit: str = RuntimeOptions.jit
    record_trace: bool = False
    trace_out: Path | None = None
    drain_timeout: float = 5.0  # on stop: how long in-flight runs may take to finish
    data: Path | None = None  # the data directory: log events durably, restart from it
    snapshot_every: int = 10_000  # events between snapshots (with `data`)
    checkpoint_every: int = 1_000  # events between logged state hashes (with `data`)
    # What connections may take of the node (docs/wire.md, "Limits").
    max_connections: int = 512  # accepted at once; `avm node` sizes it to the file handles
    idle_timeout: float | None = 60.0  # seconds a client may ask and say nothing (None: ever)
    max_in_flight: int = 256  # a client's requests being worked on before it is not read
    max_queued_bytes: int = 4 * MAX_FRAME  # output a connection may leave unread
    profile: str = RuntimeOptions.profile  # "r": remote calls stay outside transactions
    # Without `data`: take part in commits across nodes all the same, accepting that a crash
    # between the vote and the decision loses this node's part (docs/transactions.md).
    volatile_commit: bool = False


@dataclass
class Origin:
    """Who waits for a run's result: a client (``conn``) or a peer (``peer``), by request."""

    request_id: int
    conn: Connection | None = None
    peer: str | None = None
    teleport: bool = False  # a peer's teleported activation (it may be refused)
    heavy: bool = False  # it came in a large frame: its event is applied on the VM thread
    since: float = field(default_factory=time.monotonic)  # when it came (call latency)
    # Not a requester: an event that started no run waits here for its step (`_apply`);
    # None when the log could not keep the event.
    step: asyncio.Future[Step | None] | None = None


@dataclass
class Counters:
    calls_served: int = 0  # peers' calls answered
    client_requests: int = 0
    remote_calls: int = 0  # calls this node made to peers
    remote_failures: int = 0  # requests to peers that failed, timed out or were refused
    failed_runs: int = 0
    malformed_frames: int = 0


class Node:
    def __init__(self, config: NodeConfig, programs: list[Program]) -> None:
        self.config = config
        self.name = config.name
        self.programs = programs
        self.counters = Counters()
        self.metrics = Metrics()  # what `avm node --http` shows at /metrics
        self.pending = PendingMap(config.call_timeout)
        self.links: dict[str, Connection] = {}  # peer node → the connection used to send
        self.connections: set[Connection] = set()
        self.touched: set[Connection] = set()  # connections that queued output: `_flush_output`
        self.accepted = 0  # accepted connections open now, served or in their handshake
        self.unsent: dict[str, list[tuple[int, Message]]] = {}  # for peers not connected yet
        self.jobs: FairQueue[tuple[Origin | None, Event]] = FairQueue()  # by source
        # Parked runs' answers, as logged, in the order they came: the next resumes first.
        self.answers: dict[Run, dict[str, Any]] = {}
        self.origins: dict[Run, Origin] = {}
        self.stopping = False
        self.busy = False  # a job is on the VM
        self.started = time.monotonic()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="avm-vm")
        self.vm = asyncio.Lock()  # one user of the VM at a time, on the loop or the thread
        # Set to stop the node: by `avm node` on a signal, or by the node itself when it
        # cannot go on (`fatal` says why: its log failed).
        self.stop_requested = asyncio.Event()
        self.fatal: str | None = None
        self.held: list[tuple[Origin | None, Step]] = []  # outputs waiting for a log write
        self.uncommitted = asyncio.Event()  # `held` has outputs: `_commit` writes the log
        self.committing = 0  # outputs whose write is under way
        self.written = False  # that write is done (set on the VM thread): answers can go
        self.known: dict[str, Any] = {}  # the VM's last status, told while a run holds it
        self.tasks: set[asyncio.Task] = set()
        self.intent_desk = IntentDesk(self)  # intents: accepted, solved, expired
        # Each kind of message a peer or client may send, and the method that handles it.
        self.handlers = {kind: getattr(self, f"_on_{kind}") for kind in _PEER_KINDS | _CLIENT_KINDS}
        self.port = config.port
        self.prefix = 0
        self.server: asyncio.Server | None = None
        self.directory: Directory
        self.engine: Engine
        self.recorder: Recorder

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind, build the VM (its id prefix may come from the port; a data directory is
        replayed), then listen and dial the peers: nothing is served half started."""
        self.server = await asyncio.start_server(
            self._accept, self.config.host, self.config.port, start_serving=False
        )
        self.port = self.server.sockets[0].getsockname()[1]
        config = self.config
        self.prefix = self.port & 0xFFFF if config.prefix is None else config.prefix
        loop = asyncio.get_running_loop()
        self.recorder = await loop.run_in_executor(self.executor, self._open)
        self.engine = self.recorder.engine
        self.directory = self.engine.directory
        await loop.run_in_executor(self.executor, self._boot)
        # Request ids never repeat across restarts: each boot numbers from its own range.
        self.request_ids = RequestIds(self.prefix, (self.engine.boots % (1 << 16)) << 32)
        for run in self.engine.runtime.parked.values():  # their requests died with the process
            self.answers[run] = RESTARTED
        self.engine.runtime.slice = VM_SLICE  # from now on runs are live (replay is not cut)
        self.recorder.sync_each = False  # `_commit` writes the log once per batch or more
        self.recorder.defer_snapshots = True  # `_schedule` writes them on the VM thread
        self.wake = asyncio.Event()
        self._spawn_vital(self._schedule(), "scheduler")
        if self.config.data is not None:
            self._spawn_vital(self._commit(), "group commit")
        self._spawn_vital(self._settle(), "settling of transactions")
        self.intent_desk.start()
        await self.server.start_serving()
        for peer, (host, port) in self.config.peers.items():
            self._spawn(self._dial(peer, host, port))

    def _open(self) -> Recorder:
        """The VM: restored from the data directory, or fresh (on the VM thread)."""
        config = self.config
        trace = config.record_trace or config.trace_out is not None
        if config.data is None:
            meta = Meta(self.name, self.prefix, config.fuel, config.max_value_bytes)
            options = replace(meta.options(config.jit, trace), profile=config.profile)
            engine = Engine(options, Directory(self.name, self.prefix), config.trace_out)
            if not config.volatile_commit:
                engine.volatile = (
                    f"node {self.name} keeps no log, so it cannot promise to commit its part "
                    "after a crash: start it with --data DIR (or --volatile-commit to accept "
                    "that risk)"
                )
            return Recorder(engine)
        lock = DataLock(config.data, f"avm node {self.name}")  # held until the recorder closes
        try:
            meta = settle_meta(
                config.data,
                self.name,
                config.prefix,
                self.prefix,
                config.fuel,
                config.max_value_bytes,
                config.profile,
            )
            self.prefix = meta.prefix
            directory = Directory(self.name, self.prefix)
            recorder, replayed = open_data(
                config.data, meta, config.jit, trace, config.trace_out, directory
            )
        except BaseException:
            lock.release()
            raise
        recorder.lock = lock
        recorder.snapshot_every = config.snapshot_every
        recorder.checkpoint_every = config.checkpoint_every
        if replayed:
            logger.info("replayed %d events from %s", replayed, config.data)
        return recorder

    def _boot(self) -> None:
        """The start-up events: fresh entropy, the configured peers, the --load programs
        this node does not run yet. A loaded behavior name is refused (use `avm load`),
        before anything is logged."""
        record, engine = self.recorder.record, self.engine
        new = [program for program in self.programs if not engine.has_program(program)]
        names = [behavior.name for program in new for behavior in program.behaviors]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise LoadError(f"behavior already registered: {twice[0]}")
        tapes = [encode(program) for program in new]
        for tape in tapes:
            engine.check_load(tape, upgrade=False)
        record({"k": "entropy", "bytes": os.urandom(32).hex(), "boot": True})
        for peer in self.config.peers:
            if peer not in engine.directory.peers:
                record({"k": "peer", "machine": peer, "prefix": None})
        for tape in tapes:
            record({"k": "load", "tape": base64.b64encode(tape).decode(), "upgrade": False})
        if self.config.data is not None and not engine.unsettled:
            # The texts of a restored store, printed before serving: the first checkpoint,
            # snapshot or status then prints only what changed (`StateTexts`).
            self.recorder.texts.capture(engine)

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self.port}"

    async def stop(self) -> None:
        """Stop accepting, let in-flight runs finish (bounded), fail what is left, close."""
        if self.stopping:
            return
        self.stopping = True
        if self.server is not None:
            self.server.close()
        # A halting node has nothing to wait for: its log takes no more events, or a loop
        # that finishes runs is gone.
        deadline = time.monotonic() + (0.0 if self.fatal else self.config.drain_timeout)
        while (
            self.jobs or self.origins or self.busy or self.held or self.committing
        ) and time.monotonic() < deadline:
            self.wake.set()
            await asyncio.sleep(0.05)
        unanswered = [*self.origins.values(), *(o for o, _ in self.held if o is not None)]
        for origin in unanswered:
            self._not_answered(origin, "the node is shutting down")
        self.origins.clear()
        self.held.clear()
        for origin, _ in self.jobs:
            if origin is not None:
                self._reply_error(origin, "Failed", "the node is shutting down")
        self.jobs.clear()
        self.pending.fail(None, "the node is shutting down")
        await asyncio.sleep(0)  # let the writers take the last answers
        for conn in list(self.connections):
            conn.queue.put_nowait(None)
        await asyncio.sleep(0.05)
        for task in list(self.tasks):
            task.cancel()
        for conn in list(self.connections):
            await conn.close()
        with suppress(Exception):
            await asyncio.wait_for(self.server.wait_closed(), 1.0)  # type: ignore[union-attr]
        if self.engine.runtime.run is None:  # a run still computing keeps the VM: leave it be
            # A clean stop leaves a snapshot, so the next start replays nothing. Every event
            # whose outputs left is durable already, so skipping this loses nothing.
            with suppress(StateError, LogError):
                await self._on_vm(lambda engine: self.recorder.snapshot(), thread=True)
            await self._on_vm(lambda engine: self.recorder.close(), thread=True)
        self.executor.shutdown(wait=False, cancel_futures=True)

    def _spawn(self, coroutine: Any) -> asyncio.Task:
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self._reap)
        return task

    def _spawn_vital(self, coroutine: Any, what: str) -> None:
        """Start one of the loops the node cannot serve without. Should one ever end while
        the node runs (a bug), the node halts with the reason instead of going on accepting
        calls it can no longer answer."""
        task = self._spawn(coroutine)
        task.add_done_callback(lambda done: self._lost(done, what))

    def _lost(self, task: asyncio.Task, what: str) -> None:
        if self.stopping or task.cancelled():
            return
        error = task.exception()
        self._halt(f"internal error: the {what} stopped" + (f" ({error!r})" if error else ""))

    def _reap(self, task: asyncio.Task) -> None:
        """A finished task: its exception, if any, is logged, never lost or fatal."""
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("internal error: %r", task.exception())

    # ------------------------------------------------------------------ connections

    async def _handshake(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, initiator: bool
    ) -> Hello:
        """This node's side of the handshake with a peer node (raises HandshakeError)."""
        tls = self.config.tls
        return await handshake(
            reader,
            writer,
            name=self.name,
            role="node",
            secret=self.config.secret,
            prefix=self.prefix,
            timeout=HANDSHAKE_TIMEOUT,
            initiator=initiator,
            tls=None if tls is None else tls.dial if initiator else tls.accept,
        )

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve a connection that came in, within `max_connections` (refused beyond, with
        an `error` saying why); clients may not take the last `NODE_ROOM`, kept for peers."""
        limit = self.config.max_connections
        if self.accepted >= limit:
            await refuse(writer, f"too many connections: the node accepts {limit} at once")
            return
        self.accepted += 1
        try:
            try:
                hello = await self._handshake(reader, writer, initiator=False)
            except HandshakeError as error:
                self.counters.malformed_frames += 1
                logger.warning("refused a connection from %s: %s", peer_address(writer), error)
                return
            clients = sum(not conn.is_node for conn in self.connections)
            if hello.role != "node" and clients >= limit - min(NODE_ROOM, limit // 2):
                await refuse(writer, f"too many clients: the node serves {clients} at once")
                return
            await self._serve(self._metered(Connection(reader, writer, hello, dialled=False)))
        finally:
            self.accepted -= 1

    async def _dial(self, peer: str, host: str, port: int) -> None:
        """Keep a connection to a configured peer, retrying with exponential backoff."""
        delay = BACKOFF_FIRST
        said = ""
        while not self.stopping:
            existing = self.links.get(peer)
            if existing is not None and not existing.ended.is_set():
                # The peer dialled us: keep that one. `ended` is set only once the node has
                # forgotten it, so this wait blocks until the link is really gone.
                await existing.ended.wait()
                continue
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port), HANDSHAKE_TIMEOUT
                )
                hello = await self._handshake(reader, writer, initiator=True)
            except (TimeoutError, OSError, HandshakeError) as error:
                text = f"cannot reach peer {peer} at {host}:{port}: {error or 'timed out'}"
                if text != said:
                    logger.warning("%s", text)
                    said = text
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_CAP)
                continue
            if hello.name != peer:
                logger.warning(
                    "%s:%d is %s, not the configured peer %s", host, port, hello.name, peer
                )
                writer.close()
                await asyncio.sleep(BACKOFF_CAP)
                continue
            conn = self._metered(Connection(reader, writer, hello, dialled=True))
            await self._serve(conn)
            if conn.peer_error is not None and conn.received == 1:
                # Refused right after the hello (a side without the secret only learns it
                # now): a failed attempt, retried with backoff.
                text = f"cannot reach peer {peer} at {host}:{port}: {conn.peer_error}"
                if text != said:
                    logger.warning("%s", text)
                    said = text
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_CAP)
                continue
            said = ""
            delay = BACKOFF_FIRST

    def _metered(self, conn: Connection) -> Connection:
        """``conn``, counting the bytes it sends in the node's metrics."""
        conn.sent_bytes = self.metrics.count_sent
        conn.touched = self.touched
        return conn

    async def _serve(self, conn: Connection) -> None:
        refusal = self._refusal(conn) if conn.is_node else None
        if refusal is not None:
            logger.warning("refused %s: %s", conn.describe(), refusal)
            with suppress(OSError, RuntimeError):  # written before the socket closes
                conn.writer.write(conn.frame(message("error", message=f"refused: {refusal}")))
            await conn.close()
            return
        config = self.config
        if conn.is_node:
            # A peer has at most one call here per run parked there (MAX_PARKED); the margin
            # covers its notices. So a well-behaved peer is never held back.
            conn.limits = Limits(4 * MAX_PARKED, None, config.max_queued_bytes)
        else:
            conn.limits = Limits(
                config.max_in_flight,
                queued_bytes=config.max_queued_bytes,
                idle_timeout=config.idle_timeout,
            )
        self.connections.add(conn)
        if not conn.is_node:
            logger.debug("%s connected", conn.describe())
        if conn.is_node:
            # The link is up once the peer speaks: a peer that refuses us only after its hello
            # (it holds a secret we lack) answers this ping with `error`, and never counts.
            conn.nonce += 1
            conn.send(message("ping", nonce=conn.nonce))
        await conn.serve(self._dispatch, self._forget_connection)

    def _refusal(self, conn: Connection) -> str | None:
        """Why a peer node may not connect: object and request ids carry the maker's
        prefix, so two nodes with one name or one prefix would hand out the same ids."""
        if conn.name == self.name:
            return "it has this node's own name"
        if conn.prefix == self.prefix:
            return f"it has this node's id prefix {self.prefix} (give one of them --prefix)"
        for other in self.links.values():
            if other.name != conn.name and other.prefix == conn.prefix:
                return f"peer {other.name} has its id prefix {conn.prefix} already"
        # A certified name must not take over the ids of a node this one has known.
        known = self.directory.prefixes.get(conn.prefix)
        if conn.certified and known not in (None, conn.name):
            return f"id prefix {conn.prefix} belongs to node {known}"
        return None

    def _speaks_for(self, conn: Connection, object_id: int) -> bool:
        """Whether a peer may say where an object is, or move it here: it made the object
        (the id carries its prefix) or it holds it as far as this node knows (the object
        was moved to it by a transfer this node has heard of from a node it believed)."""
        if object_id >> PREFIX_SHIFT == conn.prefix:
            return True
        return self.directory.locate(object_id) == conn.name

    def _forget_connection(self, conn: Connection) -> None:
        """A connection stopped reading: stop routing to it, fail what was sent on it."""
        if conn.broken:
            self.counters.malformed_frames += 1
        self.connections.discard(conn)
        if not conn.is_node:
            logger.debug("%s disconnected", conn.describe())
        if conn.is_node and self.links.get(conn.name) is conn:
            del self.links[conn.name]
            logger.info("peer %s disconnected", conn.name)
        self.pending.fail_via(conn, "connection lost")

    def _link(self, conn: Connection) -> None:
        """Make ``conn`` the route to its node. If both nodes dialled, both keep the
        connection opened by the node whose name sorts first, so no frame is sent twice."""
        conn.linked = True
        current = self.links.get(conn.name)
        if current is not None and not current.closed.is_set():
            first_dials = self.name < conn.name
            if current.dialled == first_dials:
                self._spawn(conn.close())
                return
            self._spawn(current.close())
        self.links[conn.name] = conn
        directory = self.directory
        if (
            conn.name not in directory.peers
            or directory.prefixes.get(conn.prefix) != conn.name
            or directory.versions.get(conn.name) != conn.version
        ):
            event = {"k": "peer", "machine": conn.name, "prefix": conn.prefix}
            self._spawn(self._apply({**event, "version": conn.version}))
        logger.info("peer %s connected (%s)", conn.name, conn.address)
        # A peer that connects late missed the notices of objects made here that have moved
        # away since; it routes a call to one of them by its prefix, here: say where it is.
        for object_id, machine in self.directory.objects.items():
            if object_id >> PREFIX_SHIFT == self.prefix and machine != conn.name:
                conn.send(message("create_notify", object_id=object_id, machine_id=machine))
        for rid, outgoing in self.unsent.pop(conn.name, []):
            if self.pending.machine_of(rid) is not None:
                self._send(conn.name, outgoing, rid)

    def _send(self, machine: str, outgoing: Message, rid: int | None = None) -> None:
        """Send to a peer node. A request (``rid``) to a configured peer that is not
        connected waits for the connection (its timeout runs); otherwise it fails now."""
        conn = self.links.get(machine)
        try:
            if conn is not None and not conn.closed.is_set():
                if rid is not None and _cannot_join(conn, outgoing):
                    why = self.directory.cannot_join(machine) or "it cannot join transactions"
                    refusal = failed_answer(rid, "TxCannotJoin", why)
                    self.pending.resolve(rid, encode_message(refusal))
                    return
                conn.send(outgoing)
                if rid is not None:
                    self.pending.sent(rid, conn)
                return
        except WireError as error:
            if rid is not None:
                self.pending.resolve(rid, f"cannot send: {error}")
            else:
                logger.warning("cannot send %s to %s: %s", outgoing["type"], machine, error)
            return
        if rid is None:
            return  # answers and notices to a node that left are dropped
        if machine in self.config.peers and not self.stopping:
            self.unsent.setdefault(machine, []).append((rid, outgoing))
        else:
            self.pending.resolve(rid, "not connected")

    def _broadcast(self, notices: list[Message]) -> None:
        if not notices:  # most steps have none: not even a copy of the links
            return
        for conn in list(self.links.values()):
            for notice in notices:
                with suppress(WireError):
                    conn.send(notice)

    # ------------------------------------------------------------------ inbound messages

    def _dispatch(self, conn: Connection, msg: Message) -> None:
        """Handle one message; handlers that need the VM run as tasks."""
        kind = msg["type"]
        self.metrics.bytes_in += conn.frame_size
        if conn.is_node and not conn.linked and kind != "error":
            self._link(conn)
        allowed = _PEER_KINDS if conn.is_node else _CLIENT_KINDS
        if kind not in allowed:
            conn.send(message("error", message=f"{kind} is not accepted from a {conn.role}"))
            return
        handled = self.handlers[kind](conn, msg)
        if handled is not None:  # a coroutine: it waits on the VM, the reader must not
            place = conn.hold()  # until it is done (backpressure, `Connection.hold`)
            self._spawn(handled).add_done_callback(lambda _: conn.release(place))

    def _on_error(self, conn: Connection, msg: Message) -> None:
        conn.peer_error = msg["message"][:200]
        logger.warning("%s reported an error: %s", conn.describe(), conn.peer_error)

    def _on_ping(self, conn: Connection, msg: Message) -> None:
        conn.send(message("pong", nonce=msg["nonce"]))

    def _on_pong(self, conn: Connection, msg: Message) -> None:
        pass  # hearing from the peer is the point (Connection.heard)

    async def _on_create_notify(self, conn: Connection, msg: Message) -> None:
        if not self._speaks_for(conn, msg["object_id"]):
            logger.info(
                "ignored %s's notice that obj:%d is on %s: it neither made nor holds it",
                conn.name,
                msg["object_id"],
                msg["machine_id"],
            )
            return
        await self._apply(
            {"k": "learn", "object_id": msg["object_id"], "machine": msg["machine_id"]}
        )

    async def _on_destroy_notify(self, conn: Connection, msg: Message) -> None:
        await self._apply({"k": "unlearn", "object_id": msg["object_id"], "machine": conn.name})

    def _on_call(self, conn: Connection, msg: Message) -> None:
        event = {"k": "call", "target": msg["target"], "input": msg["input"]}
        event.update(sender=msg["sender"], duct=[list(link) for link in msg["duct"]])
        if msg.get("tx") is not None:  # it joins a transaction
            event.update(tx=msg["tx"], coordinator=msg["coordinator"])
            if msg.get("controller") is not None:
                event["controller"] = msg["controller"]
        conn.hold(msg["request_id"])  # until the answer is written
        self._queue(Origin(msg["request_id"], peer=conn.name, heavy=_heavy(conn)), event)

    def _on_teleport(self, conn: Connection, msg: Message) -> None:
        origin = Origin(msg["request_id"], peer=conn.name, teleport=True, heavy=_heavy(conn))
        conn.hold(msg["request_id"])  # until the answer is written
        self._queue(origin, {"k": "teleport", "activation": msg["activation"]})

    def _on_client_call(self, conn: Connection, msg: Message) -> None:
        self.counters.client_requests += 1
        event = {"k": "client_call", "target": msg["target"], "input": msg["input"]}
        conn.hold(msg["request_id"])  # until the answer is written
        self._queue(Origin(msg["request_id"], conn=conn, heavy=_heavy(conn)), event)

    def _on_client_create(self, conn: Connection, msg: Message) -> None:
        self.counters.client_requests += 1
        event = {"k": "client_create", "behavior": msg["behavior"], "controller": msg["controller"]}
        conn.hold(msg["request_id"])  # until the answer is written
        self._queue(Origin(msg["request_id"], conn=conn), event)

    def _on_call_response(self, conn: Connection, msg: Message) -> None:
        self._answered(conn, msg)

    def _on_object_response(self, conn: Connection, msg: Message) -> None:
        self._answered(conn, msg)

    def _on_vote(self, conn: Connection, msg: Message) -> None:
        self._answered(conn, msg)

    def _on_outcome_response(self, conn: Connection, msg: Message) -> None:
        self._answered(conn, msg)

    def _answered(self, conn: Connection, msg: Message) -> None:
        """An answer counts only from the peer the request went to."""
        if self.pending.machine_of(msg["request_id"]) == conn.name:
            self.pending.resolve(msg["request_id"], msg)

    async def _on_status(self, conn: Connection, msg: Message) -> None:
        """The node's status, at once: while a long run holds the VM, its last known part."""
        if self.vm.locked():
            status, digest = {**self.known, "busy": True}, None
        else:
            status = self.known = await self._on_vm(lambda engine: engine.status())
            digest = await self._state_hash()
        status = dict(status)
        status.update(
            name=self.name,
            listen=self.address,
            prefix=self.prefix,
            uptime_s=round(time.monotonic() - self.started, 3),
            queued=len(self.jobs),
            pending_requests=len(self.pending),
            counters=vars(self.counters).copy(),
            peers=self._peer_table(),
            state_hash=digest,
            events=self.engine.applied,
            data=None if self.config.data is None else str(self.config.data),
        )
        conn.send(message("status_response", request_id=msg["request_id"], status=status))

    async def _state_hash(self) -> str | None:
        """The state hash (on the VM thread), or None while runs are parked (their state is
        not data)."""
        return await self._on_vm(self._texts_hash, thread=True)

    def _texts_hash(self, engine: Engine) -> str | None:
        try:
            return self.recorder.texts.capture(engine).state_hash()
        except StateError:
            return None

    async def _on_state_hash(self, conn: Connection, msg: Message) -> None:
        digest = await self._state_hash()
        if digest is None:
            busy = "runs are parked or a transaction across nodes is open"
            conn.send(message("error", message=f"{busy}: the state hash waits for them"))
            return
        answer = message(
            "state_hash_response",
            request_id=msg["request_id"],
            state_hash=digest,
            events=self.engine.applied,
        )
        conn.send(answer)

    async def _on_peek(self, conn: Connection, msg: Message) -> None:
        """Read an object without logging anything or changing anything."""
        object_id = msg["object_id"]
        shipped = await self._on_vm(lambda engine: engine.peek(object_id))
        conn.send(message("peek_response", request_id=msg["request_id"], object=shipped))

    async def _on_snapshot(self, conn: Connection, msg: Message) -> None:
        """Write a snapshot as soon as no run is parked."""
        if self.config.data is None:
            conn.send(message("error", message="this node has no data directory (--data)"))
            return
        while not self.stopping:
            snap = await self._on_vm(lambda engine: self.recorder.snapshot(), thread=True)
            if snap is not None:
                answer = message(
                    "snapshot_response",
                    request_id=msg["request_id"],
                    index=snap.index,
                    state_hash=snap.state_hash,
                )
                conn.send(answer)
                return
            await asyncio.sleep(SNAPSHOT_POLL)

    async def _on_load(self, conn: Connection, msg: Message) -> None:
        """`avm load`: an upgrade event, refused (and not logged) if it cannot apply."""
        if self.config.tls is not None and conn.name not in self.config.client_loaders:
            logger.warning("refused a load from %s: not allowed", conn.describe())
            text = f"load refused: client {conn.name} may not load code (--allow-client-load)"
            conn.send(message("error", message=text))
            return
        try:
            tape = base64.b64decode(msg["tape"], validate=True)
        except ValueError:
            conn.send(message("error", message="load.tape must be base64"))
            return

        engine = self.engine
        async with self.vm:
            try:
                program = engine.check_load(tape, upgrade=True)
                engine.check_field_types(program)
            except LoadError as error:
                conn.send(message("error", message=f"load refused: {error}"))
                return
            self.recorder.record({"k": "load", "tape": msg["tape"], "upgrade": True})
            if not await self._flush():
                conn.send(message("error", message=f"load failed: {self.fatal}"))
                return
        registry = engine.runtime.registry
        loaded = {b.name: registry.code_hash(b.name).hex() for b in program.behaviors}
        conn.send(message("load_response", request_id=msg["request_id"], behaviors=loaded))

    async def _on_intent(self, conn: Connection, msg: Message) -> None:
        """`avm intent`: a logged intent, solved with others (docs/intents.md)."""
        self.counters.client_requests += 1
        await self.intent_desk.submit(conn, msg)

    async def _on_intent_status(self, conn: Connection, msg: Message) -> None:
        await self.intent_desk.report(conn, msg)

    def _peer_table(self) -> list[dict[str, object]]:
        names = sorted(set(self.config.peers) | set(self.links))
        table = []
        for peer in names:
            conn = self.links.get(peer)
            configured = self.config.peers.get(peer)
            if conn is not None:
                address = conn.address
            elif configured is not None:
                address = f"{configured[0]}:{configured[1]}"
            else:
                address = "?"
            table.append({"name": peer, "connected": conn is not None, "address": address})
        return table

    async def _on_move_object(self, conn: Connection, msg: Message) -> None:
        """A peer moves an object here: install it if this node has its code."""
        if not self._speaks_for(conn, msg["object_id"]):
            reason = f"{conn.name} neither made nor holds obj:{msg['object_id']}"
            logger.warning("refused a move from %s: %s", conn.describe(), reason)
            conn.send(object_answer(msg["request_id"], reason, "TransferRefused"))
            return
        event = {"k": "install", "object_id": msg["object_id"], "object": msg["object"]}
        step = await self._apply(event)
        if step is None:
            conn.send(object_answer(msg["request_id"], f"the node is halting: {self.fatal}"))
            return
        conn.send(object_answer(msg["request_id"], step.error, step.error_kind))

    async def _on_fetch_object(self, conn: Connection, msg: Message) -> None:
        """A peer wants an object here: move it there, then tell the peer how it went."""
        rid, object_id, to = msg["request_id"], msg["object_id"], msg["to_machine"]
        if to != conn.name:
            conn.send(object_answer(rid, f"a fetch must bring the object to {conn.name}"))
            return
        shipped = await self._on_vm(lambda engine: engine.export(object_id))
        if shipped is None:
            error = AvmError(ErrorKind.OBJ_NOT_FOUND, id=object_id)
            conn.send(object_answer(rid, error.message, error.kind.qualified_name))
            return

        def moved(answer: Answer) -> None:
            if isinstance(answer, str) or answer["type"] != "object_response":
                reason = answer if isinstance(answer, str) else "unexpected answer"
                conn.send(object_answer(rid, f"machine {to}: {reason}", "MachineUnreachable"))
            elif not answer["ok"]:
                conn.send(object_answer(rid, answer["error"], answer["error_kind"]))
            else:
                self._spawn(self._forget(conn, rid, object_id, to))

        move_id = self.request_ids.next()
        self.pending.expect(move_id, to, moved)
        self._send(
            to,
            message("move_object", request_id=move_id, object_id=object_id, object=shipped),
            move_id,
        )

    async def _forget(self, conn: Connection, rid: int, object_id: int, to: str) -> None:
        step = await self._apply({"k": "forget", "object_id": object_id, "machine": to})
        if step is None:
            conn.send(object_answer(rid, f"the node is halting: {self.fatal}"))
            return
        conn.send(object_answer(rid, None))

    async def _apply(self, event: Event) -> Step | None:
        """Record and apply an event that starts no run (directory, objects arriving, a
        transaction's prepare or decision); answers its step once the event is durable, so
        its outputs may go. Its notices have gone by then. The event shares the group
        commit's next write with the runs' events, and the VM is not held meanwhile. None:
        the log could not keep it (the node is halting: its outputs must never leave)."""
        async with self.vm:
            step = self.recorder.record(event)
        origin = Origin(0, step=asyncio.get_running_loop().create_future())
        if self.config.data is None:
            self._after(origin, step)
        else:
            self.held.append((origin, step))
            self.uncommitted.set()
        return await origin.step  # type: ignore[misc]

    def _not_answered(self, origin: Origin, reason: str) -> None:
        """``origin`` will get no step: tell its requester why (or `_apply` that none came)."""
        if origin.step is not None:
            if not origin.step.done():
                origin.step.set_result(None)
        else:
            self._reply_error(origin, "Failed", reason)

    async def _on_vm(self, job: Callable[[Engine], Any], thread: bool = False) -> Any:
        """Run a job on the VM between runs: inline, or on the VM thread when it may take a
        while (hashing or writing the whole state), so the loop keeps serving meanwhile."""
        async with self.vm:
            if not thread:
                return job(self.engine)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.executor, job, self.engine)

    async def _flush(self) -> bool:
        """Make what was recorded durable now (the caller holds the VM); see `_write`."""
        return await self._write(self.recorder.seal())

    async def _write(
        self,
        write: Callable[[], None],
        then: Callable[[], object] | None = None,
        inline: bool = False,
    ) -> bool:
        """Run a sealed write (`Recorder.seal`) on the VM thread (``inline``: here, on the
        loop thread, see `_commit`), and after it ``then`` (a snapshot's job, on the VM
        thread, whose end is not awaited). False when the log could not keep the write:
        those events were applied here but are not in the log, so their outputs must never
        leave, and the node halts (a restart goes on from the log, which is as it was
        before them)."""
        loop = asyncio.get_running_loop()
        began = time.monotonic()
        try:
            if write is nothing_to_write:
                writing = None
            elif inline:
                writing = None
                write()
            else:
                writing = loop.run_in_executor(self.executor, write)
            if then is not None:  # submitted now: the VM thread runs it right after the write
                self._spawn(self._snapshot_written(loop.run_in_executor(self.executor, then)))
            if writing is not None:
                await writing
        except LogWriteError as error:
            self._halt(str(error))
            return False
        if write is not nothing_to_write:
            self.metrics.log_writes.observe(time.monotonic() - began)
        return True

    def _halt(self, reason: str) -> None:
        """Stop serving for good: `avm node` stops the node and exits with status 1."""
        if self.fatal is None:
            self.fatal = reason
            logger.critical("halting: %s", reason)
        self.stop_requested.set()

    # ------------------------------------------------------------------ runs

    def _queue(self, origin: Origin, event: Event) -> None:
        if self.stopping and origin.conn is not None:
            self._reply_error(origin, "Failed", "the node is shutting down")
            return
        self.jobs.append(origin.conn or origin.peer, (origin, event))
        self.wake.set()

    def _next_ready(self) -> Run | bool | None:
        """What runs next, without taking it: the parked run whose answer came first (any
        parked run may resume; first come, first resumed keeps waits short and is O(1)),
        True for new work, None for nothing. Resumes go first: they finish work."""
        if self.answers:
            return next(iter(self.answers))
        # Read between steps only: the VM is idle.
        if self.jobs and len(self.engine.runtime.parked) < MAX_PARKED:
            return True
        return None

    def _next_job(self) -> tuple[Origin | None, Event] | None:
        """A parked run whose answer is in, else new work. The resume event names its run,
        so replay resumes the same one."""
        ready = self._next_ready()
        if ready is None:
            return None
        if ready is True:
            return self.jobs.popleft()
        return None, {"k": "resume", "run": ready.number, "answer": self.answers.pop(ready)}

    async def _schedule(self) -> None:
        """Run jobs in batches on the loop thread. A batch ends after `BATCH_JOBS` jobs or
        `BATCH_SECONDS`, and the loop serves connections before the next batch. A run
        longer than a fuel slice goes on in the VM thread while the loop keeps serving.
        Without a log a job's outputs leave at once; with one they wait for `_commit`."""
        while True:
            if self._next_ready() is None:
                self.wake.clear()
                await self.wake.wait()
                continue
            async with self.vm:
                self.busy = True
                try:
                    await self._batch()
                finally:
                    self.busy = False
            self._flush_output()
            await asyncio.sleep(0)  # let the loop read, write and answer between batches

    async def _commit(self) -> None:
        """Group commit (with `--data`): everything recorded since the last write goes in
        one write and one fsync on the VM thread, while the next batch computes here; then
        the outputs of those events leave. One write is in flight at a time, so the batches
        that ran meanwhile share the next one. A snapshot that is due captures the state
        here and is written on the VM thread after the write, holding neither the VM nor
        the loop.

        A write whose last one was quick (`INLINE_WRITE`) runs on the loop thread instead:
        handing it to the VM thread and back costs more than the fsync (the thread's
        wake-up and the GIL going back and forth, about 5 us of CPU per event at 100 events
        a write, against an fsync of about 0.2 ms). A slow one sends the next writes back
        to the VM thread, so a slow disk stalls the loop for at most one write."""
        recorder = self.recorder
        while True:
            await self.uncommitted.wait()
            if len(self.held) < COMMIT_GATHER:
                await asyncio.sleep(0)  # a batch about to run joins this write
            self.uncommitted.clear()
            async with self.vm:  # between batches: nothing is being recorded
                held, self.held = self.held, []
                # Not after a snapshot job still running on the VM thread: it may start a
                # new segment, and the log's writes must follow it there.
                log = recorder.log
                inline = (
                    log is not None and log.took < INLINE_WRITE and not recorder.snapshot_writing
                )
                write = recorder.seal()
                snap = self._snapshot_job()
            if write is not nothing_to_write and not inline:
                write = self._flagged(write)
            self.committing = len(held)
            try:
                durable = await self._write(write, snap, inline)
            finally:
                self.committing = 0
                self.written = False
            for origin, step in held:
                if durable:
                    self._after(origin, step)
                elif origin is not None:  # applied here, but not durable: nothing leaves
                    self._not_answered(origin, f"not made durable: {self.fatal}")
            self._flush_output()

    def _flush_output(self) -> None:
        """Write the answers and requests a batch or a commit queued, now (`Connection.flush`)."""
        for conn in self.touched:
            conn.flush()
        self.touched.clear()

    def _flagged(self, write: Callable[[], None]) -> Callable[[], None]:
        """``write``, raising `written` on the VM thread as soon as it is done: the batch
        computing on the loop then ends early, so the answers it made durable leave now
        rather than after the batch (the loop runs one thing at a time)."""

        def flagged() -> None:
            try:
                write()
            finally:
                self.written = True

        return flagged

    def _snapshot_job(self) -> Callable[[], object] | None:
        """The periodic snapshot the recorder asked for, if the VM is quiescent: its state
        captured now (the caller holds the VM and has sealed every event), to be written on
        the VM thread after that seal's write (`Recorder.snapshot_job`)."""
        if not self.recorder.snapshot_wanted or self.engine.unsettled:
            return None
        try:
            return self.recorder.snapshot_job()
        except (LogWriteError, StateError) as error:
            self._snapshot_failed(error)
            return None

    def _snapshot_failed(self, error: Exception) -> None:
        """The log still has every event: only restarts slow down until the next one."""
        self.recorder.snapshot_wanted = False
        logger.warning("a snapshot could not be written: %s", error)

    async def _snapshot_written(self, writing: asyncio.Future) -> None:
        try:
            await writing
        except (OSError, LogError) as error:  # a broken log halts the node at its next write
            self._snapshot_failed(error)

    async def _batch(self) -> None:
        loop = asyncio.get_running_loop()
        durable = self.config.data is not None
        deadline = time.monotonic() + BATCH_SECONDS
        for _ in range(BATCH_JOBS):
            item = self._next_job()
            if item is None:
                break
            origin, event = item
            try:
                if origin is not None and origin.heavy:  # decoding its value takes long
                    step = await loop.run_in_executor(self.executor, self.recorder.record, event)
                else:
                    step = self.recorder.record(event)
                while step.preempted:  # a long run: the loop serves others meanwhile
                    step = await loop.run_in_executor(self.executor, self.recorder.proceed)
            except Exception as error:  # a bug: answer the request, keep scheduling
                if self.stopping:
                    return  # the executor is shut down
                logger.error("internal error in the vm: %r", error)
                if origin is not None:
                    self._reply_error(origin, "Failed", f"internal error: {error!r}")
                continue
            if durable:  # its outputs wait for the write that covers its event
                self.held.append((origin, step))
                self.uncommitted.set()
            else:
                self._after(origin, step)
            if self.written or time.monotonic() > deadline:
                break

    def _after(self, origin: Origin | None, step: Step) -> None:
        self._broadcast(step.notices)
        for tx_id, commit, machines in step.decisions:
            if commit:
                reach("coordinator-after-decision")
            for machine in sorted(machines):
                self._send(machine, message("decide", tx=tx_id, commit=commit))
        if origin is not None and origin.step is not None:
            if not origin.step.done():  # not if its waiter was cancelled (the node stops)
                origin.step.set_result(step)
            return
        outcome = step.outcome
        if outcome is None:
            if origin is not None:
                if origin.teleport:
                    conn = self.links.get(origin.peer or "")
                    if conn is not None:
                        conn.send(object_answer(origin.request_id, step.error, step.error_kind))
                else:
                    self._reply_error(origin, step.error_kind, step.error or "failed")
            return
        run = outcome.run
        if type(outcome) is Parked:
            if origin is not None:
                self.origins[run] = origin
            if type(outcome.request) is Prepare:
                self._spawn(self._gather_votes(run, outcome.request))
            else:
                self._request(run, outcome.request, step.payload)
            return
        origin = self.origins.pop(run, origin)  # a resumed run's requester, kept meanwhile
        if origin is None:
            return  # its requester was answered already (the node is stopping)
        if type(outcome) is Done:
            # A client's call that answered nothing: its target failed, and the answer says
            # why (a peer's call answers the callee's own value; its calls are its business).
            failure = outcome.run.failure if origin.peer is None else None
            if failure is not None:
                log_failed_call(run.number, failure)
            self.metrics.answered("ok" if failure is None else "failed", origin.since)
            changed = run.changed if run.joined else None
            answer = call_answer(origin.request_id, outcome.value, failure, changed)
            plain = failure is None and changed is None  # then the answer's text is the step's
            self._reply(origin, answer, step.text if plain else None)
        else:
            assert type(outcome) is Failed
            self.counters.failed_runs += 1
            kind, text = failure_of(outcome)
            error = outcome.failure
            log_failed_run(run.number, kind, text, error.call_failure().location, error.duct)
            self.metrics.answered("failed", origin.since)
            # A peer's callee ran and failed: the failure travels, so the caller's `call`
            # answers nothing as for a local callee (a client's run failed on its own).
            failure = outcome.failure.call_failure() if origin.peer is not None else None
            self._reply(origin, failed_answer(origin.request_id, kind, text, failure))

    def _reply(self, origin: Origin, answer: Message, known: str | None = None) -> None:
        """Answer a run's requester (``known``: the text of its value, if made already); an
        answer that cannot be framed (too big, too deep) becomes an error answer, so the
        requester does not wait for nothing."""
        if origin.peer is not None:
            self.counters.calls_served += 1
            conn = self.links.get(origin.peer)
        else:
            conn = origin.conn
        if conn is None:
            return  # the requester left
        try:
            conn.send(answer, known)
        except WireError as error:
            failed = {**answer, "ok": False, "value": None}
            failed.update(error_kind="Failed", error=f"the answer cannot be sent: {error}")
            conn.send(failed)

    def _reply_error(self, origin: Origin, kind: str, text: str) -> None:
        self.metrics.answered("error", origin.since)
        self._reply(origin, failed_answer(origin.request_id, kind, text))

    # ------------------------------------------------------------------ transactions

    async def _gather_votes(self, run: Run, request: Prepare) -> None:
        """Two-phase commit, first phase (docs/transactions.md): ask every participant to
        prepare, and the further nodes their votes name; the summary resumes the parked
        commit, whose resume event is the logged decision."""
        asked: set[str] = set()
        writers: set[str] = set()
        todo = set(request.participants) - {self.name}
        refusal: str | None = None
        reach("coordinator-before-prepare")
        while todo and refusal is None:
            asked |= todo
            votes = await asyncio.gather(*(self._ask(m, "prepare", tx=request.tx) for m in todo))
            todo = set()
            for said in votes:
                if isinstance(said, str):
                    refusal = refusal or said
                elif not said["ok"]:
                    refusal = refusal or said["error"] or "a node voted no"
                else:
                    if not said["read_only"]:
                        writers.add(said["machine"])
                    todo |= set(said["participants"]) - asked - {self.name}
        if refusal is None and writers and self.engine.volatile is not None:
            refusal = self.engine.volatile
        nodes = writers if refusal is None else asked
        reach("coordinator-before-decision")
        self.answers[run] = vote(request.tx, refusal, nodes)
        self.wake.set()

    async def _ask(self, machine: str, kind: str, **fields: object) -> Message | str:
        """Send a request to ``machine`` and wait for its answer (a message, with the
        answering machine added), or why there is none (the pending map's timeout)."""
        rid = self.request_ids.next()
        answer: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self.pending.expect(rid, machine, lambda got: answer.done() or answer.set_result(got))
        self._send(machine, message(kind, request_id=rid, **fields), rid)
        got = await answer
        if isinstance(got, str):
            return f"node {machine}: {got}"
        return {**got, "machine": machine}

    async def _on_prepare(self, conn: Connection, msg: Message) -> None:
        """A coordinator asks this node to prepare its part of a transaction: the vote
        leaves once the prepare is durable."""
        tx_id, rid = msg["tx"], msg["request_id"]
        coordinator = self.engine.coordinator_of(tx_id)
        if coordinator not in (None, conn.name):
            refusal = self.engine.vote(tx_id, f"node {conn.name} did not begin it")
            conn.send({**refusal, "request_id": rid})
            return
        step = await self._apply({"k": "prepare", "tx": tx_id})
        if step is None or step.reply is None:
            return  # halting: no vote leaves, and the coordinator's wait for it times out
        reach("participant-after-prepare")
        conn.send({**step.reply, "request_id": rid})

    async def _on_decide(self, conn: Connection, msg: Message) -> None:
        """The coordinator's decision on a part this node holds: apply or roll back, then
        acknowledge (a decision on a part it no longer holds is acknowledged at once)."""
        tx_id, commit = msg["tx"], msg["commit"]
        coordinator = self.engine.coordinator_of(tx_id)
        if coordinator is None:
            if commit:
                conn.send(message("decided", tx=tx_id))
            return
        reach("participant-before-apply")
        if coordinator != conn.name:
            logger.warning("ignored %s's decision on tx:%d: it did not begin it", conn.name, tx_id)
            return
        if await self._apply({"k": "decide", "tx": tx_id, "commit": commit}) is None:
            return  # halting: the decision is asked for again after the restart
        reach("participant-after-apply")
        if commit:
            conn.send(message("decided", tx=tx_id))

    async def _on_decided(self, conn: Connection, msg: Message) -> None:
        if conn.name in self.engine.outcomes.get(msg["tx"], ()):
            await self._apply({"k": "acked", "tx": msg["tx"], "machine": conn.name})

    async def _on_outcome(self, conn: Connection, msg: Message) -> None:
        """A participant asks what became of a transaction this node began."""
        outcome = await self._on_vm(lambda engine: engine.outcome(msg["tx"]))
        conn.send(
            message("outcome_response", request_id=msg["request_id"], tx=msg["tx"], outcome=outcome)
        )

    async def _settle(self) -> None:
        """Finish transactions across nodes that a lost message or a restart left open:
        resend commit decisions not yet acknowledged, and ask coordinators about parts
        that have waited too long (docs/transactions.md, "Failures")."""
        unacked: set[int] = set()
        asking: set[int] = set()
        while not self.stopping:
            await asyncio.sleep(SETTLE_EVERY)
            outcomes = await self._on_vm(lambda engine: dict(engine.outcomes))
            for tx_id in unacked & outcomes.keys():  # waited a whole round already
                for machine in sorted(outcomes[tx_id]):
                    self._send(machine, message("decide", tx=tx_id, commit=True))
            unacked = set(outcomes)
            before = int((time.time() - IDLE_PART_SECONDS) * 1000)
            idle = await self._on_vm(lambda engine, before=before: engine.idle_branches(before))
            for tx_id, coordinator in idle:
                if tx_id not in asking and coordinator in self.links:
                    asking.add(tx_id)
                    task = self._spawn(self._learn_outcome(tx_id, coordinator))
                    task.add_done_callback(lambda _, tx_id=tx_id: asking.discard(tx_id))

    async def _learn_outcome(self, tx_id: int, coordinator: str) -> None:
        answer = await self._ask(coordinator, "outcome", tx=tx_id)
        if isinstance(answer, str) or answer["outcome"] == "pending":
            return
        commit = answer["outcome"] == "commit"
        if await self._apply({"k": "decide", "tx": tx_id, "commit": commit}) is not None and commit:
            self._send(coordinator, message("decided", tx=tx_id))

    # ------------------------------------------------------------------ requests to peers

    def _request(self, run: Run, request: Request, payload: dict[str, Any] | None) -> None:
        """Ship what the parked run waits for; its answer (or failure) resumes it."""
        rid = self.request_ids.next()
        if type(request) is RemoteCall:
            self.counters.remote_calls += 1

        def answered(answer: Answer) -> None:
            if isinstance(answer, str) or not answer["ok"]:
                self.counters.remote_failures += 1
            self.answers[run] = (
                {"fail": answer} if isinstance(answer, str) else answer  # as it came: JSON
            )
            self.wake.set()

        self.pending.expect(rid, request.machine, answered)
        self._send(request.machine, request_message(request, rid, payload, self.name), rid)


def _cannot_join(conn: Connection, outgoing: Message) -> bool:
    """Whether ``outgoing`` is a call that joins a transaction, to a peer too old to."""
    return (
        conn.version < JOINING_PROTOCOL
        and outgoing["type"] == "call"
        and outgoing.get("tx") is not None
    )


def _heavy(conn: Connection) -> bool:
    """Whether the frame being dispatched is large (its values take long to decode)."""
    return conn.frame_size >= LARGE_FRAME
