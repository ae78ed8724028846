"""The message kinds of the node protocol: one table of kinds, fields and field types.

A message is a ``dict`` with a snake_case ``type`` tag and exactly the fields its kind lists
(a field a kind marks optional may be left out: peers that predate it never send it).
``decode_message`` checks a parsed frame against the table and turns ``Val`` fields into
values, so a message that gets past it is well formed; ``encode_message`` checks an outgoing
message the same way and turns values into their JSON form (spec §2.6). Adding a kind is one
row in ``KINDS`` (and a section in docs/wire.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from avm_vm.node.codec import WireError, checked_value, snippet, value_from_json, value_to_json
from avm_vm.trace import CallFailure
from avm_vm.values import NAT_MAX

Message = dict[str, Any]


class FieldType:
    """How one field is checked and converted, in each direction."""

    description: str

    def decode(self, obj: object) -> object:
        """The Python form of the field's JSON ``obj`` (raises ``ValueError`` if it is bad)."""
        self.check(obj)
        return obj

    def encode(self, value: object) -> object:
        """The JSON form of the field's Python ``value`` (raises ``ValueError`` if it is bad)."""
        self.check(value)
        return value

    def keep(self, obj: object) -> object:
        """Like `decode`, but an AVM value stays in its JSON form (checked all the same)."""
        return self.decode(obj)

    def check(self, obj: object) -> object:
        """Raise ``ValueError`` unless ``obj`` is valid (where both forms are the same)."""
        raise NotImplementedError

    def fail(self, obj: object) -> NoReturn:
        raise ValueError(f"must be {self.description}, got {snippet(obj)}")


class Int(FieldType):
    def __init__(self, high: int) -> None:
        self.high = high
        self.description = f"an integer in 0..{high}"

    # One method for every direction (both forms are the same): the node converts a few
    # of these per message, so the extra call of `FieldType.decode` would show.
    def check(self, obj: object) -> object:
        if type(obj) is not int or not 0 <= obj <= self.high:  # type: ignore[operator]
            self.fail(obj)
        return obj

    decode = encode = keep = check


class Flag(FieldType):
    description = "true or false"

    def check(self, obj: object) -> object:
        if type(obj) is not bool:
            self.fail(obj)
        return obj

    decode = encode = keep = check


class Text(FieldType):
    """A string, optionally matching a pattern (names and hex digests are constrained)."""

    def __init__(self, pattern: str | None = None, description: str = "a string") -> None:
        self.pattern = re.compile(pattern) if pattern else None
        self.description = description

    def check(self, obj: object) -> object:
        if type(obj) is not str or (self.pattern and not self.pattern.fullmatch(obj)):
            self.fail(obj)
        return obj

    decode = encode = keep = check


class JsonObject(FieldType):
    """A free-form JSON object whose meaning belongs to the node (object records, status)."""

    description = "a JSON object"

    def check(self, obj: object) -> None:
        if type(obj) is not dict:
            self.fail(obj)


class Val(FieldType):
    """An AVM value: JSON form on the wire, a value in Python."""

    description = "an AVM value"

    def decode(self, obj: object) -> object:
        try:
            return value_from_json(obj)
        except WireError as error:
            raise ValueError(str(error)) from None

    def encode(self, value: object) -> object:
        try:
            return value_to_json(value)  # type: ignore[arg-type]
        except WireError as error:
            raise ValueError(str(error)) from None

    def keep(self, obj: object) -> object:
        try:
            checked_value(obj)  # decoded again when the node applies it: kept for then
        except WireError as error:
            raise ValueError(str(error)) from None
        return obj


class Duct(FieldType):
    """The causal chain of a call: ``[[machine, object, call_id], ...]``, outermost first."""

    description = "a list of [machine, object id, call id] triples"

    def decode(self, obj: object) -> object:
        self.check(obj)
        return [tuple(link) for link in obj]  # type: ignore[union-attr]

    def keep(self, obj: object) -> object:
        self.check(obj)
        return obj

    def check(self, obj: object) -> None:
        if type(obj) not in (list, tuple):
            self.fail(obj)
        for link in obj:  # type: ignore[union-attr]
            if (
                type(link) not in (list, tuple)
                or len(link) != 3
                or type(link[0]) is not str
                or type(link[1]) is not int
                or type(link[2]) is not int
                or not 0 <= link[1] <= NAT_MAX
                or not 0 <= link[2] <= NAT_MAX
            ):
                raise ValueError(f"must be {self.description}, one link is {snippet(link)}")

    def encode(self, value: object) -> object:
        self.check(value)
        return value  # tuples are JSON arrays as lists are


