"""A node connection's frame reader (`peers.Connection` after its handshake) and the direct
text of ok call answers (`wire.encode_frame`), against the general paths they shortcut."""

from __future__ import annotations

import asyncio
import json
import re
import struct
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from value_strategies import values

from avm_vm.node.auth import Hello
from avm_vm.node.messages import Message, encode_message, message
from avm_vm.node.peers import Connection, Limits
from avm_vm.node.requests import call_answer
from avm_vm.node.wire import _DECODER, LARGE_FRAME, FrameSeal, _dumps, encode_frame, loads_json
from avm_vm.values import NAT_MAX, Just, Value

KEY = b"k" * 32


def general_text(outgoing: Message) -> bytes:
    """The payload the table's checks and the standard printer make."""
    return _dumps(encode_message(outgoing)).encode("utf-8")


@settings(deadline=None, max_examples=400)
@given(values(), st.integers(0, NAT_MAX))
def test_an_ok_answer_written_directly_is_the_general_text(value: Value, request_id: int) -> None:
    try:
        expected = general_text(call_answer(request_id, value))
    except Exception as error:  # the general way refuses it: so must the direct one
        with pytest.raises(type(error), match=re.escape(str(error))):
            encode_frame(call_answer(request_id, value))
        return
    assert encode_frame(call_answer(request_id, value))[4:] == expected


@pytest.mark.parametrize(
    "answer",
    [
        call_answer(1, Just(2), changed=True),  # a field the direct text does not write
        {**call_answer(1, 5), "request_id": NAT_MAX + 1},
        {**call_answer(1, 5), "request_id": True},
        call_answer(1, "é\u2028"),  # non-ASCII text: the general way checks it
        call_answer(1, None),  # not a value: refused, by the general way
    ],
)
def test_other_answers_take_the_general_way(answer: Message) -> None:
    try:
        expected = general_text(answer)
    except Exception as error:
        with pytest.raises(type(error), match=re.escape(str(error))):
            encode_frame(answer)
        return
    assert encode_frame(answer)[4:] == expected


NAMES = st.text(min_size=1, max_size=8) | st.sampled_from(["alpha", "b-2", "x" * 64, "é"])
IDS = st.integers(0, NAT_MAX) | st.sampled_from([-1, NAT_MAX + 1, True])
LINKS = st.lists(st.tuples(NAMES, IDS, IDS), max_size=3)


@settings(deadline=None, max_examples=400)
@given(values(), IDS, IDS, NAMES, LINKS, st.booleans())
def test_a_call_written_directly_is_the_general_text(
    value: Value, target: int, sender: int, machine: str, duct: list, joined: bool
) -> None:
    call = message(
        "call",
        request_id=7,
        target=target,
        input=value,
        sender=sender,
        sender_machine=machine,
        duct=duct,
        **({"tx": 3, "coordinator": "alpha"} if joined else {}),
    )
    try:
        expected = general_text(call)
    except Exception as error:  # the general way refuses it: so must the direct one
        with pytest.raises(type(error), match=re.escape(str(error))):
            encode_frame(call)
        return
    assert encode_frame(call)[4:] == expected


def test_deep_answers_take_the_general_way() -> None:
    value: Value = 7
    for _ in range(5000):
        value = Just(value)
    assert encode_frame(call_answer(3, value))[4:] == general_text(call_answer(3, value))


# ------------------------------------------------------------------------ the frame reader


def pings(count: int, start: int = 0, seal: FrameSeal | None = None) -> bytes:
    return b"".join(encode_frame(message("ping", nonce=start + i), seal) for i in range(count))


async def serve_bytes(
    chunks: list[bytes],
    *,
    secret: bool = False,
    limits: Limits | None = None,
    answer: Callable[[Connection, Message], None] | None = None,
    close: bool = True,
) -> tuple[list[Message], Connection]:
    """Serve one connection whose peer writes ``chunks`` (one write each, in turns of the
    loop) and then closes; the messages dispatched and the connection."""
    got: list[Message] = []
    served: asyncio.Future[Connection] = asyncio.get_running_loop().create_future()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hello = Hello(1, "peer", "client", "0" * 64, 1)
        if secret:
            hello = Hello(1, "peer", "client", "0" * 64, 1, False, FrameSeal(KEY), FrameSeal(KEY))
        conn = Connection(reader, writer, hello, dialled=False)
        if limits is not None:
            conn.limits = limits

        def dispatch(conn: Connection, incoming: Message) -> None:
            got.append(incoming)
            if answer is not None:
                answer(conn, incoming)

        await conn.serve(dispatch, lambda _: None)
        served.set_result(conn)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    for chunk in chunks:
        writer.write(chunk)
        await writer.drain()
        await asyncio.sleep(0.001)
    if close:
        writer.close()
    conn = await asyncio.wait_for(served, 20)
    writer.close()
    server.close()
    await server.wait_closed()
    return got, conn


