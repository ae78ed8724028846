"""Hostile input at a running node's port (docs/wire.md): random bytes, truncated frames,
oversized length prefixes, frames whose fields are wrong, handshakes without the secret and
connections left half open. Each bad connection may be closed; the node must not be: it
still answers a client call with the right value and `avm status` still works.

The inputs come from a seeded generator, so a failure names the cases that ran before it
and repeats exactly. The right value is examples/pingpong.expected, the single-node answer.
"""

from __future__ import annotations

import asyncio
import json
import random
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from node_harness import HOST, Node, Nodes, Session, avm, compile_tape

from avm_vm.node import OLDEST_PROTOCOL_VERSION, PROTOCOL_VERSION
from avm_vm.node.auth import HandshakeError, handshake
from avm_vm.node.client import Client, ClientError
from avm_vm.node.messages import message
from avm_vm.node.wire import MAX_FRAME, encode_frame, read_message
from avm_vm.value_text import parse_value
from avm_vm.values import render

EXAMPLES = Path(__file__).parents[1] / "examples"
SEED = 20_251_122
CASES = 300
CHECK_EVERY = 60  # cases between two checks that the node still answers right
PARALLEL = 12  # connections open at once
CLOSE_TIMEOUT = 20.0  # seconds the node may take to close a connection we finished with
LENGTH = struct.Struct(">I")


@dataclass(frozen=True)
class Case:
    """One connection: what to say, as whom (None: no handshake), then end our side."""

    label: str
    data: bytes
    role: str | None = None  # "client" or "node": complete a handshake first


@dataclass(frozen=True)
class Target:
    port: int
    ping: int
    pong: int
    secret: bytes | None = None


def frame(payload: bytes) -> bytes:
    return LENGTH.pack(len(payload)) + payload


def json_frame(obj: object) -> bytes:
    return frame(json.dumps(obj, separators=(",", ":")).encode())


def templates(target: Target) -> list[dict]:
    """One well-formed message of each kind, in wire JSON form, aimed at real objects."""
    ping_message = {"List": [{"Str": "Ping"}, {"Nat": 0}, {"Nat": 3}, {"ObjectRef": target.pong}]}
    no_error = {"error_kind": None, "error": None}
    return [
        {"type": "hello", "version": PROTOCOL_VERSION, "name": "fuzz", "role": "client",
         "nonce": "ab" * 32, "prefix": 0},
        {"type": "auth", "mac": "0f" * 32},
        {"type": "error", "message": "fuzz"},
        {"type": "client_call", "request_id": 1, "target": target.ping, "input": ping_message},
        {"type": "client_create", "request_id": 2, "behavior": "pong", "controller": None},
        {"type": "status", "request_id": 3},
        {"type": "call", "request_id": 4, "target": target.ping, "input": ping_message,
         "sender": target.pong, "sender_machine": "fuzz", "duct": [["fuzz", 1, 2]]},
        {"type": "call_response", "request_id": 5, "ok": True, "value": {"Nat": 1}, **no_error},
        {"type": "create_notify", "object_id": target.pong + 99, "machine_id": "fuzz"},
        {"type": "destroy_notify", "object_id": target.pong + 99},
        {"type": "ping", "nonce": 7},
        {"type": "pong", "nonce": 7},
        {"type": "move_object", "request_id": 6, "object_id": target.pong + 77,
         "object": {"behavior": "pong", "code_hash": "00" * 32, "creating": None,
                    "current": None, "state": []}},
        {"type": "fetch_object", "request_id": 7, "object_id": target.ping, "to_machine": "fuzz"},
        {"type": "object_response", "request_id": 8, "ok": True, "object": {}, **no_error},
        {"type": "teleport", "request_id": 9,
         "activation": {"behavior": "ping", "code_hash": "00" * 32, "frames": [], "dst": 0}},
    ]  # fmt: skip


JUNK: list[object] = [
    None, True, False, -1, 0, 2**64, 2**64 - 1, 1.5, "", "x" * 300, [], {}, [1, 2],
    {"Nat": -1}, {"Nat": 1.0}, {"List": 5}, "Nothing", {"Pair": [{"Nat": 1}]},
    {"Just": {"Just": "Nothing"}}, {"Str": 5}, {"ObjectRef": "1"}, {"Bool": 1},
    {"Nat": 1, "Str": "a"}, [["m", 1]], "ab" * 32, "name with spaces", "é" * 70,
]  # fmt: skip


