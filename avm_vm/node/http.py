"""`avm node --http`: the node's HTTP side, on aiohttp, on the node's own event loop.

- ``GET /health``: JSON (name, uptime, peers up or down, events applied, parked runs);
  503 once the node is halting.
- ``GET /metrics``: Prometheus' text format (`avm_vm.node.metrics`).
- ``GET /events``: server-sent events, one trace entry per event as the JSON of
  ``avm run --trace-format json`` (ducts, and ``failure`` on failed calls).
- ``GET /objects``: the objects this node holds, their behavior, fields and state.
- ``GET /``: the live page (avm_vm/node/web/), which reads the endpoints above.

The engine hands each batch of trace entries to `HttpServer.observe` (an `Engine.observers`
hook), which only queues them, each rendered once while a stream is open and not at all
while none is (the last `RECENT_ENTRIES` wait unrendered for streams to come): every
subscriber has a bounded queue, entries that do not fit are dropped and counted, and a
subscriber that takes nothing for `STALL_SECONDS` is cut off, so a slow or dead browser
never holds up a run. With a token, every data endpoint needs
``Authorization: Bearer TOKEN``; the page's static files hold no data and need none (a
browser cannot send the header when it opens a page), and the page sends the token it is
given in its address's fragment (``/#token=...``), which browsers never send to servers.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from avm_vm.node.engine import Engine, _fields
from avm_vm.node.logs import logger
from avm_vm.node.metrics import Gauges, render
from avm_vm.trace import TraceEntry, entry_json
from avm_vm.values import render_within

if TYPE_CHECKING:
    from avm_vm.node.node import Node

QUEUE_ENTRIES = 2_000  # trace entries a subscriber may have waiting before new ones drop
RECENT_ENTRIES = 500  # entries a new subscriber gets first, so a page opens with history
STALL_SECONDS = 10.0  # a subscriber whose queue stays full this long is disconnected
WRITE_SECONDS = 10.0  # a write to a subscriber that takes longer ends its stream
KEEPALIVE_SECONDS = 15.0  # a comment line keeps idle streams (and proxies) open
MAX_SUBSCRIBERS = 64
OBJECTS_SHOWN = 500  # objects /objects lists at most (the count is exact)
VM_WAIT_SECONDS = 2.0  # /objects waits this long for a running batch, then answers 503
STATE_CHARS = 300  # characters of a field's value /objects shows
WEB_FILES = {  # what the page is made of: path → (package file, content type)
    "/": ("index.html", "text/html"),
    "/web/app.js": ("app.js", "text/javascript"),
    "/web/style.css": ("style.css", "text/css"),
}


class Subscriber:
    """One /events stream: the entries waiting for it, and since when none fit."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[int, str] | None] = asyncio.Queue(QUEUE_ENTRIES)
        self.full_since: float | None = None

    def offer(self, item: tuple[int, str]) -> bool:
        """Queue ``item``; False when it does not fit (it is dropped)."""
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            if self.full_since is None:
                self.full_since = time.monotonic()
            return False
        self.full_since = None
        return True

    def end(self) -> None:
        """Wake the stream so it ends (the queue may be full: make room for the marker)."""
        while self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(None)

    @property
    def stalled(self) -> bool:
        since = self.full_since
        return since is not None and time.monotonic() - since > STALL_SECONDS


