"""One authenticated connection: its outgoing queue, its reader, its keep-alive, its limits.

Outgoing messages are framed when queued (`send`), so a message that cannot be framed is
the sender's error at once, and a single writer task keeps the frames of a connection in
order (`flush` writes what is queued straight away, in the same order, when the node has
finished a batch and the socket takes it all). On a connection authenticated by a shared
secret, frames are tagged as they are queued (queue order is write order, which the
sequence numbers need) and every frame read is checked before it is decoded: a bad tag
closes the connection (docs/wire.md).

The keep-alive pings a silent peer and closes the connection when it stays silent, so a
hung or vanished node is noticed even when TCP is not told (spec §11.8 has no detection at
all).

Backpressure (docs/wire.md, "Limits"): every request the node works on holds a place in its
connection until the answer has been written to the socket. While a connection holds
`Limits.in_flight` requests (or `Limits.in_flight_bytes` of their frames) the connection is
not read at all, so TCP pushes back on a sender that pipelines faster than the node answers,
and one connection cannot fill the node's queue or memory. A connection whose unwritten
output passes `Limits.queued_bytes` does not read what it asked for: it is closed. A client
with nothing in flight that stays silent for `Limits.idle_timeout` is closed as well.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass

from avm_vm.node.auth import Hello
from avm_vm.node.logs import logger
from avm_vm.node.messages import Message, message
from avm_vm.node.wire import (
    HEAD_BYTES,
    LARGE_FRAME,
    MAX_FRAME,
    TAG_BYTES,
    WireError,
    check_tag,
    cut_short,
    decode_payload,
    decode_small,
    encode_frame,
    frame_length,
)

PING_INTERVAL = 1.0  # seconds between pings to a silent peer
DEAD_AFTER = 4.0  # seconds of silence after which a peer is taken for dead
ALIVE_WINDOW = 2 * PING_INTERVAL  # heard within this: the peer is alive (and working)
WATCH_INTERVAL = 1.0  # at most this many seconds between two looks at an idle client
NODE_ROOM = 8  # accepted connections that clients may not take: room for peer nodes
# Answers that free the place of the request carrying the same id (`Connection.hold`).
_ANSWERS = frozenset({"call_response", "object_response"})


@dataclass(frozen=True)
class Limits:
    """What one connection may take of the node (module docstring)."""

    in_flight: int = 256  # requests read and not answered yet
    in_flight_bytes: int | None = 2 * MAX_FRAME  # the frames of those requests (None: any)
    queued_bytes: int = 4 * MAX_FRAME  # output not written yet (one frame always fits)
    idle_timeout: float | None = None  # seconds a client may sit idle (None: for ever)


def peer_address(writer: asyncio.StreamWriter) -> str:
    """HOST:PORT of the other end of a connection, for the log."""
    address = writer.get_extra_info("peername")
    return f"{address[0]}:{address[1]}" if address else "?"


async def refuse(writer: asyncio.StreamWriter, reason: str) -> None:
    """Turn a connection away: log why, tell the peer (an ``error`` message, with "try
    again later"), close it."""
    logger.warning("refused a connection from %s: %s", peer_address(writer), reason)
    with suppress(OSError, RuntimeError):
        writer.write(encode_frame(message("error", message=f"{reason}; try again later")))
    await _shut(writer)


async def _shut(writer: asyncio.StreamWriter) -> None:
    """Close a socket after what was written to it, unless the peer does not take that
    within a second: then drop it, so a peer that does not read cannot keep it open."""
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 1.0)
    except TimeoutError:
        writer.transport.abort()
    except (OSError, asyncio.CancelledError):
        pass