def mutate(rng: random.Random, template: dict) -> tuple[str, object]:
    """A copy of ``template`` broken in one way, and what was done."""
    msg = dict(template)
    field = rng.choice(sorted(msg))
    how = rng.randrange(6)
    if how == 0:
        del msg[field]
        return f"{msg.get('type', '?')} without {field}", msg
    if how == 1:
        msg[rng.choice(["extra", "type2", "Type", ""])] = rng.choice(JUNK)
        return f"{template['type']} with an extra field", msg
    if how == 2:
        msg["type"] = rng.choice(["Ping", "call ", "", "hello\x00", "client_call", "pong"])
        return f"{template['type']} retyped {msg['type']!r}", msg
    if how == 3:
        return f"{template['type']} as a bare value", rng.choice([[msg], "msg", 7, None])
    msg[field] = rng.choice(JUNK)
    return f"{template['type']}.{field} = {msg[field]!r:.40}", msg


def bad_payloads(rng: random.Random) -> Iterator[tuple[str, bytes]]:
    yield "invalid UTF-8", frame(b'{"type":"ping","nonce":\xff\xfe}')
    yield "truncated JSON", frame(b'{"type":"ping","nonce":')
    yield "NaN", frame(b'{"type":"ping","nonce":NaN}')
    yield "duplicate type", frame(b'{"type":"ping","type":"status","nonce":1}')
    yield "lone surrogate", frame(b'{"type":"error","message":"\\ud800"}')
    yield "control character", frame(b'{"type":"error","message":"a\x01b"}')
    yield "huge number", frame(b'{"type":"ping","nonce":' + b"9" * 5000 + b"}")
    yield "nested too deep", frame(b"[" * 700_000 + b"]" * 700_000)
    yield "empty payload", frame(b"")
    yield "whitespace payload", frame(b" \n\t")
    yield "random payload", frame(rng.randbytes(rng.randrange(1, 300)))


def random_value(rng: random.Random, target: Target, depth: int = 0) -> object:
    """A random, valid AVM value in wire JSON form (spec §2.6)."""
    leaves: list[Callable[[], object]] = [
        lambda: {"Nat": rng.choice([0, 1, 3, 2**63, 2**64 - 1, rng.getrandbits(64)])},
        lambda: {"Bool": rng.random() < 0.5},
        lambda: {"Str": rng.choice(["", "Ping", "Pong", "\U0001f600", "é\u0000\n", "x" * 500])},
        lambda: "Nothing",
        lambda: {"ObjectRef": rng.choice([target.ping, target.pong, rng.getrandbits(64)])},
        lambda: {"TxRef": rng.getrandbits(64)},
    ]
    if depth > 4 or rng.random() < 0.4:
        return rng.choice(leaves)()
    kind = rng.randrange(3)
    if kind == 0:
        return {"List": [random_value(rng, target, depth + 1) for _ in range(rng.randrange(5))]}
    if kind == 1:
        return {"Pair": [random_value(rng, target, depth + 1) for _ in range(2)]}
    return {"Just": random_value(rng, target, depth + 1)}


def _random_input(rng: random.Random, target: Target) -> Case:
    """A valid call with a random message, from a client or from a peer."""
    value = random_value(rng, target)
    callee = rng.choice([target.ping, target.pong, rng.getrandbits(64)])
    if rng.random() < 0.5:
        msg = {"type": "client_call", "request_id": 1, "target": callee, "input": value}
        return Case("client_call with a random message", json_frame(msg), "client")
    msg = {
        "type": "call", "request_id": 1, "target": callee, "input": value,
        "sender": rng.choice([target.ping, 0]), "sender_machine": "fuzz", "duct": [],
    }  # fmt: skip
    return Case("peer call with a random message", json_frame(msg), "node")


def generate(rng: random.Random, target: Target, count: int) -> list[Case]:
    """``count`` cases of every family, in a seeded random order."""
    valid = templates(target)
    hello = json_frame(valid[0])
    makers: list[Callable[[], Case]] = [
        lambda: Case("random bytes", rng.randbytes(rng.choice([1, 2, 3, 5, 64, 1000, 70_000]))),
        lambda: Case(
            "random bytes after the handshake",
            rng.randbytes(rng.choice([1, 3, 64, 5000])),
            rng.choice(["client", "node"]),
        ),
        lambda: Case("truncated hello", hello[: rng.randrange(1, len(hello))]),
        lambda: Case(
            "oversized length prefix",
            LENGTH.pack(rng.randint(MAX_FRAME + 1, 2**32 - 1)) + rng.randbytes(64),
            rng.choice([None, "client", "node"]),
        ),
        lambda: Case("length prefix only", LENGTH.pack(rng.randint(1, MAX_FRAME))),
        lambda: _truncated(rng, valid),
        lambda: _mutated(rng, valid, None),
        lambda: _mutated(rng, valid, rng.choice(["client", "node"])),
        lambda: _bad_payload(rng, rng.choice([None, "client", "node"])),
        lambda: _well_formed(rng, valid),
        lambda: _random_input(rng, target),
    ]
    return [rng.choice(makers)() for _ in range(count)]