class Failure(FieldType):
    """Why a callee failed: ``{"kind", "message", "location"}`` on the wire (location a
    string or null), a `CallFailure` in Python."""

    description = 'an object {"kind": name, "message": text, "location": text or null}'

    def decode(self, obj: object) -> object:
        self.check(obj)
        return CallFailure(obj["kind"], obj["message"], obj["location"])  # type: ignore[index]

    def keep(self, obj: object) -> object:
        self.check(obj)
        return obj

    def encode(self, value: object) -> object:
        if type(value) is not CallFailure:
            self.fail(value)
        encoded = value._asdict()
        self.check(encoded)
        return encoded

    def check(self, obj: object) -> None:
        if (
            type(obj) is not dict
            or obj.keys() != {"kind", "message", "location"}
            or type(obj["kind"]) is not str
            or not 0 < len(obj["kind"]) <= 100
            or type(obj["message"]) is not str
            or (obj["location"] is not None and type(obj["location"]) is not str)
        ):
            self.fail(obj)


class Optional(FieldType):
    """``null`` on the wire, ``None`` in Python, or a value of the inner type."""

    def __init__(self, inner: FieldType) -> None:
        self.inner = inner
        self.description = f"{inner.description} or null"
        self._decode, self._encode, self._keep = inner.decode, inner.encode, inner.keep

    def decode(self, obj: object) -> object:
        return None if obj is None else self._decode(obj)

    def encode(self, value: object) -> object:
        return None if value is None else self._encode(value)

    def keep(self, obj: object) -> object:
        return None if obj is None else self._keep(obj)


U64 = Int(NAT_MAX)
U16 = Int(0xFFFF)


class Names(FieldType):
    """A list of machine names (the nodes a transaction reached)."""

    description = "a list of node names"

    def check(self, obj: object) -> None:
        if type(obj) is not list or len(obj) > 4096:
            self.fail(obj)
        for item in obj:
            NAME.check(item)


STR = Text()
# Machine names end up in logs, status tables and the handshake MAC: keep them plain.
NAME = Text(
    r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}",
    "a name of 1-64 characters from A-Z a-z 0-9 . _ : - (not starting with . _ : -)",
)
HEX32 = Text(r"[0-9a-f]{64}", "64 lower-case hex digits (32 bytes)")
ROLE = Text(r"node|client", '"node" or "client"')
ERROR_KIND = Optional(Text(r".{1,100}", "a non-empty error kind name"))


_TABLES = {"decode": "decoders", "keep": "keepers", "encode": "encoders"}
_Converters = tuple[tuple[str, Callable[[object], object]], ...]


@dataclass(frozen=True)
class Kind:
    """One message kind: its fields in wire order and an optional cross-field rule."""

    fields: Mapping[str, FieldType]
    rule: Callable[[Message], str | None] | None = None
    optional: frozenset[str] = frozenset()  # fields that may be absent (added later)
    required: frozenset[str] = field(init=False, default=frozenset())  # the others
    # Each field's converter in each direction, looked up once rather than per message:
    # the fields every message has, then the optional ones.
    decoders: tuple[_Converters, _Converters] = ((), ())
    keepers: tuple[_Converters, _Converters] = ((), ())
    encoders: tuple[_Converters, _Converters] = ((), ())

    def __post_init__(self) -> None:
        object.__setattr__(self, "required", frozenset(self.fields.keys() - self.optional))
        for direction, table in _TABLES.items():
            converters = [(name, getattr(field, direction)) for name, field in self.fields.items()]
            required = tuple(item for item in converters if item[0] not in self.optional)
            optional = tuple(item for item in converters if item[0] in self.optional)
            object.__setattr__(self, table, (required, optional))


def _response_rule(payload: str) -> Callable[[Message], str | None]:
    """An answer carries either a payload (``ok``) or an error kind and text, never both."""

    def rule(message: Message) -> str | None:
        errors = (message["error_kind"], message["error"])
        if message["ok"]:
            if message[payload] is None or errors != (None, None):
                return f"an ok answer has a {payload} and no error_kind or error"
        elif message[payload] is not None or None in errors:
            return f"a failed answer has error_kind and error and a null {payload}"
        return None

    return rule