class _Hold:
    """A request's place in its connection (`Connection.hold`)."""

    __slots__ = ("released", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.released = False


# TLS errors that only mean the peer closed the connection first (its close_notify came
# before the last data it had in flight, e.g. when two nodes dial each other and one of the
# two links is dropped): the end of a connection, not an altered record.
_TLS_CLOSED = frozenset({"APPLICATION_DATA_AFTER_CLOSE_NOTIFY"})


class Connection:
    """A connection after its handshake, to a peer node or a client."""

    _dispatch: Callable[[Connection, Message], None]  # what `serve` hands each message

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
        self.version = hello.version  # the wire protocol it speaks
        self.certified = hello.certified  # name and role proved by a TLS certificate
        self.outgoing = hello.outgoing  # frame seals (a shared secret), None otherwise
        self.incoming = hello.incoming
        self.dialled = dialled  # this node opened it
        self.address = peer_address(writer)
        # Frames to write, each with the request place its writing frees; None: stop.
        self.queue: asyncio.Queue[tuple[bytes, _Hold | None] | None] = asyncio.Queue()
        self.closed = asyncio.Event()  # close() was called: nothing more is sent
        self.ended = asyncio.Event()  # reading stopped and the node has forgotten it
        self.heard = time.monotonic()
        self.active = self.heard  # the last time a message was read or output written
        self.nonce = 0
        self.broken = False  # closed over a protocol error
        self.received = 0  # messages read
        self.sent_bytes: Callable[[int], None] | None = None  # counts frames queued
        self.touched: set[Connection] | None = None  # it joins this set when it queues output
        self.peer_error: str | None = None  # what the peer's `error` message said
        self.linked = False  # a peer node: the node routes to it (it has spoken)
        self.limits = Limits()
        self.in_flight = 0  # requests held (`hold`)
        self.in_flight_bytes = 0
        self.queued_bytes = 0  # queued output not written yet
        self.paused = False  # not reading: too many requests in flight
        self.blocked_since: float | None = None  # a write waits for the peer to read
        self.dropped = False  # closed by `drop`: read nothing more
        self._resuming = False  # `_resume` is due
        self._answers: dict[int, list[_Hold]] = {}  # request id → places its answer frees
        self.frame_size = 0  # bytes of the frame being dispatched
        # Reading (`serve`): bytes not framed yet, the decoding of a large frame under way,
        # the end of the peer's stream seen, and what reading ends with.
        self._buffer = bytearray()
        self._aside: asyncio.Task | None = None
        self._eof = False
        self._over: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def is_node(self) -> bool:
        return self.role == "node"

    def alive(self) -> bool:
        """Heard from lately: a live peer answers the keep-alive within a ping interval."""
        return time.monotonic() - self.heard < ALIVE_WINDOW

    def hold(self, request_id: int | None = None) -> _Hold:
        """Count the request being dispatched, and its frame's bytes, against this
        connection's limits until it is let go: by `release` of the returned place, or
        (with ``request_id``) once a ``call_response`` or ``object_response`` carrying that
        id has been written. Call it from ``dispatch``, which knows the frame."""
        place = _Hold(self.frame_size)
        self.in_flight += 1
        self.in_flight_bytes += place.size
        if request_id is not None:
            self._answers.setdefault(request_id, []).append(place)
        return place

    def release(self, place: _Hold) -> None:
        """Let a held request go (once; later calls do nothing)."""
        if place.released:
            return
        place.released = True
        self.in_flight -= 1
        self.in_flight_bytes -= place.size
        if self.paused and not self._resuming:
            # Not now: `release` runs inside the node's writes, which must not dispatch.
            self._resuming = True
            asyncio.get_running_loop().call_soon(self._resume)

    def send(self, outgoing: Message, known: str | None = None) -> None:
        """Queue a message (``known``: its value's text, as for `encode_frame`); raises
        `WireError` when it cannot be framed (nothing is queued). A connection that leaves
        more than `Limits.queued_bytes` unread is closed."""
        if self.closed.is_set():
            return
        frame = encode_frame(outgoing, self.outgoing, known)  # a dropped connection sends no more
        frees = self._place_answered(outgoing)
        queued = self.queued_bytes + len(frame)
        if self.queued_bytes and queued > self.limits.queued_bytes:
            self.drop(
                f"{queued} bytes of output wait for it to read them "
                f"(the limit is {self.limits.queued_bytes})"
            )
            return
        self.queued_bytes = queued
        self.queue.put_nowait((frame, frees))
        if self.touched is not None:
            self.touched.add(self)
        if self.sent_bytes is not None:
            self.sent_bytes(len(frame))

    def flush(self) -> None:
        """Write what is queued now rather than in the writer task's next turn of the
        loop, so answers leave one turn sooner; only while the socket takes everything
        at once (else the writer task waits for it as usual)."""
        if self.closed.is_set() or self.writer.transport.get_write_buffer_size():
            return
        frames: list[tuple[bytes, _Hold | None]] = []
        ended = False
        while not self.queue.empty():
            item = self.queue.get_nowait()
            if item is None:  # the writer's end: it still gets it, after these frames
                ended = True
                break
            frames.append(item)
        if frames:
            self.writer.write(b"".join([frame for frame, _ in frames]))
        if ended:
            self.queue.put_nowait(None)
        if self.writer.transport.get_write_buffer_size():  # the writer task drains these
            for frame, place in frames:
                self.queue.put_nowait((b"", place))  # empty: only its place is let go
                self.queued_bytes -= len(frame)
            return
        self._written(frames)

    def _written(self, frames: list[tuple[bytes, _Hold | None]]) -> None:
        """``frames`` left for the socket: their bytes and places are let go."""
        self.active = time.monotonic()
        for frame, place in frames:
            self.queued_bytes -= len(frame)
            if place is not None:
                self.release(place)

    def frame(self, outgoing: Message) -> bytes:
        """The frame of ``outgoing`` for writing to the socket at once, bypassing the queue
        (only when nothing is queued: it takes the next sequence number)."""
        return encode_frame(outgoing, self.outgoing)

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
        if self.is_node:
            watcher: asyncio.Task | None = asyncio.create_task(self._keepalive())
        elif self.limits.idle_timeout is not None:
            watcher = asyncio.create_task(self._watch_idle(self.limits.idle_timeout))
        else:
            watcher = None
        self._dispatch = dispatch
        try:
            self._take_over()
            await self._over
        finally:
            if watcher is not None:
                watcher.cancel()
            try:
                on_end(self)
            except Exception as error:  # a bug must not leave the connection half-open
                logger.error("error cleaning up after %s: %r", self.describe(), error)
            self.ended.set()
            self.queue.put_nowait(None)  # the writer flushes what is queued, then stops
            with suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(writer_task, 1.0)
            await self.close()

    def _take_over(self) -> None:
        """Read through `_FrameReader` from now on: the bytes the handshake's StreamReader
        already holds are framed first, and an end it already saw ends reading."""
        transport = self.writer.transport
        transport.set_protocol(_FrameReader(self, transport.get_protocol()))
        if not transport.is_closing():
            transport.resume_reading()  # the StreamReader pauses it when its buffer is full
        # The stream's buffer and end flag (no public way to take them over): what the peer
        # sent right behind its handshake, and whether it stopped there.
        held, self.reader._buffer = bytes(self.reader._buffer), bytearray()  # type: ignore[attr-defined]
        if held:
            self._data(held)
        if self.reader._eof or transport.is_closing():  # type: ignore[attr-defined]
            self._end(self.reader.exception())

    def _data(self, data: bytes) -> None:
        """Bytes read (`_FrameReader.data_received`)."""
        if self._over.done():
            return  # reading stopped: whatever follows is not acted on
        self._buffer += data
        if not (self.paused or self._aside is not None):
            self._take_frames()

    def _take_frames(self) -> None:
        """Dispatch every whole frame buffered, in order, until reading must wait: for room
        (`_full`, backpressure) or for a large frame being decoded off the loop."""
        buffer, seal = self._buffer, self.incoming
        tail = HEAD_BYTES + (0 if seal is None else TAG_BYTES)
        start = 0
        now = time.monotonic()
        try:
            while not (self.dropped or self._over.done()):
                if self._full():
                    self._pause()
                    break
                if len(buffer) - start < HEAD_BYTES:
                    break
                length = frame_length(buffer, at=start)
                end = start + tail + length
                if len(buffer) < end:
                    break
                body = start + HEAD_BYTES
                payload = bytes(buffer[body : body + length])
                if seal is not None:
                    tag = bytes(buffer[body + length : end])
                    check_tag(seal, bytes(buffer[start:body]), payload, tag)
                start = end
                if length >= LARGE_FRAME:
                    self._decode_aside(payload)
                    break
                # Values stay in their JSON form: the node logs and forwards that form,
                # and its engine decodes a value once, when a run needs it.
                self._deliver(decode_small(payload, values=False), length, now)
        except WireError as error:
            self._broken(error)
        finally:
            del buffer[:start]
        if self.dropped or (self._eof and not self.paused and self._aside is None):
            self._end(None)

    def _deliver(self, incoming: Message, size: int, now: float) -> None:
        self.heard = self.active = now
        self.received += 1
        self.frame_size = size
        try:
            self._dispatch(self, incoming)
        except Exception as error:  # a bug must not take the node down
            logger.error("error handling %s from %s: %r", incoming["type"], self.describe(), error)

    def _decode_aside(self, payload: bytes) -> None:
        """Decode a large frame off the loop (`decode_payload`), reading nothing meanwhile,
        then go on with the frames behind it."""
        self.writer.transport.pause_reading()

        async def decode() -> None:
            try:
                incoming = await decode_payload(payload, values=False)
            except WireError as error:
                self._aside = None
                self._broken(error)
                return
            self._aside = None
            if self._over.done() or self.dropped:
                return
            self._deliver(incoming, len(payload), time.monotonic())
            self._resume()

        self._aside = asyncio.create_task(decode())

    def _pause(self) -> None:
        """Read nothing while the node holds too much of this connection's work: the socket
        buffers fill and TCP makes the sender wait. `release` makes room."""
        self.paused = True
        self.writer.transport.pause_reading()

    def _resume(self) -> None:
        """Go on reading after a pause (for room or for a large frame)."""
        self._resuming = False
        if self._over.done() or self.closed.is_set() or self._aside is not None:
            return
        if self.paused:
            if self._full():
                return
            self.paused = False
            self.heard = time.monotonic()  # we were not listening: the silence says nothing
        self.writer.transport.resume_reading()
        self._take_frames()

    def _broken(self, error: WireError) -> None:
        """A protocol violation: say why (log and peer), stop reading."""
        if not self.dropped:
            self.broken = True
            logger.warning("closing %s: %s", self.describe(), error)
            with suppress(WireError):
                self.send(message("error", message=str(error)[:500]))
        self._end(None)

    def _end(self, error: BaseException | None) -> None:
        """Reading stops: the peer closed its side (``error`` None: the frames buffered are
        dispatched first, once there is room) or the connection failed."""
        if self._over.done():
            return
        waiting = self.paused or self._aside is not None
        if error is None and waiting and not self.closed.is_set():
            self._eof = True  # `_take_frames` ends reading once it has taken what is left
            return
        if self._aside is not None:
            self._aside.cancel()
        if self.dropped:
            pass  # `drop` said why
        elif error is None:
            if self._buffer and not self.broken:  # the stream ended inside a frame
                length = frame_length(self._buffer) if len(self._buffer) >= HEAD_BYTES else None
                received = len(self._buffer) - (0 if length is None else HEAD_BYTES)
                self._buffer.clear()
                self._broken(cut_short(received, length))  # ends reading
                return
        elif isinstance(error, ssl.SSLError):
            if error.reason in _TLS_CLOSED:  # the peer closed its side first
                logger.debug("connection to %s closed: %s", self.describe(), error)
            else:  # a TLS record altered, dropped or replayed
                self.broken = True
                logger.warning("closing %s: TLS error: %s", self.describe(), error)
        else:
            level = logging.INFO if self.is_node else logging.DEBUG
            logger.log(level, "connection to %s lost: %s", self.describe(), error)
        self._over.set_result(None)

    async def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        await _shut(self.writer)

    def drop(self, reason: str, tell: bool = False) -> None:
        """Close at once and log why. With ``tell`` (nothing may be waiting to be written)
        the peer gets an ``error`` saying why; without, unwritten output is thrown away,
        since a peer that does not read would hold the socket open for ever."""
        if self.closed.is_set():
            return
        self.closed.set()
        self.dropped = True
        logger.warning("closing %s: %s", self.describe(), reason)
        if tell:
            notice = message("error", message=f"the node closes this connection: {reason}")
            self.writer.write(self.frame(notice))
            self.writer.close()  # after what was just written
        else:
            self.writer.transport.abort()

    def describe(self) -> str:
        return f"{self.role} {self.name} ({self.address})"

    def _full(self) -> bool:
        limits = self.limits
        if self.in_flight >= limits.in_flight:
            return True
        return limits.in_flight_bytes is not None and self.in_flight_bytes >= limits.in_flight_bytes

    def _place_answered(self, outgoing: Message) -> _Hold | None:
        """The place an outgoing answer frees once written, if it answers a held request."""
        if outgoing["type"] not in _ANSWERS:
            return None
        places = self._answers.get(outgoing["request_id"])
        if not places:
            return None
        place = places.pop(0)
        if not places:
            del self._answers[outgoing["request_id"]]
        return place

    async def _write_loop(self) -> None:
        try:
            while (item := await self.queue.get()) is not None:
                # Everything queued meanwhile goes in the same write: one system call for a
                # whole batch of answers rather than one per frame.
                batch: list[tuple[bytes, _Hold | None] | None] = [item]
                while not self.queue.empty() and batch[-1] is not None:
                    batch.append(self.queue.get_nowait())
                end = batch[-1] is None
                frames = [entry for entry in batch if entry is not None]
                if self.dropped:
                    return  # nothing more goes out
                self.writer.write(b"".join([frame for frame, _ in frames]))
                if self.writer.transport.get_write_buffer_size():  # the socket is full
                    self.blocked_since = time.monotonic()
                await self.writer.drain()
                self.blocked_since = None
                self._written(frames)
                if end:
                    return
        except (OSError, ConnectionError):
            self.writer.close()  # the reader sees the end and cleans up

    async def _keepalive(self) -> None:
        """Ping while the peer is quiet; close when it has said nothing for `DEAD_AFTER`
        (not counting the time this side did not read it, `_pause`)."""
        while not self.closed.is_set():
            await asyncio.sleep(PING_INTERVAL)
            silent = time.monotonic() - self.heard
            if silent >= DEAD_AFTER and not self.paused:
                self.drop(f"silent for {silent:.1f} s")
                return
            if silent >= PING_INTERVAL:
                self.nonce += 1
                self.send(message("ping", nonce=self.nonce))

    async def _watch_idle(self, timeout: float) -> None:
        """Close a client that asks nothing and says nothing for ``timeout`` seconds, or
        that reads none of its answers for that long."""
        while not self.closed.is_set():
            await asyncio.sleep(min(timeout / 4, WATCH_INTERVAL))
            now = time.monotonic()
            if self.blocked_since is not None:
                if now - self.blocked_since >= timeout:
                    self.drop(f"it has read none of its answers for {timeout:g} s")
                    return
            elif not self.in_flight and self.queue.empty() and now - self.active >= timeout:
                self.drop(f"idle for {timeout:g} s", tell=True)
                return


class _FrameReader(asyncio.Protocol):
    """A connection's protocol after its handshake: the bytes read go straight to
    `Connection._data`, which frames and dispatches all the whole frames of one read in one
    go (no coroutine per frame, no wake-up of a reading task). Flow control and the end of
    the connection go on to the stream protocol it replaces as well, so the connection's
    `StreamWriter` (``drain``, ``close``, ``wait_closed``) works as before."""

    def __init__(self, conn: Connection, streams: asyncio.BaseProtocol) -> None:
        self.conn = conn
        self.streams = streams

    def data_received(self, data: bytes) -> None:
        self.conn._data(data)

    def eof_received(self) -> bool | None:
        self.conn._end(None)
        # The stream protocol's answer: keep a plain socket open for the answers still due.
        return self.streams.eof_received()  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn._end(exc)
        self.streams.connection_lost(exc)

    def pause_writing(self) -> None:
        self.streams.pause_writing()

    def resume_writing(self) -> None:
        self.streams.resume_writing()
