"""One authenticated connection: its outgoing queue, its reader, its keep-alive.

Outgoing messages are framed when queued (`send`), so a message that cannot be framed is
the sender's error at once, and a single writer task keeps the frames of a connection in
order. The keep-alive pings a silent peer and closes the connection when it stays silent,
so a hung or vanished node is noticed even when TCP is not told (spec §11.8 has no
detection at all).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from contextlib import suppress

from avm_vm.node.auth import Hello
from avm_vm.node.messages import Message, message
from avm_vm.node.wire import WireError, encode_frame, read_message

PING_INTERVAL = 1.0  # seconds between pings to a silent peer
DEAD_AFTER = 4.0  # seconds of silence after which a peer is taken for dead
ALIVE_WINDOW = 2 * PING_INTERVAL  # heard within this: the peer is alive (and working)


def log(text: str) -> None:
    """One line on stderr: the node's log."""
    print(text, file=sys.stderr, flush=True)


class Connection:
    """A connection after its handshake, to a peer node or a client."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        hello: Hello,
        dialled: bool,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.name = hello.name
        self.role = hello.role
        self.prefix = hello.prefix
        self.dialled = dialled  # this node opened it
        address = writer.get_extra_info("peername")
        self.address = f"{address[0]}:{address[1]}" if address else "?"
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.closed = asyncio.Event()  # close() was called: nothing more is sent
        self.ended = asyncio.Event()  # reading stopped and the node has forgotten it
        self.heard = time.monotonic()
        self.nonce = 0
        self.broken = False  # closed over a protocol error
        self.received = 0  # messages read
        self.peer_error: str | None = None  # what the peer's `error` message said
        self.linked = False  # a peer node: the node routes to it (it has spoken)

    @property
    def is_node(self) -> bool:
        return self.role == "node"

    def alive(self) -> bool:
        """Heard from lately: a live peer answers the keep-alive within a ping interval."""
        return time.monotonic() - self.heard < ALIVE_WINDOW

    def send(self, outgoing: Message) -> None:
        """Queue a message; raises `WireError` when it cannot be framed (nothing is queued)."""
        if not self.closed.is_set():
            self.queue.put_nowait(encode_frame(outgoing))

    async def serve(
        self,
        dispatch: Callable[[Connection, Message], None],
        on_end: Callable[[Connection], None],
    ) -> None:
        """Read and dispatch messages until the peer leaves or breaks the protocol; then
        close. A bad frame is logged (one line), answered with ``error`` and ends only this
        connection; an exception in ``dispatch`` is logged and the connection goes on.

        ``on_end`` runs the moment reading stops, before any await, so the node never
        routes to (or waits on) a connection that is over; ``ended`` is set right after."""
        writer_task = asyncio.create_task(self._write_loop())
        keepalive = asyncio.create_task(self._keepalive()) if self.is_node else None
        try:
            while True:
                try:
                    incoming = await read_message(self.reader)
                except WireError as error:
                    self.broken = True
                    log(f"closing {self.describe()}: {error}")
                    with suppress(WireError):
                        self.send(message("error", message=str(error)[:500]))
                    break
                except (OSError, asyncio.IncompleteReadError) as error:
                    log(f"connection to {self.describe()} lost: {error}")
                    break
                if incoming is None:
                    break
                self.heard = time.monotonic()
                self.received += 1
                try:
                    dispatch(self, incoming)
                except Exception as error:  # a bug must not take the node down
                    log(f"error handling {incoming['type']} from {self.describe()}: {error!r}")
        finally:
            if keepalive is not None:
                keepalive.cancel()
            try:
                on_end(self)
            except Exception as error:  # a bug must not leave the connection half-open
                log(f"error cleaning up after {self.describe()}: {error!r}")
            self.ended.set()
            self.queue.put_nowait(None)  # the writer flushes what is queued, then stops
            with suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(writer_task, 1.0)
            await self.close()

    async def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        self.writer.close()
        with suppress(OSError, asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)

    def describe(self) -> str:
        return f"{self.role} {self.name} ({self.address})"

    async def _write_loop(self) -> None:
        try:
            while (frame := await self.queue.get()) is not None:
                self.writer.write(frame)
                await self.writer.drain()
        except (OSError, ConnectionError):
            self.writer.close()  # the reader sees the end and cleans up

    async def _keepalive(self) -> None:
        """Ping while the peer is quiet; close when it has said nothing for `DEAD_AFTER`."""
        while not self.closed.is_set():
            await asyncio.sleep(PING_INTERVAL)
            silent = time.monotonic() - self.heard
            if silent >= DEAD_AFTER:
                log(f"{self.describe()} silent for {silent:.1f} s: closing")
                self.writer.close()
                return
            if silent >= PING_INTERVAL:
                self.nonce += 1
                self.send(message("ping", nonce=self.nonce))