def _truncated(rng: random.Random, valid: list[dict]) -> Case:
    data = json_frame(rng.choice(valid[3:]))
    return Case(
        "truncated frame", data[: rng.randrange(1, len(data))], rng.choice(["client", "node"])
    )


def _mutated(rng: random.Random, valid: list[dict], role: str | None) -> Case:
    label, msg = mutate(rng, rng.choice(valid))
    return Case(label, json_frame(msg), role)


def _bad_payload(rng: random.Random, role: str | None) -> Case:
    payloads = list(bad_payloads(rng))
    label, data = payloads[rng.randrange(len(payloads))]
    return Case(label, data, role)


def _well_formed(rng: random.Random, valid: list[dict]) -> Case:
    """Valid messages in a burst, of kinds the role may or may not send."""
    burst = rng.sample(valid[2:], rng.randint(1, 5))
    label = "well-formed " + ", ".join(m["type"] for m in burst)
    return Case(label, b"".join(json_frame(m) for m in burst), rng.choice(["client", "node"]))


# --------------------------------------------------------------------------- connections


async def open_as(
    target: Target, role: str | None, name: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to the target, after a handshake as ``role`` (None: none at all)."""
    reader, writer = await asyncio.open_connection(HOST, target.port)
    if role is not None:
        await handshake(
            reader,
            writer,
            name=name,
            role=role,
            secret=target.secret,
            prefix=0,
            timeout=CLOSE_TIMEOUT,
            initiator=True,
        )
    return reader, writer


async def attack(target: Target, case: Case, number: int) -> str | None:
    """Play ``case`` on a new connection, end our side, and wait until the node closes its
    side; None, or what went wrong (the node kept the connection open)."""
    try:
        reader, writer = await open_as(target, case.role, f"fuzz-{number}")
    except (HandshakeError, OSError) as error:
        return f"case {number} ({case.label}): could not connect: {error}"
    try:
        writer.write(case.data)
        await writer.drain()
        writer.write_eof()
        async with asyncio.timeout(CLOSE_TIMEOUT):
            while await reader.read(65536):
                pass
    except OSError:
        pass  # the node closed first (reset): that is what we wait for
    except TimeoutError:
        return f"case {number} ({case.label}): the node kept the connection open"
    finally:
        writer.close()
    return None


async def run_cases(target: Target, cases: list[Case], first: int) -> list[str]:
    limit = asyncio.Semaphore(PARALLEL)

    async def one(number: int, case: Case) -> str | None:
        async with limit:
            return await attack(target, case, number)

    results = await asyncio.gather(*(one(first + i, c) for i, c in enumerate(cases)))
    return [problem for problem in results if problem is not None]


async def answer_of(target: Target) -> str:
    """What a fresh client gets for the ping-pong round trip."""
    client = await Client.connect(HOST, target.port, target.secret)
    try:
        message = parse_value(f'["Ping", 0, 3, obj:{target.pong}]')
        return render(await client.call(target.ping, message))
    finally:
        await client.close()


async def hold_half_open(target: Target) -> list[asyncio.StreamWriter]:
    """Connections that stop mid-way and stay open while the node serves others."""
    hello = json_frame(templates(target)[0])
    call = json_frame(templates(target)[3])
    held = []
    for n in range(3):
        for role, data in ((None, b""), (None, hello[:10]), ("client", call[:20]), ("node", b"")):
            _, writer = await open_as(target, role, f"held-{n}")
            writer.write(data)
            await writer.drain()
            held.append(writer)
    return held


async def fuzz(target: Target, cases: list[Case], expected: str) -> list[str]:
    """Run the cases in batches, checking the node's answer after each batch."""
    held = await hold_half_open(target)
    problems: list[str] = []
    try:
        for first in range(0, len(cases), CHECK_EVERY):
            batch = cases[first : first + CHECK_EVERY]
            problems += await run_cases(target, batch, first)
            answer = await answer_of(target)
            assert answer == expected, (
                f"after cases {first}..{first + len(batch) - 1} "
                f"({[c.label for c in batch]}) the node answered {answer}"
            )
    finally:
        for writer in held:
            writer.close()
    return problems


def assert_healthy(node: Node, target: Target, expected: str, *secret_args: str) -> dict:
    """The command-line clients still work; the log shows no crash. Answers the status."""
    result = avm(
        "call", node.address, f"obj:{target.ping}", f'["Ping", 0, 3, obj:{target.pong}]',
        *secret_args,
    )  # fmt: skip
    assert (result.returncode, result.stdout.strip()) == (0, expected), result.stderr
    result = avm("status", node.address, "--json", *secret_args)
    assert result.returncode == 0, result.stderr
    log = node.log()
    for sign in ("Traceback", "internal error", "Task exception was never retrieved"):
        assert sign not in log, log
    return json.loads(result.stdout)


def start_target(nodes: Nodes, directory: Path, secret: bytes | None = None) -> Target:
    tape = compile_tape(EXAMPLES / "pingpong.avm", directory, "pingpong")
    secret_file = None
    if secret is not None:
        secret_file = directory / "secret"
        secret_file.write_bytes(secret)
    node = nodes.start("target", [tape], secret_file=secret_file)
    with Session(node, secret) as session:
        return Target(node.port, session.create("ping"), session.create("pong"), secret)


EXPECTED = (EXAMPLES / "pingpong.expected").read_text(encoding="utf-8").strip()


@pytest.mark.parametrize(
    ("seed", "count"),
    [(SEED, CASES), pytest.param(SEED + 2, 5 * CASES, marks=pytest.mark.slow)],
    ids=["default", "long"],
)
def test_fuzzed_connections_leave_the_node_serving(nodes, tmp_path, seed, count):
    target = start_target(nodes, tmp_path)
    cases = generate(random.Random(seed), target, count)
    problems = asyncio.run(fuzz(target, cases, EXPECTED))
    assert problems == []
    status = assert_healthy(nodes.started[0], target, EXPECTED)
    assert status["counters"]["malformed_frames"] > 0  # the node noticed


def test_fuzzed_connections_to_a_node_with_a_secret(nodes, tmp_path):
    secret = b"fuzzing with a secret"
    target = start_target(nodes, tmp_path, secret)
    cases = generate(random.Random(SEED + 1), target, CASES // 3)
    assert asyncio.run(fuzz(target, cases, EXPECTED)) == []
    assert_healthy(nodes.started[0], target, EXPECTED, "--secret-file", str(tmp_path / "secret"))


# --------------------------------------------------------------------------- exact answers


async def conversation(
    target: Target,
    role: str | None,
    frames: list[bytes],
    done: Callable[[list[dict]], bool] = lambda received: False,
) -> list[dict]:
    """Send ``frames`` (after a handshake as ``role``) and collect the node's messages until
    ``done`` says so or the node closes the connection. Without a handshake, the node's
    hello comes first."""
    reader, writer = await open_as(target, role, "talker")
    received: list[dict] = []
    try:
        writer.write(b"".join(frames))
        async with asyncio.timeout(CLOSE_TIMEOUT):
            while not done(received) and (incoming := await read_message(reader)) is not None:
                received.append(incoming)
    finally:
        writer.close()
    return received


def answered(*request_ids: int, pong: bool = False) -> Callable[[list[dict]], bool]:
    """Done once every request has its answer (and a pong came, if asked)."""

    def done(received: list[dict]) -> bool:
        ids = {m.get("request_id") for m in received}
        return set(request_ids) <= ids and (not pong or any(m["type"] == "pong" for m in received))

    return done


def answers_by_id(received: list[dict]) -> dict[int, dict]:
    return {m["request_id"]: m for m in received if "request_id" in m}


def test_unauthenticated_requests_get_an_error_and_no_answer(nodes, tmp_path):
    target = start_target(nodes, tmp_path, b"the secret")
    valid = templates(target)
    hello, client_call, status = (json_frame(valid[i]) for i in (0, 3, 5))
    node_hello = json_frame({**valid[0], "role": "node"})
    old_version = json_frame({**valid[0], "version": OLDEST_PROTOCOL_VERSION - 1})
    bad_mac = json_frame(valid[1])
    for frames, phrase in (
        ([hello, client_call], "auth"),
        ([hello, status], "auth"),
        ([node_hello, json_frame(valid[6])], "auth"),
        ([hello, bad_mac, status], "authentication failed"),
        ([client_call], "hello"),
        ([old_version], "version"),
    ):
        received = asyncio.run(conversation(target, None, frames))
        kinds = [m["type"] for m in received]
        assert kinds == ["hello", "error"], kinds
        assert phrase in received[-1]["message"], received[-1]
    assert_healthy(nodes.started[0], target, EXPECTED, "--secret-file", str(tmp_path / "secret"))


def test_well_formed_requests_with_bad_content_get_error_answers(nodes, tmp_path):
    target = start_target(nodes, tmp_path)
    missing = target.pong + 1000
    as_client = asyncio.run(
        conversation(
            target,
            "client",
            [
                encode_frame(message("client_call", request_id=1, target=missing, input=0)),
                encode_frame(
                    message("client_create", request_id=2, behavior="no", controller=None)
                ),
                json_frame(templates(target)[6]),  # a peer's call: not a client's to send
                encode_frame(message("status", request_id=3)),
            ],
            answered(1, 2, 3),
        )
    )
    answers = answers_by_id(as_client)
    assert (answers[1]["ok"], answers[1]["error_kind"]) == (False, "ObjNotFound")
    assert (answers[2]["ok"], answers[2]["error_kind"]) == (False, "BehaviorNotFound")
    assert any(m["type"] == "error" and "call" in m["message"] for m in as_client)
    assert answers[3]["type"] == "status_response"  # the connection survived the refusal

    junk_object = {"behavior": "ping", "code_hash": "00" * 32, "state": [{"Nat": -1}]}
    as_peer = asyncio.run(
        conversation(
            target,
            "node",
            [
                encode_frame(
                    message("call", request_id=1, target=missing, input=0, sender=0,
                            sender_machine="talker", duct=[])
                ),
                encode_frame(
                    message("move_object", request_id=2, object_id=missing, object=junk_object)
                ),
                encode_frame(message("teleport", request_id=3, activation={"frames": 1})),
                encode_frame(
                    message("fetch_object", request_id=4, object_id=missing, to_machine="talker")
                ),
                encode_frame(message("ping", nonce=99)),
            ],
            answered(1, 2, 3, 4, pong=True),
        )
    )  # fmt: skip
    answers = answers_by_id(as_peer)
    assert (answers[1]["ok"], answers[1]["error_kind"]) == (False, "ObjNotFound")
    for request_id in (2, 3):
        assert answers[request_id]["type"] == "object_response", answers[request_id]
        assert answers[request_id]["ok"] is False
    assert (answers[4]["ok"], answers[4]["error_kind"]) == (False, "ObjNotFound")
    assert {"type": "pong", "nonce": 99} in as_peer
    status = assert_healthy(nodes.started[0], target, EXPECTED)
    assert status["object_count"] == 2  # nothing was installed or lost


# --------------------------------------------------------------------------- floods

DEEP_JSON = frame(b"[" * 600_000 + b"]" * 600_000)  # 1.2 MB: parsed before any check


async def flood(port: int, seconds: float, connections: int) -> int:
    """Send deeply nested frames from ``connections`` unauthenticated connections in turn,
    for ``seconds``; answers how many frames went out."""
    stop = asyncio.get_running_loop().time() + seconds

    async def one() -> int:
        sent = 0
        while asyncio.get_running_loop().time() < stop:
            try:
                reader, writer = await asyncio.open_connection(HOST, port)
            except OSError:
                continue
            try:
                writer.write(DEEP_JSON)
                await writer.drain()
                # It went out. The node refuses it from its length alone and closes with
                # most of it unread, which resets the connection: that is no failure.
                sent += 1
                writer.write_eof()
                await reader.read()
            except OSError:
                pass
            finally:
                writer.close()
        return sent

    return sum(await asyncio.gather(*(one() for _ in range(connections))))


@pytest.mark.slow
def test_unauthenticated_flood_does_not_cut_peers_apart(nodes, tmp_path):
    """Frames from strangers must not stall a node long enough for its peers to take it for
    dead: the calls between two nodes holding the secret keep their single-node answer."""
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(b"the secret")
    tape = compile_tape(EXAMPLES / "pingpong.avm", tmp_path, "pingpong")
    beta = nodes.start("beta", [tape], secret_file=secret_file)
    alpha = nodes.start("alpha", [tape], peers={"beta": beta}, secret_file=secret_file)
    with Session(alpha, b"the secret") as on_alpha, Session(beta, b"the secret") as on_beta:
        ping, pong = on_alpha.create("ping"), on_beta.create("pong")
    target = Target(alpha.port, ping, pong, b"the secret")

    async def calls_during_flood() -> tuple[list[str], int]:
        answers: list[str] = []
        flooding = asyncio.create_task(flood(alpha.port, 6.0, 6))
        while not flooding.done():
            try:
                answers.append(await answer_of(target))
            except ClientError as error:
                answers.append(f"error: {error}")
        return answers, await flooding

    answers, sent = asyncio.run(calls_during_flood())
    assert sent > 0
    assert set(answers) == {EXPECTED}, answers
    for node in (alpha, beta):
        assert "silent for" not in node.log(), node.log()
