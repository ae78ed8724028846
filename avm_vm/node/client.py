"""Talking to a running node from outside: one connection, one request, one answer.

`avm call`, `avm create`, `avm status` and the durable-node commands (`avm state-hash`,
`avm snapshot`, `avm peek`, `avm load`) use these; so can tests and scripts. Every
failure is a `ClientError` whose message is fit for a user. A client proves itself with the
node's shared secret, or with a client certificate (`Tls`): then it calls itself by the name
its certificate holds, and the node grants it what docs/wire.md, "Security", says.
"""

from __future__ import annotations

import asyncio
import base64
from contextlib import suppress
from typing import Any

from avm_vm.node.auth import HandshakeError, Hello, Tls, handshake
from avm_vm.node.messages import Message, message
from avm_vm.node.wire import WireError, read_message, write_message
from avm_vm.trace import CallFailure
from avm_vm.values import ObjectRef, Value

CLIENT_NAME = "client"
_REQUEST_ID = 1


class ClientError(Exception):
    """The request could not be made or the node refused it; the message says why."""


class Client:
    """An open connection to a node, for any number of requests in turn."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, node: Hello
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.node = node  # what the node said in the handshake
        self.next_id = _REQUEST_ID

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        secret: bytes | None = None,
        timeout: float = 10.0,
        tls: Tls | None = None,
    ) -> Client:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (TimeoutError, OSError) as error:
            raise ClientError(f"cannot connect to {host}:{port}: {error or 'timed out'}") from None
        try:
            node = await handshake(
                reader,
                writer,
                name=CLIENT_NAME if tls is None else tls.name,
                role="client",
                secret=secret,
                prefix=0,
                timeout=timeout,
                initiator=True,
                tls=None if tls is None else tls.dial,
            )
        except HandshakeError as error:
            raise ClientError(f"{host}:{port} refused the connection: {error}") from None
        return cls(reader, writer, node)

    async def send(self, outgoing: Message) -> None:
        """Write one message (tagged when the connection has a shared secret)."""
        await write_message(self.writer, outgoing, self.node.outgoing)

    async def receive(self) -> Message | None:
        """The next message from the node; None when it closed the connection."""
        return await read_message(self.reader, self.node.incoming)

    async def close(self) -> None:
        self.writer.close()
        with suppress(OSError, asyncio.TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)

    async def request(self, kind: str, timeout: float, **fields: object) -> Message:
        """Send one request and wait for the answer carrying its id."""
        request_id = self.next_id
        self.next_id += 1
        try:
            await self.send(message(kind, request_id=request_id, **fields))
            async with asyncio.timeout(timeout):
                while True:
                    answer = await self.receive()
                    if answer is None:
                        raise ClientError("the node closed the connection")
                    if answer["type"] == "error":
                        raise ClientError(f"the node reported: {answer['message']}")
                    if answer.get("request_id") == request_id:
                        return answer
        except TimeoutError:
            raise ClientError(f"no answer within {timeout:g} s") from None
        except WireError as error:
            raise ClientError(f"bad answer from the node: {error}") from None
        except OSError as error:
            raise ClientError(f"connection lost: {error}") from None

    async def call(self, target: int, value: Value, timeout: float = 10.0) -> Value:
        """``call(target, value)`` as a main would: ``just v``, or ``nothing``."""
        return (await self.call_reason(target, value, timeout))[0]

    async def call_reason(
        self, target: int, value: Value, timeout: float = 10.0
    ) -> tuple[Value, CallFailure | None]:
        """`call`, and why the target failed when the answer is ``nothing`` (None from a
        node that does not say)."""
        answer = await self.request("client_call", timeout, target=target, input=value)
        return _value(answer), answer.get("failure")

    async def create(
        self, behavior: str, controller: str | None = None, timeout: float = 10.0
    ) -> int:
        answer = _value(
            await self.request("client_create", timeout, behavior=behavior, controller=controller)
        )
        if type(answer) is not ObjectRef:
            raise ClientError(f"the node answered {answer!r}, not an object")
        return answer.id

    async def status(self, timeout: float = 10.0) -> dict[str, Any]:
        return (await self.request("status", timeout))["status"]

    async def state_hash(self, timeout: float = 10.0) -> tuple[str, int]:
        """The node's state hash and how many events it has applied."""
        answer = await self.request("state_hash", timeout)
        return answer["state_hash"], answer["events"]

    async def snapshot(self, timeout: float = 10.0) -> tuple[int, str]:
        """Have the node write a snapshot; answers its event index and state hash."""
        answer = await self.request("snapshot", timeout)
        return answer["index"], answer["state_hash"]

    async def peek(self, object_id: int, timeout: float = 10.0) -> dict[str, Any]:
        """An object's behavior, code hash, metadata and state; the node changes nothing."""
        shipped = (await self.request("peek", timeout, object_id=object_id))["object"]
        if shipped is None:
            raise ClientError(f"no object obj:{object_id} on this node")
        return shipped

    async def load(self, tape: bytes, timeout: float = 10.0) -> dict[str, str]:
        """Upgrade the node's code; answers the loaded behaviors' code hashes."""
        encoded = base64.b64encode(tape).decode()
        return (await self.request("load", timeout, tape=encoded))["behaviors"]

    async def intent(
        self, target: int, offer: Value, check: Value, wait_ms: int, timeout: float = 10.0
    ) -> int:
        """Submit an intent (docs/intents.md); answers its number on the node."""
        fields = {"target": target, "offer": offer, "check": check, "wait_ms": wait_ms}
        return (await self.request("intent", timeout, **fields))["intent"]

    async def intent_status(self, number: int, timeout: float = 10.0) -> dict[str, Any]:
        """What became of intent ``number``: pending, settled, failed (and why) or unknown."""
        return (await self.request("intent_status", timeout, intent=number))["report"]


def _value(answer: Message) -> Value:
    if answer["type"] != "call_response":
        raise ClientError(f"the node answered with {answer['type']}")
    if not answer["ok"]:
        raise ClientError(f"{answer['error_kind']}: {answer['error']}")
    return answer["value"]
