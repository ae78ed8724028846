"""The node wire protocol: value codec, JSON text, framing, messages, handshake (docs/wire.md)."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from value_strategies import values

from avm_vm.node import OLDEST_PROTOCOL_VERSION, PROTOCOL_VERSION, auth, codec, messages, wire
from avm_vm.node.auth import (
    HANDSHAKE_MAX_FRAME,
    HandshakeError,
    Hello,
    auth_mac,
    frame_keys,
    handshake,
    is_loopback_peer,
    transcript_hash,
)
from avm_vm.node.codec import WireError, value_from_json, value_to_json
from avm_vm.node.messages import KINDS, RequestIds, message
from avm_vm.node.wire import MAX_FRAME, encode_frame, read_message
from avm_vm.values import NAT_MAX, NOTHING, Just, ObjectRef, Pair, TxRef, Value, values_equal

VALUES = values()


def frame_of(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def reader_of(data: bytes, eof: bool = True) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return reader


def read_all(data: bytes) -> list[dict[str, Any]]:
    """Every message in ``data`` (a stream that then ends cleanly)."""

    async def go() -> list[dict[str, Any]]:
        reader, out = reader_of(data), []
        while (received := await read_message(reader)) is not None:
            out.append(received)
        return out

    return asyncio.run(go())


def read_one(data: bytes, eof: bool = True) -> dict[str, Any] | None:
    # wait_for only guards against a hang (a reader that waits for bytes that never come).
    async def go() -> dict[str, Any] | None:
        return await asyncio.wait_for(read_message(reader_of(data, eof)), 10)

    return asyncio.run(go())


def deep(depth: int, wrap: Callable[[Value], Value]) -> Value:
    value: Value = 7
    for _ in range(depth):
        value = wrap(value)
    return value


# --- Value codec ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "form"),
    [
        (5, {"Nat": 5}),
        (True, {"Bool": True}),
        ("x", {"Str": "x"}),
        ((1, 2), {"List": [{"Nat": 1}, {"Nat": 2}]}),
        (Pair(1, "a"), {"Pair": [{"Nat": 1}, {"Str": "a"}]}),
        (NOTHING, "Nothing"),
        (Just(False), {"Just": {"Bool": False}}),
        (ObjectRef(7), {"ObjectRef": 7}),
        (TxRef(3), {"TxRef": 3}),
        ((), {"List": []}),
        (NAT_MAX, {"Nat": NAT_MAX}),
    ],
)
def test_each_kind_has_the_spec_json_form(value: Value, form: object) -> None:
    assert value_to_json(value) == form
    assert values_equal(value_from_json(form), value)


@settings(deadline=None, max_examples=300)
@given(VALUES)
def test_fast_and_careful_value_conversions_agree(value: Value) -> None:
    """Shallow values take recursive fast paths; they must give exactly what the iterative
    conversions give (and deep ones must still convert)."""
    form = codec._value_to_json(value)
    assert value_to_json(value) == form
    assert values_equal(value_from_json(form), codec._value_from_json(form))
    deep: Value = value
    for _ in range(200):
        deep = Just(deep)
    assert values_equal(value_from_json(value_to_json(deep)), deep)


@settings(deadline=None, max_examples=300)
@given(VALUES)
def test_values_round_trip_through_json_and_frames(value: Value) -> None:
    form = value_to_json(value)
    assert values_equal(value_from_json(json.loads(json.dumps(form))), value)
    call = message(
        "call",
        request_id=1,
        target=2,
        input=value,
        sender=3,
        sender_machine="alpha",
        duct=[],
    )
    (received,) = read_all(encode_frame(call))
    assert values_equal(received["input"], value)


@pytest.mark.parametrize(
    "wrap",
    [Just, lambda v: (v,), lambda v: Pair(v, NOTHING), lambda v: Pair(0, v)],
    ids=["just", "list", "pair-first", "pair-second"],
)
def test_deep_values_round_trip_without_recursion(wrap: Callable[[Value], Value]) -> None:
    value = deep(20_000, wrap)  # far past the interpreter's recursion limit
    assert values_equal(value_from_json(value_to_json(value)), value)
    (received,) = read_all(frame_of_call(value))
    assert values_equal(received["input"], value)


def frame_of_call(value: Value) -> bytes:
    return encode_frame(
        message(
            "call",
            request_id=1,
            target=1,
            input=value,
            sender=1,
            sender_machine="a",
            duct=[],
        )
    )


def test_values_deeper_than_the_limit_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "MAX_VALUE_DEPTH", 50)
    assert values_equal(value_from_json(value_to_json(deep(50, Just))), deep(50, Just))
    with pytest.raises(WireError, match="deeper than 50"):
        value_to_json(deep(51, Just))
    form: object = {"Nat": 1}
    for _ in range(51):
        form = {"List": [form]}
    with pytest.raises(WireError, match="deeper than 50"):
        value_from_json(form)


@pytest.mark.parametrize(
    ("form", "problem"),
    [
        ({"Nat": -1}, "Nat must be an integer"),
        ({"Nat": NAT_MAX + 1}, "Nat must be an integer"),
        ({"Nat": 1.0}, "Nat must be an integer"),
        ({"Nat": True}, "Nat must be an integer"),
        ({"Nat": "5"}, "Nat must be an integer"),
        ({"ObjectRef": -3}, "ObjectRef must be an integer"),
        ({"TxRef": 2**64}, "TxRef must be an integer"),
        ({"Bool": 1}, "Bool must be true or false"),
        ({"Str": 5}, "Str must be a string"),
        ({"Str": "\ud800"}, "lone surrogate"),
        ({"List": {"Nat": 1}}, "List must be an array"),
        ({"Pair": [{"Nat": 1}]}, "Pair must be an array of 2"),
        ({"Pair": [{"Nat": 1}, {"Nat": 2}, {"Nat": 3}]}, "Pair must be an array of 2"),
        ({"Just": {"Nat": -1}}, "Nat must be an integer"),
        ({"List": [{"Nat": 1}, "nothing"]}, "the only bare string"),
        ({"Foo": 1}, "unknown tag"),
        ({}, "one tag"),
        ({"Nat": 1, "Bool": True}, "one tag"),
        ([1], "one tag"),
        (5, "one tag"),
        (None, "one tag"),
        ("Just", "the only bare string"),
    ],
)
def test_bad_value_forms_are_named(form: object, problem: str) -> None:
    with pytest.raises(WireError, match=problem):
        value_from_json(form)


@pytest.mark.parametrize("item", [1.5, None, [1], -1, NAT_MAX + 1, Pair(1, None), ObjectRef(-1)])
def test_python_objects_that_are_no_values_are_refused(item: object) -> None:
    with pytest.raises(WireError):
        value_to_json((1, item))  # type: ignore[arg-type]


# --- JSON text: the iterative parser and printer agree with the standard library ---------------

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=25,
)


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(JSON, st.sampled_from([None, 1]))
def test_deep_json_paths_agree_with_the_standard_library(obj: object, indent: int | None) -> None:
    for sort_keys in (False, True):
        library = json.dumps(
            obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"), sort_keys=sort_keys
        )
        assert wire.dumps_json(obj, sort_keys) == library
        assert wire._dumps_deep(obj, sort_keys) == library
    text = json.dumps(obj, indent=indent, ensure_ascii=indent is None)
    assert wire._parse_deep(text) == wire._DECODER.decode(text)


class Small(enum.IntEnum):
    THREE = 3


@pytest.mark.parametrize(
    "obj",
    [
        {7: "a", 2.5: "b", True: "c", None: "d", "x": [Small.THREE, 1.5, -0.0, None]},
        [1e300, 'é\n"', (1, 2), {}],
    ],
)
def test_deep_printer_writes_keys_and_subclasses_like_json(obj: object) -> None:
    assert wire._dumps_deep(obj) == wire.dumps_json(obj)


@pytest.mark.parametrize("obj", [{(1, 2): 1}, [float("nan")], {"x": float("inf")}, {1, 2}])
def test_both_json_printers_refuse_the_same_objects(obj: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        wire.dumps_json(obj)
    with pytest.raises((TypeError, ValueError)):
        wire._dumps_deep(obj)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        "[1,]",
        '{"a":1,}',
        '{"a" 1}',
        "{1:2}",
        "NaN",
        "[Infinity]",
        "[-Infinity]",
        '{"a":1,"a":2}',
        "tru",
        '"\x01"',
        "01",
        "1 2",
        "[1]]",
        '"abc',
        "[1 2]",
        "1" * 5000,
    ],
)
def test_both_json_parsers_refuse_the_same_bad_text(text: str) -> None:
    with pytest.raises(ValueError):
        wire._DECODER.decode(text)
    with pytest.raises(ValueError):
        wire._parse_deep(text)


def test_deep_json_parser_limits_nesting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire, "MAX_JSON_DEPTH", 10)
    assert wire._parse_deep("[" * 10 + "]" * 10) is not None
    with pytest.raises(ValueError, match="deeper than 10"):
        wire._parse_deep("[" * 11 + "]" * 11)
    with pytest.raises(ValueError, match="deeper than 10"):
        wire._dumps_deep(json.loads("[" * 11 + "]" * 11))


def test_deeply_nested_junk_frames_are_refused_cleanly() -> None:
    with pytest.raises(WireError, match="not valid JSON"):
        read_one(frame_of(b"[" * 100_000))
    with pytest.raises(WireError, match="unknown message type"):
        read_one(frame_of(b'{"type":' + b"[" * 5_000 + b"]" * 5_000 + b"}"))


# --- Framing -------------------------------------------------------------------------------------


def test_clean_end_of_stream_reads_as_none() -> None:
    assert read_one(b"") is None


def test_an_oversized_length_is_refused_before_the_payload_arrives() -> None:
    # No payload and no end of stream: reading the payload would wait for ever.
    with pytest.raises(WireError, match="over the limit"):
        read_one(struct.pack(">I", MAX_FRAME + 1), eof=False)
    assert read_one(frame_of(b'{"type":"pong","nonce":3}'))["nonce"] == 3  # type: ignore[index]


def test_a_frame_of_exactly_the_limit_is_read() -> None:
    body = b'{"type":"error","message":"' + b"x" * (MAX_FRAME - 29) + b'"}'
    assert len(body) == MAX_FRAME
    assert len(read_one(frame_of(body))["message"]) == MAX_FRAME - 29  # type: ignore[index]


def test_an_oversized_outgoing_message_is_refused() -> None:
    with pytest.raises(WireError, match="over"):
        encode_frame(message("error", message="x" * MAX_FRAME))


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"\x00\x00", "inside a length prefix"),
        (struct.pack(">I", 10) + b'{"type"', "inside a frame \\(7 of 10 bytes\\)"),
        (frame_of(b'{"type":"error","message":"\xff"}'), "not valid UTF-8"),
        (frame_of(b'{"type":"error","message":"\xc3"}'), "not valid UTF-8"),
        (frame_of(b""), "not valid JSON"),
        (frame_of(b'{"type":"ping","nonce":1'), "not valid JSON"),
        (frame_of(b'{"type":"ping","nonce":NaN}'), "not valid JSON"),
        (frame_of(b'{"type":"ping","type":"ping","nonce":1}'), "duplicate key"),
        (frame_of(b"[1, 2]"), "must be a JSON object, got list"),
        (frame_of(b"7"), "must be a JSON object, got int"),
        (frame_of(b'{"nonce":1}'), "no type field"),
        (frame_of(b'{"type":3,"nonce":1}'), "unknown message type 3"),
        (frame_of(b'{"type":"Ping","nonce":1}'), "unknown message type 'Ping'"),
        (frame_of(b'{"type":"ping"}'), "ping message lacks field 'nonce'"),
        (frame_of(b'{"type":"ping","nonce":1,"x":0}'), "unexpected field 'x'"),
        (frame_of(b'{"type":"ping","nonce":-1}'), "ping.nonce must be an integer"),
        (frame_of(b'{"type":"ping","nonce":1.0}'), "ping.nonce must be an integer"),
        (frame_of(b'{"type":"ping","nonce":true}'), "ping.nonce must be an integer"),
        (frame_of(b'{"type":"ping","nonce":18446744073709551616}'), "ping.nonce"),
        (frame_of(b'{"type":"error","message":null}'), "error.message must be a string"),
        (frame_of(b'{"type":"error","message":"\\udc00"}'), "lone surrogate"),
        (frame_of(b'{"type":"destroy_notify","object_id":"1"}'), "destroy_notify.object_id"),
        (frame_of(b'{"type":"create_notify","object_id":1,"machine_id":""}'), "machine_id"),
        (frame_of(b'{"type":"create_notify","object_id":1,"machine_id":"a|b"}'), "machine_id"),
        (frame_of(b'{"type":"auth","mac":"ABCD"}'), "auth.mac must be 64 lower-case hex"),
        (frame_of(b'{"type":"move_object","request_id":1,"object_id":2,"object":[]}'), "object"),
        (frame_of(b'{"type":"status_response","request_id":1,"status":null}'), "status"),
    ],
)
def test_malformed_frames_raise_wire_errors(data: bytes, problem: str) -> None:
    with pytest.raises(WireError, match=problem):
        read_one(data)


CALL = {
    "type": "call",
    "request_id": 1,
    "target": 2,
    "input": {"Nat": 1},
    "sender": 3,
    "sender_machine": "alpha",
    "duct": [["alpha", 3, 9]],
}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"input": {"Nat": -1}}, "call.input Nat must be an integer"),
        ({"input": {"Pair": []}}, "call.input Pair must be an array of 2"),
        ({"input": None}, "call.input"),
        ({"duct": [["alpha", 3]]}, "call.duct must be a list of"),
        ({"duct": [["alpha", -3, 0]]}, "call.duct"),
        ({"duct": [[1, 3, 0]]}, "call.duct"),
        ({"duct": {}}, "call.duct"),
        ({"target": None}, "call.target"),
        ({"sender_machine": 5}, "call.sender_machine"),
    ],
)
def test_bad_call_fields_are_named(change: dict[str, object], problem: str) -> None:
    with pytest.raises(WireError, match=problem):
        read_one(frame_of(json.dumps({**CALL, **change}).encode()))


@pytest.mark.parametrize(
    "fields",
    [
        {"ok": True, "value": None, "error_kind": None, "error": None},
        {"ok": True, "value": {"Nat": 1}, "error_kind": "ObjNotFound", "error": None},
        {"ok": True, "value": {"Nat": 1}, "error_kind": None, "error": "boom"},
        {"ok": False, "value": {"Nat": 1}, "error_kind": "ObjNotFound", "error": "boom"},
        {"ok": False, "value": None, "error_kind": None, "error": "boom"},
        {"ok": False, "value": None, "error_kind": "ObjNotFound", "error": None},
    ],
)
def test_inconsistent_answers_are_refused(fields: dict[str, object]) -> None:
    body = json.dumps({"type": "call_response", "request_id": 1, **fields}).encode()
    with pytest.raises(WireError, match="inconsistent"):
        read_one(frame_of(body))
    python_fields = dict(fields)
    if python_fields["value"] is not None:
        python_fields["value"] = 1
    with pytest.raises(WireError, match="inconsistent"):
        encode_frame(message("call_response", request_id=1, **python_fields))


NONCE = "ab" * 32
EXAMPLES: dict[str, dict[str, object]] = {
    "hello": {"version": 1, "name": "alpha", "role": "node", "nonce": NONCE, "prefix": 65535},
    "auth": {"mac": "0f" * 32},
    "error": {"message": "frame of 99999999 bytes is over the limit"},
    "call": {
        "request_id": (9001 << 48) + 1,
        "target": 9002 << 48,
        "input": ("Ping", 0, 3, ObjectRef(9001 << 48)),
        "sender": 9001 << 48,
        "sender_machine": "alpha",
        "duct": [("alpha", 9001 << 48, 4)],
    },
    "call_response": {
        "request_id": 5,
        "ok": True,
        "value": Just(("done", 3)),
        "error_kind": None,
        "error": None,
    },
    "create_notify": {"object_id": 9002 << 48, "machine_id": "beta"},
    "destroy_notify": {"object_id": 9002 << 48},
    "ping": {"nonce": 17},
    "pong": {"nonce": 17},
    "move_object": {"request_id": 6, "object_id": 4, "object": {"behavior": "pong", "state": []}},
    "fetch_object": {"request_id": 7, "object_id": 4, "to_machine": "alpha"},
    "object_response": {
        "request_id": 7,
        "ok": False,
        "object": None,
        "error_kind": "BehaviorNotFound",
        "error": 'behavior not found: "pong"',
    },
    "teleport": {"request_id": 8, "activation": {"frames": [[0, 12, [1, 2]]]}},
    "prepare": {"request_id": 16, "tx": (9001 << 48) + 3},
    "vote": {
        "request_id": 16,
        "tx": (9001 << 48) + 3,
        "ok": False,
        "read_only": False,
        "participants": ["gamma"],
        "error": "node beta: obj:4 changed after the transaction read it",
    },
    "decide": {"tx": (9001 << 48) + 3, "commit": True},
    "decided": {"tx": (9001 << 48) + 3},
    "outcome": {"request_id": 17, "tx": (9001 << 48) + 3},
    "outcome_response": {"request_id": 17, "tx": (9001 << 48) + 3, "outcome": "pending"},
    "client_call": {"request_id": 9, "target": 4, "input": Pair("x", TxRef(2))},
    "client_create": {"request_id": 10, "behavior": "pong", "controller": None},
    "status": {"request_id": 11},
    "status_response": {"request_id": 11, "status": {"objects": [], "uptime": 1.5}},
    "state_hash": {"request_id": 12},
    "state_hash_response": {"request_id": 12, "state_hash": NONCE, "events": 7},
    "snapshot": {"request_id": 13},
    "snapshot_response": {"request_id": 13, "index": 7, "state_hash": NONCE},
    "peek": {"request_id": 14, "object_id": 3},
    "peek_response": {"request_id": 14, "object": None},
    "load": {"request_id": 15, "tape": "QVZN"},
    "load_response": {"request_id": 15, "behaviors": {"ping": NONCE}},
    "intent": {
        "request_id": 16,
        "target": 4,
        "offer": ("give", "apple", (ObjectRef(5),)),
        "check": ("want", "cherry"),
        "wait_ms": 60_000,
    },
    "intent_response": {"request_id": 16, "intent": 1},
    "intent_status": {"request_id": 17, "intent": 1},
    "intent_status_response": {"request_id": 17, "report": {"intent": 1, "state": "pending"}},
}


def test_every_kind_has_an_example() -> None:
    assert EXAMPLES.keys() == KINDS.keys()


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_every_kind_round_trips(kind: str) -> None:
    sent = message(kind, **EXAMPLES[kind])
    (received,) = read_all(encode_frame(sent))
    assert received.keys() == sent.keys()
    for name, value in sent.items():
        if isinstance(KINDS[kind].fields.get(name), messages.Val):
            assert values_equal(received[name], value)  # type: ignore[arg-type]
        else:
            assert received[name] == value
            assert type(received[name]) is type(value)


def read_or_refuse(data: bytes) -> None:
    """Reading ``data`` gives messages, or a ``WireError``; nothing else escapes."""
    with contextlib.suppress(WireError):
        read_all(data)


VALID_FRAMES = [encode_frame(message(kind, **fields)) for kind, fields in EXAMPLES.items()]


@settings(deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(VALID_FRAMES),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=4),
    st.integers(1, 400),
)
def test_damaged_frames_only_ever_raise_wire_errors(
    frame: bytes, edits: list[tuple[int, int]], cut: int
) -> None:
    damaged = bytearray(frame)
    for position, byte in edits:
        damaged[4 + position % (len(frame) - 4)] = byte
    read_or_refuse(bytes(damaged))
    read_or_refuse(frame[: max(1, len(frame) - cut)])


@settings(deadline=None, max_examples=200)
@given(st.binary(max_size=64), JSON)
def test_random_bytes_and_json_only_ever_raise_wire_errors(data: bytes, obj: object) -> None:
    read_or_refuse(data)
    read_or_refuse(frame_of(json.dumps({**CALL, "input": obj}).encode()))


def test_several_messages_share_a_stream() -> None:
    sent = [message("ping", nonce=n) for n in range(5)]
    assert read_all(b"".join(encode_frame(m) for m in sent)) == sent


@pytest.mark.parametrize(
    ("kind", "fields", "problem"),
    [
        ("nope", {}, "unknown message type"),
        ("ping", {}, "missing fields \\['nonce'\\]"),
        ("ping", {"nonce": 1, "extra": 2}, "unexpected fields \\['extra'\\]"),
    ],
)
def test_message_checks_field_names(kind: str, fields: dict[str, object], problem: str) -> None:
    with pytest.raises(WireError, match=problem):
        message(kind, **fields)


@pytest.mark.parametrize(
    ("kind", "fields", "problem"),
    [
        ("ping", {"nonce": -1}, "ping.nonce"),
        ("ping", {"nonce": True}, "ping.nonce"),
        ("hello", {**EXAMPLES["hello"], "prefix": 65536}, "hello.prefix"),
        ("hello", {**EXAMPLES["hello"], "role": "admin"}, "hello.role"),
        ("hello", {**EXAMPLES["hello"], "nonce": "ab"}, "hello.nonce"),
        ("call", {**EXAMPLES["call"], "input": [1, 2]}, "call.input"),
        ("call", {**EXAMPLES["call"], "input": 2**64}, "call.input"),
        ("status_response", {"request_id": 1, "status": {"x": {1, 2}}}, "cannot be written"),
        ("status_response", {"request_id": 1, "status": {"x": float("nan")}}, "cannot be"),
        ("error", {"message": "\ud800"}, "lone surrogate"),
    ],
)
def test_bad_outgoing_messages_are_refused(
    kind: str, fields: dict[str, object], problem: str
) -> None:
    with pytest.raises(WireError, match=problem):
        encode_frame(message(kind, **fields))


def test_request_ids_carry_the_node_prefix() -> None:
    ids = RequestIds(9001)
    assert [ids.next(), ids.next()] == [9001 << 48, (9001 << 48) + 1]
    assert RequestIds(0).next() != RequestIds(1).next()
    with pytest.raises(ValueError, match="16 bits"):
        RequestIds(65536)


# --- Handshake over real sockets on 127.0.0.1 -------------------------------------------------

Side = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[object]]


def connect(server_side: Side, client_side: Side) -> tuple[object, object]:
    """Run ``client_side`` on a fresh connection to a server running ``server_side``.

    Each side's result is what it returned or the exception it raised.
    """

    async def outcome(side: Side, reader: asyncio.StreamReader, writer: Any) -> object:
        try:
            return await side(reader, writer)
        except Exception as error:
            return error

    async def go() -> tuple[object, object]:
        served: asyncio.Future[object] = asyncio.get_running_loop().create_future()

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            served.set_result(await outcome(server_side, reader, writer))
            writer.close()

        server = await asyncio.start_server(accept, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            client = await outcome(client_side, reader, writer)
            writer.close()
            return client, await asyncio.wait_for(served, 10)

    return asyncio.run(go())


def node(name: str, secret: bytes | None, *, initiator: bool, timeout: float = 5.0) -> Side:
    async def side(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Hello:
        hello = await handshake(
            reader,
            writer,
            name=name,
            role="node",
            secret=secret,
            prefix=7 if initiator else 8,
            timeout=timeout,
            initiator=initiator,
        )
        if initiator:
            # Both ends can still talk after the handshake (tagged frames with a secret).
            assert (await read_message(reader, hello.incoming)) == message("pong", nonce=0)
        else:
            await wire.write_message(writer, message("pong", nonce=0), hello.outgoing)
        return hello

    return side


@pytest.mark.parametrize("secret", [None, b"s3cret"], ids=["loopback", "secret"])
def test_handshake_succeeds(secret: bytes | None) -> None:
    client, server = connect(
        node("beta", secret, initiator=False), node("alpha", secret, initiator=True)
    )
    version = PROTOCOL_VERSION
    assert client == Hello(version=version, name="beta", role="node", nonce=client.nonce, prefix=8)  # type: ignore[union-attr]
    assert server == Hello(version=version, name="alpha", role="node", nonce=server.nonce, prefix=7)  # type: ignore[union-attr]
    assert client.nonce != server.nonce  # type: ignore[union-attr]
    # Frames are tagged exactly when a secret is set.
    assert (client.outgoing is None) == (secret is None)  # type: ignore[union-attr]


def test_wrong_secret_fails_on_both_sides() -> None:
    client, server = connect(
        node("beta", b"one", initiator=False), node("alpha", b"two", initiator=True)
    )
    assert isinstance(server, HandshakeError)
    assert "authentication failed" in str(server)
    assert isinstance(client, HandshakeError)
    assert "refused the handshake: authentication failed" in str(client)


def test_a_peer_without_the_secret_is_refused() -> None:
    client, server = connect(
        node("beta", b"one", initiator=False), raw_peer(message("ping", nonce=1))
    )
    assert isinstance(server, HandshakeError)
    assert "expected the peer's auth message" in str(server)
    assert client == ["hello", "error"]


def raw_peer(
    *sends: dict[str, Any],
    version: int = PROTOCOL_VERSION,
    nonce: str = NONCE,
    echo_nonce: bool = False,
) -> Side:
    """A hand-driven initiator: says hello, sends ``sends``, returns the kinds it receives."""

    async def side(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> list[str]:
        first = await read_message(reader)
        assert first is not None
        if first["type"] == "error":  # refused at once; anything sent now could meet a reset
            return ["error"]
        hello = {"version": version, "name": "mallory", "role": "node", "prefix": 1}
        hello["nonce"] = first["nonce"] if echo_nonce else nonce
        await wire.write_message(writer, message("hello", **hello))
        for outgoing in sends:
            await wire.write_message(writer, outgoing)
        kinds = [first["type"]]
        while (received := await read_message(reader)) is not None:
            kinds.append(received["type"])
        return kinds

    return side


def test_version_mismatch_names_both_versions() -> None:
    later = PROTOCOL_VERSION + 1
    client, server = connect(node("beta", None, initiator=False), raw_peer(version=later))
    assert isinstance(server, HandshakeError)
    speaks = f"this side speaks {OLDEST_PROTOCOL_VERSION} to {PROTOCOL_VERSION}"
    assert f"{speaks}, the peer speaks {later}" in str(server)
    assert client == ["hello", "error"]


def test_a_peer_of_the_previous_version_is_served() -> None:
    """Protocol 3 only added to protocol 2 (transactions across nodes), so a version-2 peer
    still connects; the node never sends it a call that joins a transaction."""
    _, server = connect(node("beta", None, initiator=False), raw_peer(version=2))
    assert not isinstance(server, Exception) and server.version == 2


def test_a_big_frame_before_the_handshake_is_refused_unread() -> None:
    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(struct.pack(">I", HANDSHAKE_MAX_FRAME + 1))  # and no payload, ever
        await writer.drain()
        await reader.read()

    _, server = connect(node("beta", None, initiator=False), flood)
    assert isinstance(server, HandshakeError)
    assert f"over the limit of {HANDSHAKE_MAX_FRAME}" in str(server)


def test_a_reflected_nonce_is_refused() -> None:
    client, server = connect(node("beta", None, initiator=False), raw_peer(echo_nonce=True))
    assert "our own nonce" in str(server)
    assert client == ["hello", "error"]


def test_a_replayed_mac_is_refused() -> None:
    # A MAC that was right for some earlier connection (an earlier responder nonce) ...
    ours = {"version": PROTOCOL_VERSION, "name": "mallory", "role": "node", "nonce": NONCE}
    theirs = {**ours, "name": "beta", "nonce": "cd" * 32}
    earlier = transcript_hash(
        encode_frame(message("hello", **ours, prefix=1))[4:],
        encode_frame(message("hello", **theirs, prefix=8))[4:],
    )
    recorded = auth_mac(b"s3cret", initiator=True, transcript=earlier)
    client, server = connect(
        node("beta", b"s3cret", initiator=False), raw_peer(message("auth", mac=recorded))
    )
    assert "authentication failed" in str(server)
    # ... is refused, and the responder reveals no MAC of its own: only an error comes back.
    assert client == ["hello", "error"]


def test_a_responder_mac_does_not_pass_as_an_initiator_mac() -> None:
    transcript = transcript_hash(b"a", b"b")
    mac = auth_mac(b"k", initiator=True, transcript=transcript)
    assert mac != auth_mac(b"k", initiator=False, transcript=transcript)
    assert mac != auth_mac(b"j", initiator=True, transcript=transcript)
    assert mac != auth_mac(b"k", initiator=True, transcript=transcript_hash(b"b", b"a"))


def test_frame_keys_differ_by_direction_secret_and_connection() -> None:
    transcript = transcript_hash(b"a", b"b")
    forward, backward = frame_keys(b"k", transcript, NONCE, "cd" * 32)
    assert forward != backward
    assert frame_keys(b"j", transcript, NONCE, "cd" * 32)[0] != forward
    assert frame_keys(b"k", transcript, NONCE, "ef" * 32)[0] != forward
    assert frame_keys(b"k", transcript_hash(b"a", b"c"), NONCE, "cd" * 32)[0] != forward


def read_sealed(data: bytes, key: bytes) -> tuple[list[int], WireError | None]:
    """The nonces of the pings read from ``data`` under ``key``, and the error that ended
    the reading (None: a clean end of stream)."""

    async def go() -> tuple[list[int], WireError | None]:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        seal, read = wire.FrameSeal(key), []
        try:
            while (got := await read_message(reader, seal)) is not None:
                read.append(got["nonce"])
        except WireError as error:
            return read, error
        return read, None

    return asyncio.run(go())


def sealed_pings(key: bytes, count: int) -> list[bytes]:
    seal = wire.FrameSeal(key)
    return [encode_frame(message("ping", nonce=n), seal) for n in range(count)]


def test_sealed_frames_are_read_in_order() -> None:
    frames = sealed_pings(b"k" * 32, 3)
    assert all(len(frame) == len(encode_frame(message("ping", nonce=0))) + 32 for frame in frames)
    assert read_sealed(b"".join(frames), b"k" * 32) == ([0, 1, 2], None)


def test_a_changed_dropped_replayed_reordered_or_injected_frame_is_caught() -> None:
    key = b"k" * 32
    first, second, third = sealed_pings(key, 3)
    flipped = [
        first + bytes([*second[:i], second[i] ^ 1, *second[i + 1 :]]) + third
        for i in range(4, len(second))
    ]  # every byte after the length (the payload, the tag)
    cases = {
        "dropped": first + third,
        "replayed": first + first + second,
        "reordered": first + third + second,
        "injected": first + encode_frame(message("ping", nonce=9)) + b"\0" * 32 + second,
        "other key": first + sealed_pings(b"j" * 32, 2)[1],
        **{f"byte {i + 4} flipped": data for i, data in enumerate(flipped)},
    }
    for label, data in cases.items():
        read, error = read_sealed(data, key)
        assert read == [0], label  # the frames before the bad one only
        assert error is not None and "fails its authentication" in str(error), (label, error)


def test_a_frame_cut_inside_its_tag_is_an_error() -> None:
    first, second = sealed_pings(b"k" * 32, 2)
    read, error = read_sealed(first + second[:-5], b"k" * 32)
    assert read == [0]
    assert error is not None and "connection closed inside a frame" in str(error)


def test_a_silent_peer_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> list[str]:
        kinds = []
        while (received := await read_message(reader)) is not None:
            kinds.append(received["type"])
        return kinds

    client, server = connect(node("beta", None, initiator=False, timeout=0.2), silent)
    assert isinstance(server, HandshakeError)
    assert "timed out" in str(server)
    assert client == ["hello", "error"]


def test_a_peer_that_hangs_up_fails_the_handshake() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    _, server = connect(node("beta", None, initiator=False), hang_up)
    assert isinstance(server, HandshakeError)
    assert "closed the connection" in str(server) or "connection lost" in str(server)


class FarAway:
    """A stream writer whose peer appears to be on another host."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    def get_extra_info(self, name: str, default: object = None) -> object:
        if name == "peername":
            return ("203.0.113.9", 40000)
        return self._writer.get_extra_info(name, default)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)


