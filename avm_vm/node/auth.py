"""The handshake that opens every connection: TLS if configured, protocol version, identity.

1. With TLS (`Tls`, mutual: both sides present a certificate from the cluster's CA), the
   responder sends the 8 bytes ``TLS_START`` and both sides run a TLS handshake on the raw
   connection; the rest of the handshake and every frame after it travel inside TLS. (The
   responder speaks first so that the initiator's TLS hello cannot reach the responder's
   socket before the responder reads with TLS.)
2. Without TLS and without a secret, only loopback peers (127.0.0.0/8, ::1) are served:
   each side checks the socket's peer address before it says anything.
3. Both sides send ``hello`` at once: version, machine name, role, a fresh 32-byte random
   nonce and the node's id prefix. A different version is refused with an ``error`` naming
   both versions (the version is read before the rest of the hello is checked, so a later
   protocol can still be told apart). The initiator refuses a responder that is not a node.
4. With TLS, the peer's certificate must name exactly the role and name its hello claims:
   its subject alternative names hold one URI ``avm:ROLE:NAME`` (`identity_uri`).
5. With a secret, each side sends ``auth``: an HMAC-SHA256 under the secret of
   ``avm-auth-v2|DIRECTION|TRANSCRIPT`` in hex, where DIRECTION is ``initiator`` for the
   side that opened the TCP connection and ``responder`` for the other, and TRANSCRIPT the
   hex SHA-256 of both hellos as they were sent (`transcript_hash`). The initiator proves
   first; the responder answers only after checking it, so a peer without the secret
   learns no MAC at all from a node it dials into. Then every frame in each direction
   carries a tag under a key of its own (`frame_keys`, `wire.FrameSeal`).

Why the MAC resists replay and reflection: the transcript holds the verifier's own fresh
nonce, so a MAC recorded on an earlier connection never verifies again. A MAC a responder
sends can never pass as an initiator's (the direction differs), and a node only initiates
to the peers it is configured with; so an attacker who connects to two nodes cannot hand
one the proof it got from the other, nor reflect a node's proof back to it. The transcript
covers every field of both hellos, so nothing in them (a prefix, a role) can be changed on
the way, and the frame keys differ for every connection and direction.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import secrets
import ssl
import struct
from contextlib import suppress
from dataclasses import dataclass, field, replace
from pathlib import Path

from avm_vm.node import OLDEST_PROTOCOL_VERSION, PROTOCOL_VERSION
from avm_vm.node.codec import WireError
from avm_vm.node.messages import Message, decode_message, message
from avm_vm.node.wire import FrameSeal, encode_frame, parse_payload, read_payload

__all__ = ["PROTOCOL_VERSION", "HandshakeError", "Hello", "Tls", "handshake"]

# Handshake messages are a few hundred bytes; a peer that has proved nothing yet must not be
# able to make us buffer and parse megabytes (a 16 MiB frame of nested brackets takes the
# event loop seconds).
HANDSHAKE_MAX_FRAME = 4096
NONCE_BYTES = 32
TLS_START = b"AVM-TLS\n"  # the responder's go-ahead for the TLS handshake (module docstring)
_MAC_LABEL = "avm-auth-v2"
_KEY_LABEL = "avm-frames-v2"
_LENGTH = struct.Struct(">I")


class HandshakeError(WireError):
    """The handshake failed; the connection is closed and the message says why."""


class SecretFileError(Exception):
    """The shared-secret file cannot be used; the message says why."""


@dataclass(frozen=True)
class Hello:
    """What the peer said about itself, and what the handshake established."""

    version: int
    name: str
    role: str
    nonce: str
    prefix: int
    certified: bool = False  # its name and role are proved by a certificate (TLS)
    # With a shared secret: the seals that tag this side's frames and check the peer's.
    outgoing: FrameSeal | None = field(default=None, compare=False, repr=False)
    incoming: FrameSeal | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Tls:
    """Mutual TLS for one node or client: its contexts, and the identity its own
    certificate proves (`avm_vm.node.certs.load_tls` makes one from files)."""

    dial: ssl.SSLContext  # for connections this side opens
    accept: ssl.SSLContext | None  # for connections it accepts (nodes only)
    role: str
    name: str


def identity_uri(role: str, name: str) -> str:
    """The subject-alternative-name URI that certifies ``name`` in ``role``."""
    return f"avm:{role}:{name}"


def tls_contexts(cert: Path, key: Path, ca: Path, *, node: bool) -> Tls:
    """Contexts that present ``cert`` and accept only peers certified by ``ca`` (TLS 1.2
    and later). Names are checked against the hello, not by TLS (hence no host names).
    Raises OSError or ssl.SSLError when a file cannot be used; the identity is left empty
    for the caller to fill in."""

    def context(purpose: int) -> ssl.SSLContext:
        made = ssl.SSLContext(purpose)
        made.minimum_version = ssl.TLSVersion.TLSv1_2
        made.load_cert_chain(cert, key)
        made.load_verify_locations(cafile=ca)
        made.check_hostname = False
        made.verify_mode = ssl.CERT_REQUIRED
        return made

    accept = context(ssl.PROTOCOL_TLS_SERVER) if node else None
    return Tls(context(ssl.PROTOCOL_TLS_CLIENT), accept, "node" if node else "client", "")


def read_secret_file(path: str | Path) -> bytes:
    """The shared secret stored in ``path``, trailing line breaks removed (editors add them)."""
    try:
        secret = Path(path).read_bytes().rstrip(b"\r\n")
    except OSError as error:
        raise SecretFileError(f"cannot read secret file {path}: {error.strerror}") from None
    if not secret:
        raise SecretFileError(f"secret file {path} is empty")
    return secret


def is_loopback_peer(peername: object) -> bool:
    """True when a socket's peer address (``get_extra_info("peername")``) is a loopback IP."""
    if not isinstance(peername, tuple) or not peername or not isinstance(peername[0], str):
        return False
    try:
        address = ipaddress.ip_address(peername[0].split("%", 1)[0])  # drop an IPv6 scope id
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def transcript_hash(initiator_hello: bytes, responder_hello: bytes) -> bytes:
    """SHA-256 of both hello payloads, each after its 4-byte big-endian length, the
    initiator's first: what the ``auth`` MACs and the frame keys are bound to."""
    digest = hashlib.sha256()
    for payload in (initiator_hello, responder_hello):
        digest.update(_LENGTH.pack(len(payload)))
        digest.update(payload)
    return digest.digest()


