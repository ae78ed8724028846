"""Frames: a 4-byte big-endian length, then that many bytes of UTF-8 JSON (spec §11.4).

On a connection authenticated by a shared secret, each frame is followed by a 32-byte tag
(`FrameSeal`, docs/wire.md "Authenticated frames"): a reader checks it before it parses a
payload, so an altered, dropped, replayed, reordered or injected frame ends the connection
before anything in it is acted on.

``read_message`` returns only messages that ``messages.KINDS`` accepts, with values decoded;
anything else raises ``WireError`` and the caller closes that connection. The size limit is
checked before a payload is read, so a peer cannot make us buffer more than ``MAX_FRAME``.

Decoding a big payload takes long (a 16 MiB frame of small values takes seconds), so payloads
of ``LARGE_FRAME`` bytes or more are decoded on one worker thread shared by every connection
of the process: the event loop keeps answering pings and other connections meanwhile (the
decoder runs Python code, so the interpreter hands the loop thread its turn every switch
interval), and big frames are decoded one at a time, which bounds the memory and the CPU they
take together. A smaller payload is decoded inline: the hop to a thread would cost more.

JSON text goes through the standard library's C parser and printer. They recurse, so a value
nested deeper than the interpreter's recursion limit makes them raise ``RecursionError``; such
frames take the iterative ``_parse_deep`` / ``_dumps_deep`` below instead, which accept and
produce exactly the same JSON (a test holds them to it).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import struct
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from json.decoder import scanstring
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import NoReturn

from avm_vm.node.codec import MAX_VALUE_DEPTH, WireError, has_lone_surrogate, snippet
from avm_vm.node.messages import KINDS, U64, Message, decode_message, encode_message
from avm_vm.values import NAT_MAX, Just, NothingType, ObjectRef, Pair, TxRef

__all__ = [
    "HEAD_BYTES",
    "LARGE_FRAME",
    "MAX_FRAME",
    "TAG_BYTES",
    "FrameSeal",
    "WireError",
    "check_tag",
    "cut_short",
    "decode_payload",
    "decode_small",
    "encode_frame",
    "frame_length",
    "parse_payload",
    "read_frame",
    "read_message",
    "read_payload",
    "value_text",
    "write_message",
]

MAX_FRAME = 16 * 1024 * 1024
# Each value level is at most two JSON containers ({"List":[...]}); the margin covers the
# message and the node's own objects around a value.
MAX_JSON_DEPTH = 2 * MAX_VALUE_DEPTH + 64

_LENGTH = struct.Struct(">I")
HEAD_BYTES = _LENGTH.size  # the length prefix of a frame
# Payloads from this size on are decoded off the event loop (module docstring).
LARGE_FRAME = 64 * 1024
_FRAME_THREAD = ThreadPoolExecutor(1, thread_name_prefix="avm-frames")
TAG_BYTES = 32  # an HMAC-SHA256 tag after each payload on a secret-authenticated connection
_SEQUENCE = struct.Struct(">Q")


class FrameSeal:
    """The frame MAC of one direction of one connection: the tag of a frame is
    HMAC-SHA256(key, SEQUENCE || LENGTH || PAYLOAD), SEQUENCE being the number of frames
    this direction carried before (8 bytes big-endian, never sent). Each side keeps one
    seal to write with and one to read with, under different keys, so a frame cannot be
    replayed, reordered, dropped or reflected without the next tag failing."""

    __slots__ = ("_keyed", "sequence")

    def __init__(self, key: bytes) -> None:
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)  # copied per frame
        self.sequence = 0

    def tag(self, head: bytes, payload: bytes) -> bytes:
        """The tag of the next frame in this direction (``head`` is its length prefix)."""
        mac = self._keyed.copy()
        mac.update(_SEQUENCE.pack(self.sequence))
        mac.update(head)
        mac.update(payload)
        self.sequence += 1
        return mac.digest()

    def seal(self, frame: bytes) -> bytes:
        """``frame`` (prefix and payload) with its tag appended."""
        return frame + self.tag(frame[: _LENGTH.size], frame[_LENGTH.size :])


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """Refuse duplicate keys: two ``type`` fields must not mean whichever came last."""
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r}")
            seen.add(key)
    return result


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_constant=_no_constant)
_SCAN = _DECODER.scan_once


def _not_json(obj: object) -> NoReturn:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _compact_encoder(sort_keys: bool) -> Callable[[object], str]:
    """Compact JSON (no spaces, no NaN, text left as UTF-8) through one C encoder made once:
    `JSONEncoder.encode` makes a new one per call, which costs as much as encoding a small
    message. What is encoded is acyclic (values are tuples, messages fresh dicts), so there
    is no circularity check."""
    if c_make_encoder is None:  # no C accelerator: the library's own path
        encoder = json.JSONEncoder(
            ensure_ascii=False, allow_nan=False, separators=(",", ":"), sort_keys=sort_keys
        )
        return encoder.encode
    iterencode = c_make_encoder(
        None, _not_json, encode_basestring, None, ":", ",", sort_keys, False, False
    )
    return lambda obj: "".join(iterencode(obj, 0))


_ENCODE = _compact_encoder(sort_keys=False)
_ENCODE_SORTED = _compact_encoder(sort_keys=True)


def encode_frame(
    message: Message, seal: FrameSeal | None = None, known: str | None = None
) -> bytes:
    """The frame for ``message`` (tagged by ``seal`` if given); ``WireError`` if it breaks
    the message table or is too big. ``known``: the text of the value a ``call_response``
    or ``call`` carries (`value_text`), when the caller has it already."""
    direct = _DIRECT.get(message["type"])
    text = None if direct is None else direct(message, known)
    if text is None:
        text = _dumps(encode_message(message))
    try:
        payload = text.encode("utf-8")
    except UnicodeEncodeError:
        raise WireError(f"{message['type']} message holds a lone surrogate in a string") from None
    if len(payload) > MAX_FRAME:
        raise WireError(f"{message['type']} message is {len(payload)} bytes, over {MAX_FRAME}")
    frame = _LENGTH.pack(len(payload)) + payload
    return frame if seal is None else seal.seal(frame)


# --- The text of the frames of a call, written directly ---------------------------------------
# A node sends one ``call_response`` per call served and one ``call`` per remote call made.
# Written here straight from the message, their text skips the JSON form of the value and
# the generic printer (the fields are checked by the table's own field types), for the same
# text the general way makes; any other shape, or anything the direct way is not sure of,
# takes the general way, which also names any problem.

_ANSWER_FIELDS = frozenset({"type", "request_id", "ok", "value", "error_kind", "error"})
_ANSWER = (
    '{"type":"call_response","request_id":%d,"ok":true,"value":%s,"error_kind":null,"error":null}'
)
_CALL = KINDS["call"].fields
_CALL_FIELDS = frozenset({"type", *KINDS["call"].required})  # no transaction
_CALL_TEXT = (
    '{"type":"call","request_id":%d,"target":%d,"input":%s,"sender":%d,"sender_machine":%s,'
    '"duct":[%s]}'
)


def _answer_text(message: Message, known: str | None) -> str | None:
    """The JSON text of a plain ok ``call_response``, or None to take the general way."""
    if (
        message.keys() != _ANSWER_FIELDS
        or message["ok"] is not True
        or message["error_kind"] is not None
        or message["error"] is not None
    ):
        return None
    try:
        request_id = U64.check(message["request_id"])
        value = _value_text(message["value"], 0) if known is None else known
        return _ANSWER % (request_id, value)
    except (ValueError, _NotPlain, RecursionError):
        return None


def _call_text(message: Message, known: str | None) -> str | None:
    """The JSON text of a ``call`` outside transactions, or None to take the general way."""
    if message.keys() != _CALL_FIELDS:
        return None
    try:
        ids = [_CALL[name].check(message[name]) for name in ("request_id", "target", "sender")]
        machine = encode_basestring(_CALL["sender_machine"].check(message["sender_machine"]))
        _CALL["duct"].check(message["duct"])
        duct = ",".join([f"[{encode_basestring(m)},{o},{c}]" for m, o, c in message["duct"]])
        value = _value_text(message["input"], 0) if known is None else known
    except (ValueError, _NotPlain, RecursionError):
        return None
    return _CALL_TEXT % (ids[0], ids[1], value, ids[2], machine, duct)


_DIRECT: dict[str, Callable[[Message, str | None], str | None]] = {
    "call_response": _answer_text,
    "call": _call_text,
}


class _NotPlain(Exception):
    """`_value_text` gives up: the general way handles (or refuses) this value."""


_TEXT_DEPTH = 48  # deeper values take the general (iterative) way


def value_text(value: object) -> str | None:
    """The compact JSON text of ``value``'s wire form, as `dumps_json` prints
    `codec.value_to_json` of it; None for a value the general way must handle (deep,
    non-ASCII text, a list view, out of range)."""
    try:
        return _value_text(value, 0)
    except (_NotPlain, RecursionError):
        return None


def _value_text(value: object, depth: int) -> str:
    """The compact JSON text of ``value``'s wire form (`codec.value_to_json`), as the
    general way prints it."""
    t = type(value)
    if t is int:
        if not 0 <= value <= NAT_MAX:  # type: ignore[operator]
            raise _NotPlain
        return f'{{"Nat":{value}}}'
    if t is str:
        if not value.isascii():  # type: ignore[union-attr]
            raise _NotPlain  # the general way checks for lone surrogates
        return '{"Str":' + encode_basestring(value) + "}"
    if depth > _TEXT_DEPTH:
        raise _NotPlain
    if t is Just:
        return '{"Just":' + _value_text(value.value, depth + 1) + "}"  # type: ignore[attr-defined]
    if t is tuple:
        items = ",".join([_value_text(item, depth + 1) for item in value])  # type: ignore[attr-defined]
        return '{"List":[' + items + "]}"
    if t is bool:
        return '{"Bool":true}' if value else '{"Bool":false}'
    if t is NothingType:
        return '"Nothing"'
    if t is ObjectRef or t is TxRef:
        if not 0 <= value.id <= NAT_MAX:  # type: ignore[attr-defined]
            raise _NotPlain
        return f'{{"{t.__name__}":{value.id}}}'  # type: ignore[attr-defined]
    if t is Pair:
        first = _value_text(value.first, depth + 1)  # type: ignore[attr-defined]
        return '{"Pair":[' + first + "," + _value_text(value.second, depth + 1) + "]}"  # type: ignore[attr-defined]
    raise _NotPlain


async def write_message(
    writer: asyncio.StreamWriter, message: Message, seal: FrameSeal | None = None
) -> None:
    """Send ``message`` (``WireError`` before anything is written if it cannot be framed)."""
    writer.write(encode_frame(message, seal))
    await writer.drain()


async def read_payload(
    reader: asyncio.StreamReader, limit: int = MAX_FRAME, seal: FrameSeal | None = None
) -> bytes | None:
    """The payload of the next frame (at most ``limit`` bytes), or None at a clean end of
    stream. The length is checked before the payload is read; with ``seal``, the frame's
    tag is checked before the payload is returned.

    Socket errors (``OSError``) propagate unchanged; protocol violations raise ``WireError``.
    """
    try:
        head = await reader.readexactly(_LENGTH.size)
    except asyncio.IncompleteReadError as error:
        if not error.partial:
            return None
        raise cut_short(len(error.partial), None) from None
    length = frame_length(head, limit)
    try:
        payload = await reader.readexactly(length)
        if seal is None:
            return payload
        tag = await reader.readexactly(TAG_BYTES)
    except asyncio.IncompleteReadError as error:
        raise cut_short(len(error.partial), length) from None
    check_tag(seal, head, payload, tag)
    return payload


def frame_length(buffer: bytes | bytearray, limit: int = MAX_FRAME, at: int = 0) -> int:
    """The payload length announced by the 4-byte prefix at ``at`` in ``buffer``;
    ``WireError`` when it is over ``limit`` (checked before any of the payload is kept)."""
    (length,) = _LENGTH.unpack_from(buffer, at)
    if length > limit:
        raise WireError(f"frame of {length} bytes is over the limit of {limit}")
    return length


def check_tag(seal: FrameSeal, head: bytes, payload: bytes, tag: bytes) -> None:
    """``WireError`` unless ``tag`` is the tag of the next frame ``seal`` expects."""
    number = seal.sequence
    if not hmac.compare_digest(tag, seal.tag(head, payload)):
        raise WireError(
            f"frame {number} fails its authentication (altered, dropped, replayed, reordered "
            "or injected on the way)"
        )


def cut_short(received: int, length: int | None) -> WireError:
    """The error for a stream that ended ``received`` bytes into a length prefix (``length``
    None) or into a frame of ``length`` payload bytes."""
    if length is None:
        return WireError(f"connection closed inside a length prefix ({received} of 4 bytes)")
    return WireError(f"connection closed inside a frame ({received} of {length} bytes)")


def parse_payload(payload: bytes) -> object:
    """The parsed JSON of a frame's payload; ``WireError`` if it is not strict UTF-8 JSON."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as error:
        raise WireError(f"frame is not valid UTF-8 (byte {error.start})") from None
    obj = _loads(text)
    if _SURROGATE_ESCAPE.search(payload):
        _refuse_lone_surrogates(obj)
    return obj