def far_away(side: Side) -> Side:
    return lambda reader, writer: side(reader, FarAway(writer))  # type: ignore[arg-type]


def test_without_a_secret_a_remote_peer_is_refused() -> None:
    client, server = connect(far_away(node("beta", None, initiator=False)), raw_peer())
    assert isinstance(server, HandshakeError)
    assert "only loopback peers" in str(server)
    assert client == ["error"]  # refused before the node says hello


def test_with_a_secret_a_remote_peer_may_join() -> None:
    client, server = connect(
        far_away(node("beta", b"k", initiator=False)), node("alpha", b"k", initiator=True)
    )
    assert isinstance(server, Hello)
    assert isinstance(client, Hello)


@pytest.mark.parametrize(
    ("peername", "allowed"),
    [
        (("127.0.0.1", 9000), True),
        (("127.200.3.4", 1), True),
        (("::1", 9000, 0, 0), True),
        (("::ffff:127.0.0.1", 9000, 0, 0), True),
        (("10.0.0.1", 9000), False),
        (("192.168.1.20", 9000), False),
        (("203.0.113.9", 9000), False),
        (("::ffff:10.0.0.1", 9000, 0, 0), False),
        (("fe80::1%eth0", 9000, 0, 2), False),
        (("::", 9000, 0, 0), False),
        (("0.0.0.0", 9000), False),
        (("localhost", 9000), False),
        ("/tmp/node.sock", False),
        (None, False),
        ((), False),
    ],
)
def test_loopback_decision(peername: object, allowed: bool) -> None:
    assert is_loopback_peer(peername) is allowed