def auth_mac(secret: bytes, *, initiator: bool, transcript: bytes) -> str:
    """The proof one side sends (module docstring): hex HMAC-SHA256 under ``secret``."""
    direction = "initiator" if initiator else "responder"
    text = f"{_MAC_LABEL}|{direction}|{transcript.hex()}"
    return hmac.new(secret, text.encode("utf-8"), hashlib.sha256).hexdigest()


def frame_keys(
    secret: bytes, transcript: bytes, initiator_nonce: str, responder_nonce: str
) -> tuple[bytes, bytes]:
    """The frame MAC keys (initiator to responder, responder to initiator): HKDF-SHA256
    (RFC 5869) with the secret as input key material, both nonces as salt and, as info,
    ``avm-frames-v2|DIRECTION|TRANSCRIPT`` (one 32-byte block each)."""
    salt = (initiator_nonce + responder_nonce).encode("ascii")
    pseudo_random = hmac.digest(salt, secret, "sha256")
    keys = []
    for direction in ("initiator", "responder"):
        info = f"{_KEY_LABEL}|{direction}|{transcript.hex()}".encode("ascii")
        keys.append(hmac.digest(pseudo_random, info + b"\x01", "sha256"))
    return keys[0], keys[1]


class _Refused(Exception):
    """A handshake failure; ``tell_peer`` is False when the peer already told us why it left."""

    def __init__(self, reason: str, tell_peer: bool = True) -> None:
        super().__init__(reason)
        self.tell_peer = tell_peer