def _joined_rule(message: Message) -> str | None:
    """A call's transaction names its coordinator, and a coordinator comes with one."""
    if (message.get("tx") is None) != (message.get("coordinator") is None):
        return "tx and coordinator come together"
    return None


KINDS: dict[str, Kind] = {
    # Handshake (auth.py). The shape of `hello` never changes across protocol versions.
    "hello": Kind({"version": U64, "name": NAME, "role": ROLE, "nonce": HEX32, "prefix": U16}),
    "auth": Kind({"mac": HEX32}),
    "error": Kind({"message": STR}),
    # Calls between nodes.
    "call": Kind(
        {
            "request_id": U64,
            "target": U64,
            "input": Val(),
            "sender": U64,
            "sender_machine": NAME,
            "duct": Duct(),
            # Made inside a transaction begun on `coordinator`: the callee joins it
            # (docs/transactions.md). Absent otherwise, and from peers before protocol 3.
            "tx": Optional(U64),
            "coordinator": Optional(NAME),
            "controller": Optional(STR),  # the transaction's executing controller
        },
        _joined_rule,
        frozenset({"tx", "coordinator", "controller"}),
    ),
    "call_response": Kind(
        {
            "request_id": U64,
            "ok": Flag(),
            "value": Optional(Val()),
            "error_kind": ERROR_KIND,
            "error": Optional(STR),
            # The callee ran and failed: why and where (a failed answer to a peer's call;
            # an ok `nothing` answer to a client's call). Absent otherwise.
            "failure": Optional(Failure()),
            # The answer to a call that joined a transaction: whether it changed anything
            # in the callee node's part of it (docs/transactions.md). Absent otherwise.
            "changed": Optional(Flag()),
        },
        _response_rule("value"),
        frozenset({"failure", "changed"}),
    ),
    # The location directory (spec §11.3).
    "create_notify": Kind({"object_id": U64, "machine_id": NAME}),
    "destroy_notify": Kind({"object_id": U64}),
    # Keep-alive.
    "ping": Kind({"nonce": U64}),
    "pong": Kind({"nonce": U64}),
    # The machine layer (spec §6.7).
    "move_object": Kind({"request_id": U64, "object_id": U64, "object": JsonObject()}),
    "fetch_object": Kind({"request_id": U64, "object_id": U64, "to_machine": NAME}),
    "object_response": Kind(
        {
            "request_id": U64,
            "ok": Flag(),
            "object": Optional(JsonObject()),
            "error_kind": ERROR_KIND,
            "error": Optional(STR),
        },
        _response_rule("object"),
    ),
    "teleport": Kind({"request_id": U64, "activation": JsonObject()}),
    # Transactions across nodes (docs/transactions.md): two-phase commit.
    "prepare": Kind({"request_id": U64, "tx": U64}),
    "vote": Kind(
        {
            "request_id": U64,
            "tx": U64,
            "ok": Flag(),
            "read_only": Flag(),  # yes, and its part changes nothing: no decision needed
            "participants": Names(),  # further nodes its part called
            "error": Optional(STR),  # why not (a failed vote)
        }
    ),
    "decide": Kind({"tx": U64, "commit": Flag()}),
    "decided": Kind({"tx": U64}),
    "outcome": Kind({"request_id": U64, "tx": U64}),
    "outcome_response": Kind(
        {"request_id": U64, "tx": U64, "outcome": Text(r"commit|abort|pending", "an outcome")}
    ),
    # Clients (`avm call`, `avm create`, `avm status`).
    "client_call": Kind({"request_id": U64, "target": U64, "input": Val()}),
    "client_create": Kind({"request_id": U64, "behavior": STR, "controller": Optional(STR)}),
    "status": Kind({"request_id": U64}),
    "status_response": Kind({"request_id": U64, "status": JsonObject()}),
    # Durable nodes (docs/durability.md): `avm state-hash`, `avm snapshot`, `avm peek`,
    # `avm load`. A peek and a state hash change nothing; a load is a logged upgrade event.
    "state_hash": Kind({"request_id": U64}),
    "state_hash_response": Kind({"request_id": U64, "state_hash": HEX32, "events": U64}),
    "snapshot": Kind({"request_id": U64}),
    "snapshot_response": Kind({"request_id": U64, "index": U64, "state_hash": HEX32}),
    "peek": Kind({"request_id": U64, "object_id": U64}),
    "peek_response": Kind({"request_id": U64, "object": Optional(JsonObject())}),
    "load": Kind({"request_id": U64, "tape": STR}),
    "load_response": Kind({"request_id": U64, "behaviors": JsonObject()}),
    # Intents (docs/intents.md): `avm intent` submits one, then asks what became of it.
    "intent": Kind(
        {"request_id": U64, "target": U64, "offer": Val(), "check": Val(), "wait_ms": U64}
    ),
    "intent_response": Kind({"request_id": U64, "intent": U64}),
    "intent_status": Kind({"request_id": U64, "intent": U64}),
    "intent_status_response": Kind({"request_id": U64, "report": JsonObject()}),
}