def split_everywhere(data: bytes, step: int) -> list[bytes]:
    return [data[i : i + step] for i in range(0, len(data), step)]


@pytest.mark.parametrize("step", [1, 3, 7, 1000])
@pytest.mark.parametrize("secret", [False, True], ids=["plain", "sealed"])
def test_frames_split_anywhere_arrive_whole_and_in_order(step: int, secret: bool) -> None:
    data = pings(40, seal=FrameSeal(KEY) if secret else None)
    got, conn = asyncio.run(serve_bytes(split_everywhere(data, step), secret=secret))
    assert [m["nonce"] for m in got] == list(range(40))
    assert conn.received == 40 and not conn.broken


def test_a_stream_that_ends_inside_a_frame_is_a_broken_connection() -> None:
    data = pings(3)
    got, conn = asyncio.run(serve_bytes([data[:-2]]))
    assert [m["nonce"] for m in got] == [0, 1] and conn.broken


def test_a_bad_tag_stops_reading_before_the_frame_is_acted_on() -> None:
    data = bytearray(pings(4, seal=FrameSeal(KEY)))
    data[-40] ^= 1  # inside the last frame's payload
    got, conn = asyncio.run(serve_bytes([bytes(data)], secret=True))
    assert [m["nonce"] for m in got] == [0, 1, 2] and conn.broken


def test_an_oversized_length_ends_the_connection_unread() -> None:
    got, conn = asyncio.run(serve_bytes([pings(1) + struct.pack(">I", 1 << 30) + b"x" * 100]))
    assert len(got) == 1 and conn.broken


def test_a_large_frame_is_decoded_aside_and_frames_behind_it_keep_their_order() -> None:
    big = encode_frame(message("error", message="x" * (LARGE_FRAME + 10)))
    data = pings(2) + big + pings(2, start=2)
    got, conn = asyncio.run(serve_bytes(split_everywhere(data, 4096)))
    assert [m["type"] for m in got] == ["ping", "ping", "error", "ping", "ping"]
    assert [m["nonce"] for m in got if m["type"] == "ping"] == [0, 1, 2, 3]
    assert not conn.broken


def test_a_full_connection_is_not_read_until_its_requests_are_answered() -> None:
    """With room for 2 requests, each held until released later: the reader pauses after
    the second frame and goes on only as places are let go, and nothing is lost."""
    held: list[tuple[Connection, object, int]] = []
    most: list[int] = []

    def hold(conn: Connection, incoming: Message) -> None:
        held.append((conn, conn.hold(), incoming["nonce"]))
        most.append(conn.in_flight)
        asyncio.get_running_loop().call_later(0.005, release_one)

    def release_one() -> None:
        conn, place, _ = held.pop(0)
        conn.release(place)  # type: ignore[arg-type]

    async def run() -> tuple[list[Message], Connection]:
        return await serve_bytes([pings(30)], limits=Limits(in_flight=2), answer=hold)

    got, conn = asyncio.run(run())
    assert [m["nonce"] for m in got] == list(range(30))
    assert max(most) == 2 and not conn.broken


JSON_TEXT = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=8,
).map(lambda obj: json.dumps(obj, separators=(",", ":")))


@settings(deadline=None, max_examples=400)
@given(JSON_TEXT, st.sampled_from(["", " ", "\n"]), st.sampled_from(["", " ", "x", ",1", "}"]))
def test_the_direct_scan_parses_and_refuses_as_the_library_does(
    text: str, before: str, after: str
) -> None:
    """`loads_json` scans a frame's text directly; around it, text takes the library's
    way: the same values and the same errors either way."""
    text = before + text + after
    try:
        expected = _DECODER.decode(text)
    except ValueError as error:
        with pytest.raises(ValueError, match=re.escape(str(error))):
            loads_json(text)
        return
    assert loads_json(text) == expected