async def handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    name: str,
    role: str,
    secret: bytes | None,
    prefix: int,
    timeout: float,
    initiator: bool,
    tls: ssl.SSLContext | None = None,
) -> Hello:
    """Run the handshake on a fresh connection (both sides call this) and return the peer's hello.

    ``initiator`` is True on the side that opened the connection; ``tls`` is the context
    for this side (`Tls.dial` or `Tls.accept`). On failure the peer is sent an ``error``
    message if it can be, the connection is closed and ``HandshakeError`` says why.
    """
    nonce = secrets.token_hex(NONCE_BYTES)
    # Encoding our hello first makes a bad name, role or prefix a local error, before any I/O.
    hello = message(
        "hello", version=PROTOCOL_VERSION, name=name, role=role, nonce=nonce, prefix=prefix
    )
    hello_frame = encode_frame(hello)
    try:
        async with asyncio.timeout(timeout):
            if tls is not None:
                await _start_tls(reader, writer, tls, initiator, timeout)
            return await _run(reader, writer, hello_frame, hello, secret, initiator, tls)
    except _Refused as refusal:
        reason, tell_peer = str(refusal), refusal.tell_peer
    except TimeoutError:
        reason, tell_peer = f"handshake timed out after {timeout:g} s", True
    except ssl.SSLError as error:
        reason, tell_peer = f"TLS handshake failed: {_tls_reason(error)}", False
    except WireError as error:
        reason, tell_peer = f"bad handshake message: {error}", True
    except OSError as error:
        what = str(error) or type(error).__name__  # a reset says nothing else
        reason, tell_peer = f"connection lost during the handshake: {what}", False
    if tell_peer:
        with suppress(OSError, RuntimeError):
            writer.write(encode_frame(message("error", message=reason)))
    writer.close()
    with suppress(OSError, TimeoutError, ssl.SSLError):
        await asyncio.wait_for(writer.wait_closed(), 1.0)
    raise HandshakeError(reason)


async def _start_tls(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    tls: ssl.SSLContext,
    initiator: bool,
    timeout: float,
) -> None:
    """The TLS handshake (module docstring, step 1); certificates are verified by ``tls``."""
    if initiator:
        try:
            start = await reader.readexactly(len(TLS_START))
        except asyncio.IncompleteReadError:
            raise _Refused("the peer closed the connection before TLS", tell_peer=False) from None
        if start != TLS_START:
            raise _Refused(await _not_tls(reader, start))
    else:
        # Written and switched in one step (no await in between): the initiator's TLS hello
        # can only be read by TLS.
        writer.write(TLS_START)
    await writer.start_tls(tls, ssl_handshake_timeout=timeout)


async def _not_tls(reader: asyncio.StreamReader, start: bytes) -> str:
    """Why a responder sent something else than ``TLS_START``: its ``error`` frame (a node
    that turns connections away before any handshake) or a plain ``hello``."""
    (length,) = _LENGTH.unpack(start[: _LENGTH.size])
    with suppress(WireError, asyncio.IncompleteReadError, ValueError):
        if length <= HANDSHAKE_MAX_FRAME:
            payload = start[_LENGTH.size :] + await reader.readexactly(length - _LENGTH.size)
            said = decode_message(parse_payload(payload))
            if said["type"] == "error":
                return f"the peer refused the connection: {said['message']}"
    return "the peer does not speak TLS (is it started with --tls-cert?)"


def _tls_reason(error: ssl.SSLError) -> str:
    """What OpenSSL said, without the source position it appends."""
    verify = getattr(error, "verify_message", None)
    reason = error.reason or str(error)
    return f"{reason} ({verify})" if verify else reason