def _convert(message: object, direction: str) -> Message:
    """Check ``message`` against its kind and convert each field (``decode`` or ``encode``)."""
    if type(message) is not dict:
        raise WireError(f"a message must be a JSON object, got {type(message).__name__}")
    tag = message.get("type")
    if tag is None:
        raise WireError("message has no type field")
    kind = KINDS.get(tag) if type(tag) is str else None
    if kind is None:
        raise WireError(f"unknown message type {snippet(tag)}")
    required, optional = getattr(kind, _TABLES[direction])
    out: Message = {"type": tag}
    name = ""
    try:
        for name, convert in required:
            out[name] = convert(message[name])
        for name, convert in optional:
            if name in message:
                out[name] = convert(message[name])
    except KeyError:
        if name in message:  # not a missing field: a converter's own error
            raise
        _check_fields(tag, message, kind)  # raises: a field is missing
    except ValueError as error:
        raise WireError(f"{tag}.{name} {error}") from None
    if len(out) != len(message):  # it has a field its kind does not
        _check_fields(tag, message, kind)
    problem = kind.rule(out) if kind.rule else None
    if problem:
        raise WireError(f"{tag} message is inconsistent: {problem}")
    return out


def _check_fields(tag: str, message: Message, kind: Kind) -> None:
    """Raise `WireError` for an unexpected field or a missing field that is not optional."""
    extra = message.keys() - kind.fields.keys() - {"type"}
    if extra:
        raise WireError(f"{tag} message has unexpected field {snippet(min(extra))}")
    for name in kind.fields:
        if name not in message and name not in kind.optional:
            raise WireError(f"{tag} message lacks field {name!r}")


def decode_message(obj: object, values: bool = True) -> Message:
    """The message a parsed frame holds, fields checked and ``Val`` fields decoded (or, with
    ``values`` False, checked and kept in their JSON form: what a node logs and forwards)."""
    return _convert(obj, "decode" if values else "keep")


def encode_message(message: Message) -> Message:
    """The JSON form of an outgoing message; ``WireError`` if it breaks the table."""
    return _convert(message, "encode")


def message(kind: str, **fields: object) -> Message:
    """A message of ``kind``; its field names are checked now, their values when it is sent."""
    row = KINDS.get(kind)
    if row is None:
        raise WireError(f"unknown message type {kind!r}")
    names = fields.keys()
    if not (names <= row.fields.keys() and names >= row.required):
        missing = sorted(row.required - names)
        extra = sorted(names - row.fields.keys())
        raise WireError(f"{kind} message: missing fields {missing}, unexpected fields {extra}")
    return {"type": kind, **fields}


class RequestIds:
    """Request ids unique per node: the node's 16-bit prefix in bits 63..48, a counter below.

    The reference numbers requests from 0 on every node (spec §11.5), so two nodes reuse ids
    and one answer can complete another node's call; a prefix keeps them apart.
    """

    def __init__(self, prefix: int, start: int = 0) -> None:
        """``start``: where in the prefix's 48-bit range to begin (a restarted node begins
        past the ids its earlier runs used)."""
        if not 0 <= prefix <= 0xFFFF:
            raise ValueError(f"a node prefix is 16 bits (0..65535), got {prefix}")
        if not 0 <= start < 1 << 48:
            raise ValueError(f"request ids start within 48 bits, not at {start}")
        self._next = (prefix << 48) + start
        self._end = (prefix + 1) << 48

    def next(self) -> int:
        if self._next >= self._end:
            raise OverflowError("request ids of this prefix are exhausted (2**48 used)")
        value = self._next
        self._next += 1
        return value