class HttpServer:
    def __init__(self, node: Node, host: str, port: int, token: str | None) -> None:
        self.node = node
        self.host, self.port = host, port
        self.token = token
        self.subscribers: set[Subscriber] = set()
        # The last entries, numbered, for a new stream to start with; rendered when one does.
        self.recent: deque[tuple[int, TraceEntry]] = deque(maxlen=RECENT_ENTRIES)
        self.sequence = 0  # numbers the entries: the stream's event ids
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loop_thread = 0
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Listen, and have the engine hand over its trace entries."""
        self.loop = asyncio.get_running_loop()
        self.loop_thread = threading.get_ident()
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/events", self._events)
        app.router.add_get("/objects", self._objects)
        for path in WEB_FILES:
            app.router.add_get(path, self._web_file)
        # Streams end on their own when the node stops (`stop`): do not wait a minute.
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port)
        await site.start()
        self.port = self.runner.addresses[0][1]
        self.node.engine.observers.append(self.observe)
        logging.getLogger("aiohttp.server").addFilter(_quiet_bad_requests)
        logger.info("serving http on http://%s:%d/", self.host, self.port)

    async def stop(self) -> None:
        for subscriber in list(self.subscribers):
            subscriber.end()
        if self.runner is not None:
            await self.runner.cleanup()

    # ------------------------------------------------------------------ trace entries

    def observe(self, entries: list[TraceEntry]) -> None:
        """The engine's hook, on the thread that applied the event: hand the entries over
        (a copy: the engine reuses its list)."""
        if threading.get_ident() == self.loop_thread:
            self._fan_out(entries[:])
        elif self.loop is not None:
            self.loop.call_soon_threadsafe(self._fan_out, entries[:])

    def _fan_out(self, entries: list[TraceEntry]) -> None:
        """Number the entries, keep the last for streams to come, and queue each for every
        open stream, rendered once. Of a huge batch (a long run's trace) only the last
        `QUEUE_ENTRIES` can reach anyone, so only those are rendered; the rest count as
        dropped. With no stream open, nothing is rendered."""
        metrics = self.node.metrics
        metrics.trace_entries += len(entries)
        numbers = range(self.sequence + 1, self.sequence + len(entries) + 1)
        self.sequence += len(entries)
        kept = max(len(entries) - RECENT_ENTRIES, 0)
        self.recent.extend(zip(numbers[kept:], entries[kept:], strict=True))
        if not self.subscribers:
            return
        skipped = max(len(entries) - QUEUE_ENTRIES, 0)
        metrics.events_dropped += skipped * len(self.subscribers)
        for number, entry in zip(numbers[skipped:], entries[skipped:], strict=True):
            item = (number, entry_json(entry))
            for subscriber in self.subscribers:
                if not subscriber.offer(item):
                    metrics.events_dropped += 1
        for subscriber in [s for s in self.subscribers if s.stalled]:
            logger.warning(
                "an /events subscriber took nothing for %g s: disconnected", STALL_SECONDS
            )
            self.subscribers.discard(subscriber)
            subscriber.end()

    # ------------------------------------------------------------------ requests

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """With a token, data needs ``Authorization: Bearer TOKEN`` (compared in constant
        time); the page's static files are public."""
        if self.token is not None and request.path not in WEB_FILES:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), self.token.encode()
            ):
                return _error(401, "this node needs Authorization: Bearer TOKEN (--http-token)")
        return await handler(request)

    async def _health(self, request: web.Request) -> web.Response:
        node = self.node
        body = {
            "name": node.name,
            "status": "ok" if node.fatal is None else "halting",
            "uptime_seconds": round(time.monotonic() - node.started, 3),
            "peers": {p["name"]: "up" if p["connected"] else "down" for p in node._peer_table()},
            "events_applied": node.engine.applied,
            "parked_runs": len(node.engine.runtime.parked),
        }
        if node.fatal is not None:
            body["reason"] = node.fatal
        return web.json_response(body, status=200 if node.fatal is None else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        node = self.node
        applied = node.engine.applied
        gauges = Gauges(
            remote_calls=node.counters.remote_calls,
            events_applied=applied,
            events_logged=None if node.config.data is None else applied,
            parked_runs=len(node.engine.runtime.parked),
            peers_up=len(node.links),
            peers_known=len(set(node.config.peers) | set(node.links)),
            subscribers=len(self.subscribers),
            uptime=time.monotonic() - node.started,
        )
        text = render(node.metrics, gauges)
        return web.Response(text=text, content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})  # fmt: skip

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if len(self.subscribers) >= MAX_SUBSCRIBERS:
            return _error(503, f"this node serves at most {MAX_SUBSCRIBERS} /events streams")
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        subscriber = Subscriber()
        for number, entry in self.recent:
            subscriber.offer((number, entry_json(entry)))
        self.subscribers.add(subscriber)
        try:
            await response.write(b": avm node event stream\n\n")
            while True:
                try:
                    first = await asyncio.wait_for(subscriber.queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    chunk = b": keepalive\n\n"
                else:
                    if first is None:
                        break
                    chunk = _sse(_take(subscriber, first))
                await asyncio.wait_for(response.write(chunk), WRITE_SECONDS)
        except (TimeoutError, ConnectionError) as error:
            logger.debug("an /events stream ended: %r", error)
        finally:
            self.subscribers.discard(subscriber)
        return response

    async def _objects(self, request: web.Request) -> web.Response:
        try:
            shown = await asyncio.wait_for(self.node._on_vm(_objects_view), VM_WAIT_SECONDS)
        except TimeoutError:
            return _error(503, "a long run holds the VM: try again shortly")
        return web.json_response(shown)

    async def _web_file(self, request: web.Request) -> web.Response:
        name, kind = WEB_FILES[request.path]
        body = resources.files("avm_vm.node").joinpath("web", name).read_bytes()
        return web.Response(body=body, content_type=kind, charset="utf-8",
                            headers={"Cache-Control": "no-cache"})  # fmt: skip


def _quiet_bad_requests(record: logging.LogRecord) -> bool:
    """A malformed request is the client's problem, answered with a 400 that says why: one
    debug line, not an error with a traceback."""
    error = record.exc_info[1] if record.exc_info else None
    if isinstance(error, HttpProcessingError):
        logger.debug("a bad http request: %s", str(error).replace("\n", " "))
        return False
    return True


def _take(subscriber: Subscriber, first: tuple[int, str] | None) -> list[tuple[int, str]]:
    """``first`` and whatever else waits, up to a few hundred: one write for a burst."""
    items = [first] if first is not None else []
    queue = subscriber.queue
    while len(items) < 256 and not queue.empty():
        item = queue.get_nowait()
        if item is None:  # the stream is ending: put the marker back for the loop
            queue.put_nowait(None)
            break
        items.append(item)
    return items  # type: ignore[return-value]


def _sse(items: list[tuple[int, str]]) -> bytes:
    return "".join(f"id: {number}\ndata: {line}\n\n" for number, line in items).encode()


def _error(status: int, text: str) -> web.Response:
    return web.json_response({"error": text}, status=status)


def _objects_view(engine: Engine) -> dict[str, Any]:
    """The objects here with behavior, fields and state as canonical text (between runs)."""
    runtime = engine.runtime
    store, registry = runtime.store, runtime.registry
    ids = store.ids()
    objects = []
    for object_id in ids[:OBJECTS_SHOWN]:
        record = store.objects[object_id]
        behavior = registry.behavior(record.behavior)
        names = () if behavior is None else _fields(behavior.interpreter.program, record.behavior)
        state = store.state(object_id)
        objects.append(
            {
                "id": object_id,
                "behavior": record.behavior,
                "state": {name: _text(value) for name, value in zip(names, state, strict=False)},
            }
        )
    return {
        "machine": engine.here,
        "object_count": len(ids),
        "objects": objects,
        "behaviors": sorted(registry.behaviors),
    }


def _text(value: Any) -> str:
    text, _ = render_within(value, 10_000, STATE_CHARS)
    return text if text is not None else "…"