async def read_frame(reader: asyncio.StreamReader, limit: int = MAX_FRAME) -> object | None:
    """The parsed JSON of the next frame (at most ``limit`` bytes), or None at a clean end of
    stream (errors as ``read_payload``)."""
    payload = await read_payload(reader, limit)
    return None if payload is None else parse_payload(payload)


def decode_small(payload: bytes, values: bool = True) -> Message:
    """`decode_payload` of a payload under ``LARGE_FRAME`` bytes, here and now."""
    return decode_message(parse_payload(payload), values)


async def decode_payload(payload: bytes, values: bool = True) -> Message:
    """The message a payload holds, checked against ``messages.KINDS`` (``values`` as for
    `decode_message`). A payload of ``LARGE_FRAME`` bytes or more is decoded on the frame
    thread (module docstring)."""
    if len(payload) < LARGE_FRAME:
        return decode_small(payload, values)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_FRAME_THREAD, decode_small, payload, values)


async def read_message(
    reader: asyncio.StreamReader, seal: FrameSeal | None = None
) -> Message | None:
    """The next message, checked against ``messages.KINDS``; None at a clean end of stream."""
    payload = await read_payload(reader, seal=seal)
    return None if payload is None else await decode_payload(payload)


def loads_json(text: str | bytes) -> object:
    """``json.loads`` at any nesting depth (values can be nested far deeper than the C
    parser's recursion allows); raises ValueError."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    try:
        # The C scanner straight away: a frame holds one value with nothing around it.
        # Anything else (whitespace around, extra data, nothing) goes the library's way,
        # which raises the same errors for the same text.
        obj, end = _SCAN(text, 0)
        if end == len(text):
            return obj
    except StopIteration:
        pass
    except RecursionError:
        return _parse_deep(text)
    try:
        return _DECODER.decode(text)
    except RecursionError:
        return _parse_deep(text)


def dumps_json(obj: object, sort_keys: bool = False) -> str:
    """Compact JSON at any nesting depth; raises TypeError or ValueError as ``json`` does."""
    try:
        return (_ENCODE_SORTED if sort_keys else _ENCODE)(obj)
    except RecursionError:
        return _dumps_deep(obj, sort_keys)


def _loads(text: str) -> object:
    try:
        return loads_json(text)
    except ValueError as error:
        raise WireError(f"frame is not valid JSON: {error}") from None


def _dumps(obj: object) -> str:
    try:
        return dumps_json(obj)
    except (TypeError, ValueError) as error:
        raise WireError(f"message cannot be written as JSON: {error}") from None


# Lone surrogates only arise from \uD800-\uDFFF escapes (the payload itself is valid UTF-8),
# so the full scan runs only when the raw bytes hold such an escape.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _refuse_lone_surrogates(obj: object) -> None:
    stack = [obj]
    while stack:
        item = stack.pop()
        if type(item) is dict:
            stack.extend(item)
            stack.extend(item.values())
        elif type(item) is list:
            stack.extend(item)
        elif type(item) is str and has_lone_surrogate(item):
            raise WireError(f"frame holds a lone surrogate in the string {snippet(item)}")


# --- Iterative JSON, for frames nested too deep for the C parser and printer -----------------

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"(-?(?:0|[1-9]\d*))(\.\d+)?([eE][-+]?\d+)?")
_LITERALS = (("true", True), ("false", False), ("null", None))
_INFINITY = float("inf")


class _Open:
    """A container being parsed: its items (or key/value pairs) and the key awaiting a value."""

    __slots__ = ("is_object", "items", "key")

    def __init__(self, is_object: bool) -> None:
        self.is_object = is_object
        self.items: list = []
        self.key = ""


def _parse_deep(text: str) -> object:
    """``json.loads`` without recursion: same grammar, same hooks, depth ``MAX_JSON_DEPTH``."""
    stack: list[_Open] = []

    def fail(message: str, at: int) -> ValueError:
        return ValueError(f"{message} at char {at}")

    def skip(at: int) -> int:
        return _WHITESPACE.match(text, at).end()  # type: ignore[union-attr]

    def key_at(at: int) -> tuple[str, int]:
        """The object key starting at ``at`` and the position after its colon."""
        if text[at : at + 1] != '"':
            raise fail("expected a string key", at)
        key, at = scanstring(text, at + 1, True)
        at = skip(at)
        if text[at : at + 1] != ":":
            raise fail("expected ':'", at)
        return key, skip(at + 1)

    pos = skip(0)
    while True:
        # A value starts at `pos`.
        char = text[pos : pos + 1]
        value: object
        if char in ("{", "["):
            if len(stack) >= MAX_JSON_DEPTH:
                raise fail(f"nesting deeper than {MAX_JSON_DEPTH} levels", pos)
            pos = skip(pos + 1)
            if text[pos : pos + 1] == ("}" if char == "{" else "]"):
                value, pos = ({} if char == "{" else []), pos + 1
            else:
                frame = _Open(char == "{")
                if frame.is_object:
                    frame.key, pos = key_at(pos)
                stack.append(frame)
                continue
        elif char == '"':
            value, pos = scanstring(text, pos + 1, True)
        elif (number := _NUMBER.match(text, pos)) is not None:
            whole, fraction, exponent = number.groups()
            value = float(number.group()) if fraction or exponent else int(whole)
            pos = number.end()
        else:
            for word, literal in _LITERALS:
                if text.startswith(word, pos):
                    value, pos = literal, pos + len(word)
                    break
            else:
                if text.startswith(("NaN", "Infinity", "-Infinity"), pos):
                    raise fail("NaN and Infinity are not JSON numbers", pos)
                raise fail("expected a value", pos)
        # Hand the finished value to the containers it closes.
        while True:
            pos = skip(pos)
            if not stack:
                if pos != len(text):
                    raise fail("extra data", pos)
                return value
            frame = stack[-1]
            frame.items.append((frame.key, value) if frame.is_object else value)
            char = text[pos : pos + 1]
            if char == ",":
                pos = skip(pos + 1)
                if frame.is_object:
                    frame.key, pos = key_at(pos)
                break
            if char != ("}" if frame.is_object else "]"):
                raise fail("expected ',' or '}'" if frame.is_object else "expected ',' or ']'", pos)
            stack.pop()
            value = _unique_keys(frame.items) if frame.is_object else frame.items
            pos += 1


class _Literal(str):
    """Text to emit as is (punctuation), told apart from string values by its type."""

    __slots__ = ()


_COMMA, _COLON = _Literal(","), _Literal(":")
_OPEN_OBJECT, _CLOSE_OBJECT = _Literal("{"), _Literal("}")
_OPEN_ARRAY, _CLOSE_ARRAY = _Literal("["), _Literal("]")


def _scalar(item: object) -> str | None:
    """The JSON text of a string, null, bool, int or float as ``json`` writes it; else None."""
    if isinstance(item, str):
        return encode_basestring(item)
    if item is None or item is True or item is False:
        return "null" if item is None else "true" if item else "false"
    if isinstance(item, int):
        return int.__repr__(item)
    if isinstance(item, float):
        if item != item or item in (_INFINITY, -_INFINITY):
            raise ValueError(f"Out of range float values are not JSON compliant: {item!r}")
        return float.__repr__(item)
    return None


def _dumps_deep(obj: object, sort_keys: bool = False) -> str:
    """`dumps_json` without recursion: identical output, depth ``MAX_JSON_DEPTH``."""
    out: list[str] = []
    stack: list[tuple[object, int]] = [(obj, 0)]
    while stack:
        item, depth = stack.pop()
        if type(item) is _Literal:
            out.append(item)  # type: ignore[arg-type]
            continue
        text = _scalar(item)
        if text is not None:
            out.append(text)
            continue
        if not isinstance(item, list | tuple | dict):
            raise TypeError(f"Object of type {type(item).__name__} is not JSON serializable")
        if depth >= MAX_JSON_DEPTH:
            raise ValueError(f"nesting deeper than {MAX_JSON_DEPTH} levels")
        parts: list[tuple[object, int]] = []
        if isinstance(item, dict):
            for key, value in sorted(item.items()) if sort_keys else item.items():
                # Like `json`: a non-string key is written as its JSON text, quoted.
                name = key if isinstance(key, str) else _scalar(key)
                if name is None:
                    raise TypeError(
                        f"keys must be str, int, float, bool or None, not {type(key).__name__}"
                    )
                quoted = _Literal(encode_basestring(name))
                parts += [(_COMMA, 0), (quoted, 0), (_COLON, 0), (value, depth + 1)]
            opening, closing = _OPEN_OBJECT, _CLOSE_OBJECT
        else:
            for value in item:
                parts += [(_COMMA, 0), (value, depth + 1)]
            opening, closing = _OPEN_ARRAY, _CLOSE_ARRAY
        stack.append((closing, 0))
        stack.extend(reversed(parts[1:]))
        stack.append((opening, 0))
    return "".join(out)