def test_a_bad_own_name_fails_before_any_io() -> None:
    async def go() -> None:
        await handshake(
            None,  # type: ignore[arg-type]
            None,  # type: ignore[arg-type]
            name="has space",
            role="node",
            secret=None,
            prefix=1,
            timeout=1,
            initiator=True,
        )

    with pytest.raises(WireError, match=r"hello\.name"):
        asyncio.run(go())


def test_secret_files(tmp_path: Any) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"s3cret\r\n")
    assert auth.read_secret_file(path) == b"s3cret"
    path.write_bytes(b"\n")
    with pytest.raises(auth.SecretFileError, match="is empty"):
        auth.read_secret_file(path)
    with pytest.raises(auth.SecretFileError, match="cannot read"):
        auth.read_secret_file(tmp_path / "missing")


@settings(deadline=None, max_examples=200)
@given(values(), st.integers(0, (1 << 64) - 1))
def test_an_answer_framed_from_its_known_text_is_the_general_frame(
    value: Value, request_id: int
) -> None:
    """A durable node prints a finished run's value once, for its step digest, and frames
    the answer with that text (`wire.value_text`): the frame must be the one the general
    way makes, and a value the short way cannot print has no text to reuse."""
    known = wire.value_text(value)
    answer = {
        "type": "call_response",
        "request_id": request_id,
        "ok": True,
        "value": value,
        "error_kind": None,
        "error": None,
    }
    if known is not None:
        assert json.loads(known) == value_to_json(value)
    assert encode_frame(answer, known=known) == encode_frame(answer)