async def _run(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    hello_frame: bytes,
    hello: Message,
    secret: bytes | None,
    initiator: bool,
    tls: ssl.SSLContext | None,
) -> Hello:
    peername = writer.get_extra_info("peername")
    if secret is None and tls is None and not is_loopback_peer(peername):
        where = (
            f"{peername[0]}:{peername[1]}"
            if isinstance(peername, tuple) and len(peername) >= 2
            else peername
        )
        raise _Refused(
            f"refusing {where}: without TLS or a shared secret only loopback peers may connect"
        )
    writer.write(hello_frame)
    await writer.drain()
    said, payload = await _expect(reader, "hello")
    peer = Hello(**{k: v for k, v in said.items() if k != "type"}, certified=tls is not None)
    if peer.nonce == hello["nonce"]:
        raise _Refused("the peer sent back our own nonce (a reflected handshake)")
    if initiator and peer.role != "node":
        raise _Refused(f"{peer.name} is a {peer.role}, not a node")
    if tls is not None:
        _check_certificate(writer, peer)
    if secret is None:
        return peer

    ours, theirs = hello_frame[_LENGTH.size :], payload
    transcript = transcript_hash(*((ours, theirs) if initiator else (theirs, ours)))
    proof = message("auth", mac=auth_mac(secret, initiator=initiator, transcript=transcript))
    if initiator:
        await _send(writer, proof)
    answer, _ = await _expect(reader, "auth")
    expected = auth_mac(secret, initiator=not initiator, transcript=transcript)
    if not hmac.compare_digest(answer["mac"], expected):
        raise _Refused("authentication failed: the peer does not prove the shared secret")
    if not initiator:
        await _send(writer, proof)
    nonces = (hello["nonce"], peer.nonce) if initiator else (peer.nonce, hello["nonce"])
    forward, backward = frame_keys(secret, transcript, *nonces)
    outgoing, incoming = (forward, backward) if initiator else (backward, forward)
    return replace(peer, outgoing=FrameSeal(outgoing), incoming=FrameSeal(incoming))


def _check_certificate(writer: asyncio.StreamWriter, peer: Hello) -> None:
    """The peer's certificate (verified against the CA by TLS) must name the role and the
    name its hello claims, and nothing else."""
    certificate = writer.get_extra_info("peercert") or {}
    names = [
        value
        for kind, value in certificate.get("subjectAltName", ())
        if kind == "URI" and value.startswith("avm:")
    ]
    claimed = identity_uri(peer.role, peer.name)
    if names != [claimed]:
        shown = ", ".join(names) or "no avm identity"
        raise _Refused(
            f"certificate mismatch: the peer claims to be {claimed} but its certificate "
            f"names {shown}"
        )


async def _send(writer: asyncio.StreamWriter, outgoing: Message) -> None:
    writer.write(encode_frame(outgoing))
    await writer.drain()


async def _expect(reader: asyncio.StreamReader, kind: str) -> tuple[Message, bytes]:
    """The next message, which must be ``kind``, and its payload; a peer's ``error`` ends
    the handshake."""
    payload = await read_payload(reader, HANDSHAKE_MAX_FRAME)
    if payload is None:
        raise _Refused("the peer closed the connection during the handshake", tell_peer=False)
    obj = parse_payload(payload)
    if type(obj) is dict and obj.get("type") == "hello":
        version = obj.get("version")
        if type(version) is int and not OLDEST_PROTOCOL_VERSION <= version <= PROTOCOL_VERSION:
            raise _Refused(
                f"protocol version mismatch: this side speaks {OLDEST_PROTOCOL_VERSION} to "
                f"{PROTOCOL_VERSION}, the peer speaks {version}"
            )
    received = decode_message(obj)
    if received["type"] == "error":
        raise _Refused(f"the peer refused the handshake: {received['message']}", tell_peer=False)
    if received["type"] != kind:
        hint = " (this side holds a shared secret; does the peer?)" if kind == "auth" else ""
        raise _Refused(f"expected the peer's {kind} message{hint}, got {received['type']}")
    return received, payload
