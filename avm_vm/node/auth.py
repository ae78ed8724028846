"""The handshake that opens every connection: protocol version, then proof of the shared secret.

1. Without a secret, only loopback peers (127.0.0.0/8, ::1) are served: each side checks
   the socket's peer address before it says anything.
2. Both sides send ``hello`` at once: version, machine name, role, a fresh 32-byte random
   nonce and the node's id prefix. A different version is refused with an ``error`` naming
   both versions (the version is read before the rest of the hello is checked, so a later
   protocol can still be told apart).
3. With a secret, each side sends ``auth``: an HMAC-SHA256 under the secret of
   ``avm-auth-v1|DIRECTION|ROLE|OWN_NONCE|PEER_NONCE|OWN_NAME|PEER_NAME`` in hex, where
   DIRECTION is ``initiator`` for the side that opened the TCP connection and ``responder``
   for the other. The initiator proves first; the responder answers only after checking it,
   so a peer without the secret learns no MAC at all from a node it dials into.

Why the MAC resists replay and reflection: it covers the verifier's own fresh nonce, so a
MAC recorded on an earlier connection never verifies again. A MAC a responder sends can
never pass as an initiator's (the direction differs), and a node only initiates to the
peers it is configured with; so an attacker who connects to two nodes cannot hand one the
proof it got from the other, nor reflect a node's proof back to it. Names are
``messages.NAME`` strings (no ``|``), so the fields cannot be shifted into one another.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import secrets
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from avm_vm.node.codec import WireError
from avm_vm.node.messages import Message, decode_message, message
from avm_vm.node.wire import encode_frame, read_frame

PROTOCOL_VERSION = 1
# Handshake messages are a few hundred bytes; a peer that has proved nothing yet must not be
# able to make us buffer and parse megabytes (a 16 MiB frame of nested brackets takes the
# event loop seconds).
HANDSHAKE_MAX_FRAME = 4096
NONCE_BYTES = 32
_MAC_LABEL = "avm-auth-v1"


class HandshakeError(WireError):
    """The handshake failed; the connection is closed and the message says why."""


class SecretFileError(Exception):
    """The shared-secret file cannot be used; the message says why."""


@dataclass(frozen=True)
class Hello:
    """What the peer said about itself."""

    version: int
    name: str
    role: str
    nonce: str
    prefix: int


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


def auth_mac(
    secret: bytes,
    *,
    initiator: bool,
    role: str,
    own_nonce: str,
    peer_nonce: str,
    own_name: str,
    peer_name: str,
) -> str:
    """The proof one side sends (module docstring): hex HMAC-SHA256 under ``secret``."""
    direction = "initiator" if initiator else "responder"
    text = "|".join((_MAC_LABEL, direction, role, own_nonce, peer_nonce, own_name, peer_name))
    return hmac.new(secret, text.encode("utf-8"), hashlib.sha256).hexdigest()


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
) -> Hello:
    """Run the handshake on a fresh connection (both sides call this) and return the peer's hello.

    ``initiator`` is True on the side that opened the connection. On failure the peer is sent
    an ``error`` message, the connection is closed and ``HandshakeError`` says why.
    """
    nonce = secrets.token_hex(NONCE_BYTES)
    # Encoding our hello first makes a bad name, role or prefix a local error, before any I/O.
    hello = message(
        "hello", version=PROTOCOL_VERSION, name=name, role=role, nonce=nonce, prefix=prefix
    )
    hello_frame = encode_frame(hello)
    try:
        async with asyncio.timeout(timeout):
            return await _run(reader, writer, hello_frame, hello, secret, initiator)
    except _Refused as refusal:
        reason, tell_peer = str(refusal), refusal.tell_peer
    except TimeoutError:
        reason, tell_peer = f"handshake timed out after {timeout:g} s", True
    except WireError as error:
        reason, tell_peer = f"bad handshake message: {error}", True
    except OSError as error:
        reason, tell_peer = f"connection lost during the handshake: {error}", False
    if tell_peer:
        with suppress(OSError, RuntimeError):
            writer.write(encode_frame(message("error", message=reason)))
    writer.close()
    with suppress(OSError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), 1.0)
    raise HandshakeError(reason)


async def _run(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    hello_frame: bytes,
    hello: Message,
    secret: bytes | None,
    initiator: bool,
) -> Hello:
    peername = writer.get_extra_info("peername")
    if secret is None and not is_loopback_peer(peername):
        where = (
            f"{peername[0]}:{peername[1]}"
            if isinstance(peername, tuple) and len(peername) >= 2
            else peername
        )
        raise _Refused(f"refusing {where}: without a shared secret only loopback peers may connect")
    writer.write(hello_frame)
    await writer.drain()
    peer = Hello(**{k: v for k, v in (await _expect(reader, "hello")).items() if k != "type"})
    if peer.nonce == hello["nonce"]:
        raise _Refused("the peer sent back our own nonce (a reflected handshake)")
    if secret is None:
        return peer

    ours = auth_mac(
        secret,
        initiator=initiator,
        role=hello["role"],
        own_nonce=hello["nonce"],
        peer_nonce=peer.nonce,
        own_name=hello["name"],
        peer_name=peer.name,
    )
    expected = auth_mac(
        secret,
        initiator=not initiator,
        role=peer.role,
        own_nonce=peer.nonce,
        peer_nonce=hello["nonce"],
        own_name=peer.name,
        peer_name=hello["name"],
    )
    if initiator:
        await _send(writer, message("auth", mac=ours))
    answer = await _expect(reader, "auth")
    if not hmac.compare_digest(answer["mac"], expected):
        raise _Refused("authentication failed: the peer does not prove the shared secret")
    if not initiator:
        await _send(writer, message("auth", mac=ours))
    return peer


async def _send(writer: asyncio.StreamWriter, outgoing: Message) -> None:
    writer.write(encode_frame(outgoing))
    await writer.drain()


async def _expect(reader: asyncio.StreamReader, kind: str) -> Message:
    """The next message, which must be ``kind``; a peer's ``error`` ends the handshake."""
    obj = await read_frame(reader, HANDSHAKE_MAX_FRAME)
    if obj is None:
        raise _Refused("the peer closed the connection during the handshake", tell_peer=False)
    if type(obj) is dict and obj.get("type") == "hello":
        version = obj.get("version")
        if type(version) is int and version != PROTOCOL_VERSION:
            raise _Refused(
                f"protocol version mismatch: this side speaks {PROTOCOL_VERSION}, "
                f"the peer speaks {version}"
            )
    received = decode_message(obj)
    if received["type"] == "error":
        raise _Refused(f"the peer refused the handshake: {received['message']}", tell_peer=False)
    if received["type"] != kind:
        hint = " (this side holds a shared secret; does the peer?)" if kind == "auth" else ""
        raise _Refused(f"expected the peer's {kind} message{hint}, got {received['type']}")
    return received
