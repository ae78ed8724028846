"""Security on the wire, with real `avm node` processes on 127.0.0.1 (docs/wire.md, "Security").

A man-in-the-middle proxy (`Tamperer`) sits between a client and a node, on a connection
authenticated by a shared secret (tagged frames) or by mutual TLS, and changes, drops,
replays or injects one unit of the stream (a frame, or a TLS record): the node must close
that connection, execute nothing of what came after (a counter object says what ran), log
why, and keep serving its other clients. Certificates from another CA, names that do not
match the certificate, a client loading code without the right, a client or a node
announcing or moving objects that are not theirs: all refused.
"""

from __future__ import annotations

import asyncio
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest
from node_harness import (
    HOST,
    Node,
    Nodes,
    Session,
    avm,
    client_tls,
    compile_tape,
    tls_args,
    wait_connected,
)

from avm_vm.node.auth import HandshakeError, Hello, Tls, handshake, tls_contexts
from avm_vm.node.certs import add, init, load_tls
from avm_vm.node.client import Client, ClientError
from avm_vm.node.directory import PREFIX_SHIFT
from avm_vm.node.messages import Message, message
from avm_vm.node.wire import TAG_BYTES, WireError, encode_frame, read_message, write_message
from avm_vm.value_text import parse_value
from avm_vm.values import Just, Value

COUNTER = """
behavior Counter {
  field count = 0
  on ["inc"] {
    count += 1
    return count
  }
  on ["get"] { return count }
}
"""
SECRET = b"the cluster secret"
WAIT = 15.0  # seconds any one exchange may take on a loaded machine
INC, GET = parse_value('["inc"]'), parse_value('["get"]')


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("certs")
    init(directory, ["alpha", "beta"], ["ops"], days=2)
    add(directory, ["gamma"], ["admin"], days=2)  # later, with the same CA
    return directory


@pytest.fixture(scope="module")
def tape(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_tape(COUNTER, tmp_path_factory.mktemp("tape"), "counter")


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Nodes]:
    started = Nodes(tmp_path)
    yield started
    started.close()


def run(coroutine: object) -> object:
    return asyncio.run(asyncio.wait_for(coroutine, 4 * WAIT))  # type: ignore[arg-type]


def log_has(node: Node, phrase: str) -> bool:
    """Whether the node logged ``phrase`` (logs are written as they happen: poll a little)."""
    for _ in range(100):
        if phrase in node.log():
            return True
        time.sleep(0.05)
    return False


# --------------------------------------------------------------------------- the proxy


class Tamperer:
    """A TCP proxy that forwards a client's bytes to a node unit by unit (a frame of the
    node protocol, or a TLS record) and, once armed, does ``attack`` to the next unit (the
    node's bytes go back untouched)."""

    def __init__(self, node_port: int, attack: str, tls: bool, counter: int) -> None:
        self.node_port = node_port
        self.attack = attack
        self.counter = counter  # what a forged call targets
        self.tls = tls
        self.armed = False
        self.frames = 0  # node-protocol frames seen from the client (handshake ones untagged)
        self.tasks: list[asyncio.Task] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._accept, HOST, 0)
        return self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.server.close()
        for task in self.tasks:
            task.cancel()
        with suppress(asyncio.CancelledError, OSError):
            await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        node_r, node_w = await asyncio.open_connection(HOST, self.node_port)
        self.tasks.append(asyncio.create_task(self._back(node_r, client_w)))
        self.tasks.append(asyncio.create_task(self._forth(client_r, node_w)))

    async def _back(self, node_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        with suppress(OSError):
            while data := await node_r.read(65536):
                client_w.write(data)
                await client_w.drain()
        client_w.close()

    async def _unit(self, reader: asyncio.StreamReader) -> bytes:
        """The next frame (tagged once the handshake is over) or TLS record."""
        if self.tls:
            head = await reader.readexactly(5)
            return head + await reader.readexactly(struct.unpack(">H", head[3:])[0])
        head = await reader.readexactly(4)
        tag = TAG_BYTES if self.frames >= 2 else 0  # after hello and auth: tagged
        self.frames += 1
        return head + await reader.readexactly(struct.unpack(">I", head)[0] + tag)

    async def _forth(self, client_r: asyncio.StreamReader, node_w: asyncio.StreamWriter) -> None:
        with suppress(OSError, asyncio.IncompleteReadError):
            while True:
                unit = await self._unit(client_r)
                if self.armed:
                    self.armed = False
                    await self._tamper(unit, client_r, node_w)
                else:
                    node_w.write(unit)
                await node_w.drain()
        node_w.close()

    async def _tamper(
        self, unit: bytes, client_r: asyncio.StreamReader, node_w: asyncio.StreamWriter
    ) -> None:
        if self.attack == "flip":  # one bit of the payload (or record body)
            middle = len(unit) // 2
            node_w.write(unit[:middle] + bytes([unit[middle] ^ 0x04]) + unit[middle + 1 :])
        elif self.attack == "drop":  # this unit never arrives; the next one does
            node_w.write(await self._unit(client_r))
        elif self.attack == "replay":  # it arrives, and again in place of the next one
            node_w.write(unit)
            await node_w.drain()
            await self._unit(client_r)
            node_w.write(unit)
        elif self.attack == "inject":  # a unit of our own first, then the real one
            if self.tls:
                node_w.write(b"\x17\x03\x03\x00\x30" + bytes(range(48)) + unit)
            else:
                call = message("client_call", request_id=99, target=self.counter, input=INC)
                forged = encode_frame(call)
                node_w.write(forged + b"\x00" * TAG_BYTES + unit)
        else:
            raise AssertionError(f"unknown attack {self.attack}")


async def attacked_session(
    port: int, attack: str, counter: int, secret: bytes | None, tls: Tls | None
) -> list[Message]:
    """Connect through a `Tamperer`, arm it, send two ``inc`` calls; the messages the
    client got back before the node closed the connection (the last one says how it ended:
    an `error` from the node, or "closed", or "still open" if the node never closed it)."""
    proxy = Tamperer(port, attack, tls is not None, counter)
    proxy_port = await proxy.start()
    try:
        client = await Client.connect(HOST, proxy_port, secret, WAIT, tls)
        proxy.armed = True
        got: list[Message] = []
        try:
            async with asyncio.timeout(WAIT):
                for request_id in (1, 2):
                    call = message("client_call", request_id=request_id, target=counter, input=INC)
                    await client.send(call)
                    if attack == "replay" and request_id == 1:  # its answer first, then replay
                        got.append(await client.receive())  # type: ignore[arg-type]
                while (answer := await client.receive()) is not None:
                    got.append(answer)
            if not got or got[-1]["type"] != "error":
                got.append(message("error", message="closed"))
        except TimeoutError:
            got.append(message("status_response", request_id=0, status={"still": "open"}))
        except (OSError, ClientError, WireError) as error:  # the node cut the connection
            got.append(message("error", message=f"closed: {error!r}"))
        await client.close()
        return got
    finally:
        await proxy.close()


def counter_value(session: Session, counter: int) -> Value:
    return session.call(counter, GET)


ATTACKS = {"flip": 0, "drop": 0, "inject": 0, "replay": 1}  # the calls that may run


@pytest.mark.parametrize("mode", ["secret", "tls"])
def test_a_man_in_the_middle_cannot_change_drop_replay_or_inject(
    nodes, tape, certs, tmp_path, mode
):
    if mode == "secret":
        secret_file = tmp_path / "secret"
        secret_file.write_bytes(SECRET)
        node = nodes.start("alpha", [tape], secret_file=secret_file)
        secret, tls = SECRET, None
        reason = "fails its authentication"
    else:
        node = nodes.start("alpha", [tape], certs=certs)
        secret, tls = None, client_tls(certs, "ops")
        reason = "TLS error"
    with Session(node, secret, WAIT, tls) as bystander:
        for attack, ran in ATTACKS.items():
            counter = bystander.create("Counter")
            got = run(attacked_session(node.port, attack, counter, secret, tls))
            answers = [m for m in got if m["type"] == "call_response"]
            # Nothing from the tampered unit on ran: with a replay, only the original.
            assert len(answers) == ran, (attack, got)
            assert got[-1]["type"] == "error", (attack, got)
            assert counter_value(bystander, counter) == Just(ran), attack
        # The node kept serving the connection it had all along, and new ones.
        assert bystander.call(counter, INC) == Just(2)
    with Session(node, secret, WAIT, tls) as fresh:
        assert fresh.status()["counters"]["malformed_frames"] >= len(ATTACKS)
    assert log_has(node, reason), node.log()
    assert node.alive()


# --------------------------------------------------------------------------- certificates


async def try_handshake(port: int, tls: Tls, name: str, role: str) -> Hello | str:
    """A handshake as ``role`` ``name`` with ``tls``'s certificate: the node's hello, or why
    it failed."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        hello = await handshake(
            reader,
            writer,
            name=name,
            role=role,
            secret=None,
            prefix=0 if role == "client" else 4242,
            timeout=WAIT,
            initiator=True,
            tls=tls.dial,
        )
        # TLS 1.3 tells a client its certificate was refused only on the first read.
        await write_message(writer, message("ping", nonce=1))
        async with asyncio.timeout(WAIT):
            answer = await read_message(reader)
        if answer is None or answer["type"] not in ("ping", "pong"):  # a node pings a node
            return f"no pong: {answer}"
        return hello
    except (HandshakeError, OSError) as error:
        return str(error)
    finally:
        writer.close()


def test_certificates_from_another_ca_are_refused(nodes, tape, certs, tmp_path):
    other = tmp_path / "other-ca"
    init(other, ["beta"], ["ops"], days=2)
    alpha = nodes.start("alpha", [tape], certs=certs)
    # A client whose certificate another CA signed (it trusts alpha's CA, so alpha decides).
    stranger = tls_contexts(other / "ops.crt", other / "ops.key", certs / "ca.crt", node=False)
    stranger = Tls(stranger.dial, None, "client", "ops")
    outcome = run(try_handshake(alpha.port, stranger, "ops", "client"))
    assert not isinstance(outcome, Hello), outcome
    assert log_has(alpha, "TLS handshake failed: CERTIFICATE_VERIFY_FAILED"), alpha.log()
    # A node of another CA that dials alpha finds that alpha is not the node it trusts,
    # and alpha never links to it.
    beta = nodes.start("beta", [tape], certs=other, peers={"alpha": alpha})
    assert log_has(beta, "cannot reach peer alpha"), beta.log()
    assert "CERTIFICATE_VERIFY_FAILED" in beta.log()
    ops = client_tls(certs, "ops")
    with Session(alpha, tls=ops) as session:
        assert not [p for p in session.status()["peers"] if p["connected"]]
    # The client refuses a node whose certificate another CA signed, with a clear error.
    result = avm("status", beta.address, *tls_args(certs, "ops"))
    assert result.returncode == 1
    assert "TLS handshake failed" in result.stderr, result.stderr


def test_a_name_that_does_not_match_the_certificate_is_refused(nodes, tape, certs):
    alpha = nodes.start("alpha", [tape], certs=certs)
    gamma = load_tls(certs / "gamma.crt", certs / "gamma.key", certs / "ca.crt", "node")
    ops = client_tls(certs, "ops")
    assert isinstance(run(try_handshake(alpha.port, gamma, "gamma", "node")), Hello)
    for tls, name, role in (
        (gamma, "beta", "node"),
        (ops, "admin", "client"),
        (ops, "ops", "node"),
    ):
        outcome = run(try_handshake(alpha.port, tls, name, role))
        assert isinstance(outcome, str) and "certificate mismatch" in outcome, outcome
        assert log_has(alpha, f"claims to be avm:{role}:{name}"), alpha.log()
    # A node started under a name its certificate does not hold stops at once.
    result = avm(
        "node",
        "--name",
        "mallory",
        "--listen",
        f"{HOST}:0",
        "--load",
        str(tape),
        *tls_args(certs, "gamma"),
    )
    assert result.returncode == 1
    assert "for node gamma, not --name mallory" in result.stderr


def test_tls_and_secret_options_are_checked(tape, certs, tmp_path):
    half = avm("status", f"{HOST}:1", "--tls-cert", str(certs / "ops.crt"))
    assert half.returncode == 1 and "go together" in half.stderr
    node_cert = avm("status", f"{HOST}:1", *tls_args(certs, "alpha"))
    assert node_cert.returncode == 1 and "a client certificate is needed" in node_cert.stderr
    wide = avm("node", "--name", "alpha", "--listen", "0.0.0.0:0", "--load", str(tape))
    assert wide.returncode == 1 and "needs --tls-cert" in wide.stderr


def test_tls_and_plain_sides_do_not_mix(nodes, tape, certs):
    plain = nodes.start("beta", [tape])
    secure = nodes.start("alpha", [tape], certs=certs)
    to_plain = avm("status", plain.address, *tls_args(certs, "ops"))
    assert to_plain.returncode == 1 and "does not speak TLS" in to_plain.stderr
    to_secure = avm("status", secure.address)
    assert to_secure.returncode == 1
    assert log_has(secure, "TLS handshake failed"), secure.log()


def certs_command(*args: str) -> subprocess.CompletedProcess[str]:
    """`avm certs ARGS` in a child process."""
    command = "from avm_vm.node.cli import certs_group; certs_group()"
    return subprocess.run(
        [sys.executable, "-c", command, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_certs_init_and_add_make_working_sets_and_overwrite_nothing(tmp_path):
    where = tmp_path / "c"
    made = certs_command("init", str(where), "--nodes", "n1,n2", "--clients", "op")
    assert made.returncode == 0, made.stderr
    assert "client op:" in made.stdout
    for name in ("ca", "n1", "n2", "op"):
        assert (where / f"{name}.crt").is_file()
        assert (where / f"{name}.key").stat().st_mode & 0o077 == 0  # owner only
    assert load_tls(where / "n2.crt", where / "n2.key", where / "ca.crt", "node").name == "n2"
    again = certs_command("init", str(where), "--nodes", "n3")
    assert again.returncode == 1 and "already holds ca.crt" in again.stderr
    more = certs_command("add", str(where), "--nodes", "n3,n1")
    assert more.returncode == 1 and "already holds n1.crt" in more.stderr
    assert not (where / "n3.crt").exists()
    assert certs_command("add", str(where), "--clients", "op2").returncode == 0
    assert load_tls(where / "op2.crt", where / "op2.key", where / "ca.crt", "client").name == "op2"


# --------------------------------------------------------------------------- rights


def test_load_needs_the_right(nodes, tape, certs, tmp_path):
    alpha = nodes.start("alpha", [tape], certs=certs, options=["--allow-client-load", "admin"])
    upgrade = compile_tape(COUNTER.replace("count += 1", "count += 10"), tmp_path, "upgrade")
    with Session(alpha, tls=client_tls(certs, "ops")) as session:
        counter = session.create("Counter")
        refused = avm("load", alpha.address, str(upgrade), *tls_args(certs, "ops"))
        assert refused.returncode == 1
        assert "client ops may not load code" in refused.stderr, refused.stderr
        assert log_has(alpha, "refused a load from client ops"), alpha.log()
        assert session.call(counter, INC) == Just(1)  # the old code still runs
        allowed = avm("load", alpha.address, str(upgrade), *tls_args(certs, "admin"))
        assert allowed.returncode == 0, allowed.stderr
        assert "loaded Counter" in allowed.stdout
        assert session.call(counter, INC) == Just(11)  # the new code runs


async def raw_exchange(
    port: int,
    name: str,
    role: str,
    sends: list[Message],
    secret: bytes | None,
    tls: Tls | None,
    answers: int,
    prefix: int = 4242,
) -> list:
    """After a handshake as ``role`` ``name`` (with ``secret`` or ``tls``), send ``sends``,
    then collect what comes back until ``answers`` messages came (pings answered by the node
    are left out) or a second went by."""
    reader, writer = await asyncio.open_connection(HOST, port)
    prefix = 0 if role == "client" else prefix
    hello = await handshake(
        reader,
        writer,
        name=name,
        role=role,
        secret=secret,
        prefix=prefix,
        timeout=WAIT,
        initiator=True,
        tls=None if tls is None else tls.dial,
    )
    for outgoing in sends:
        await write_message(writer, outgoing, hello.outgoing)
    got: list[Message] = []
    with suppress(TimeoutError, OSError):
        async with asyncio.timeout(1.0):
            while len(got) < answers:
                received = await read_message(reader, hello.incoming)
                if received is None:
                    break
                if received["type"] == "ping":
                    pong = message("pong", nonce=received["nonce"])
                    await write_message(writer, pong, hello.outgoing)
                elif received["type"] != "pong":
                    got.append(received)
    writer.close()
    return got


@pytest.mark.parametrize("mode", ["secret", "tls"])
def test_only_the_maker_or_holder_may_announce_or_move_an_object(
    nodes, tape, certs, tmp_path, mode
):
    if mode == "tls":
        options: dict = {"certs": certs}
        secret, ops = None, client_tls(certs, "ops")
        gamma = load_tls(certs / "gamma.crt", certs / "gamma.key", certs / "ca.crt", "node")
    else:  # any holder of the secret may claim to be a node: "gamma" is made up
        (tmp_path / "secret").write_bytes(SECRET)
        options = {"secret_file": tmp_path / "secret"}
        secret, ops, gamma = SECRET, None, None
    beta = nodes.start("beta", [tape], **options)
    alpha = nodes.start("alpha", [tape], peers={"beta": beta}, **options)
    wait_connected(alpha, ["beta"], tls=ops, secret=secret)
    with Session(beta, secret, WAIT, ops) as on_beta:
        counter = on_beta.create("Counter")
    with Session(alpha, secret, WAIT, ops) as on_alpha:
        known = on_alpha.status()["directory"]
    own = (4242 << PREFIX_SHIFT) + 1  # an id of gamma's own prefix
    steal = [
        message("create_notify", object_id=counter, machine_id="gamma"),
        message("create_notify", object_id=own, machine_id="gamma"),
        message("move_object", request_id=7, object_id=counter, object={"fake": True}),
    ]
    got = run(raw_exchange(alpha.port, "gamma", "node", steal, secret, gamma, 1))
    moved = [m for m in got if m["type"] == "object_response"]
    assert moved and not moved[0]["ok"] and "neither made nor holds" in moved[0]["error"], got
    assert log_has(alpha, "ignored gamma's notice that obj:"), alpha.log()
    with Session(alpha, secret, WAIT, ops) as on_alpha:
        # Alpha still routes the object to beta, its maker; gamma's own object is believed.
        assert on_alpha.call(counter, INC) == Just(1)
        assert on_alpha.status()["directory"] == known + 1
    # A client may neither announce nor move objects.
    got = run(raw_exchange(alpha.port, "ops", "client", steal[:1] + steal[2:], secret, ops, 2))
    errors = [m["message"] for m in got if m["type"] == "error"]
    assert any("create_notify is not accepted from a client" in e for e in errors), got
    assert any("move_object is not accepted from a client" in e for e in errors), got
    with Session(alpha, secret, WAIT, ops) as on_alpha:
        assert on_alpha.call(counter, GET) == Just(1)


def test_a_certified_node_cannot_take_the_prefix_of_a_node_it_is_not(nodes, tape, certs):
    beta = nodes.start("beta", [tape], certs=certs)
    alpha = nodes.start("alpha", [tape], certs=certs, peers={"beta": beta})
    ops = client_tls(certs, "ops")
    wait_connected(alpha, ["beta"], tls=ops)
    beta.kill()  # gone, but alpha remembers whose ids carry its prefix
    with Session(alpha, tls=ops) as session:
        for _ in range(int(WAIT / 0.05)):
            if not any(peer["connected"] for peer in session.status()["peers"]):
                break
            time.sleep(0.05)
    gamma = load_tls(certs / "gamma.crt", certs / "gamma.key", certs / "ca.crt", "node")
    got = run(raw_exchange(alpha.port, "gamma", "node", [], None, gamma, 1, prefix=beta.port))
    assert got and got[0]["type"] == "error", got
    assert f"id prefix {beta.port} belongs to node beta" in got[0]["message"], got
