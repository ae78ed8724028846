"""Requests to peers: the message a parked run's request becomes, the pending map that waits
for the answers, and what each answer (or its absence) means to the parked instruction.

Every request has its own id and a timer; an entry ends exactly once, by its answer, its
timeout, or the loss of its peer, so nothing waits for ever (spec §11.8 has no timeouts).
The timeout is about the peer, not the work: when it runs out while the peer still answers
its keep-alive pings, the request keeps waiting (a long computation is no failure), and it
fails as soon as the peer falls silent or its connection goes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from avm_vm.errors import AvmError, ErrorKind
from avm_vm.node.messages import Message, message
from avm_vm.node.peers import Connection
from avm_vm.node.transfer import duct_to_wire
from avm_vm.runtime.failures import CalleeFailed
from avm_vm.runtime.runs import (
    Decision,
    FetchIn,
    MoveOut,
    NoAnswer,
    Prepare,
    RemoteCall,
    RemoteFailure,
    Request,
    Teleport,
)
from avm_vm.trace import CallFailure

Answer = Message | str  # the response, or why there is none
# Refusals of a call that the caller's program should see as what they are, not as an
# unreachable machine: the node is up, and trying again (or not joining) may well work.
_PASSED_ON = frozenset({"ObjLocked", "TxCannotJoin"})


def request_message(
    request: Request, request_id: int, payload: dict[str, Any] | None, here: str
) -> Message:
    """The message that asks ``request.machine`` for what a parked run waits on."""
    if type(request) is RemoteCall:
        joined: dict[str, object] = {}
        if request.tx is not None:
            joined = {"tx": request.tx, "coordinator": request.coordinator}
            if request.controller is not None:
                joined["controller"] = request.controller
        return message(
            "call",
            request_id=request_id,
            target=request.target,
            input=request.message,
            sender=request.sender,
            sender_machine=here,
            duct=duct_to_wire(request.duct, here),
            **joined,
        )
    if type(request) is Teleport:
        return message("teleport", request_id=request_id, activation=payload)
    if type(request) is MoveOut:
        return message(
            "move_object", request_id=request_id, object_id=request.object_id, object=payload
        )
    assert type(request) is FetchIn
    return message(
        "fetch_object", request_id=request_id, object_id=request.object_id, to_machine=here
    )


def run_answer(request: Request, answer: Answer) -> object:
    """What the parked instruction gets: a value (a bool for a move or fetch), a
    `CallFailure` (the remote callee ran and failed: `call` answers nothing, as for a local
    callee), an `AvmError` (the instruction fails), or a `RemoteFailure` (a teleported
    activation failed). Every other failure keeps the reference's kind, MachineUnreachable
    (spec §11.5)."""
    if type(request) is Prepare:
        return _decision(request, answer)
    machine = request.machine
    if isinstance(answer, str):
        return NoAnswer(ErrorKind.MACHINE_UNREACHABLE, machine=f"{machine} ({answer})")
    ok, kind = answer["ok"], answer["type"]
    remote = AvmError(
        ErrorKind.MACHINE_UNREACHABLE,
        machine=f"{machine} — remote error: {answer['error_kind']}: {answer['error']}",
    )
    failure = answer.get("failure")  # the callee ran and failed (absent from older peers)
    if type(request) is RemoteCall and kind == "call_response":
        if ok:
            return answer["value"]
        if failure is None and answer["error_kind"] in _PASSED_ON:
            text = f"{answer['error']} (on node {machine})"
            return CalleeFailed(CallFailure(answer["error_kind"], text, None))
        return remote if failure is None else failure
    if type(request) is Teleport:
        if kind == "call_response":
            if ok:
                return answer["value"]
            return RemoteFailure(remote if failure is None else CalleeFailed(failure))
        if not ok:  # refused before it ran: the teleport itself fails
            return remote
    if type(request) in (MoveOut, FetchIn) and kind == "object_response":
        return ok
    return AvmError(ErrorKind.MACHINE_UNREACHABLE, machine=f"{machine} (unexpected {kind})")


def _decision(request: Prepare, answer: Answer) -> Decision:
    """The decision the votes came to (`vote_summary`), or an abort when there is none (the
    node restarted before the votes were in)."""
    if isinstance(answer, str):
        return Decision(False, f"no decision was reached ({answer})", asked=request.participants)
    nodes = frozenset(answer["participants"])
    if answer["ok"]:
        return Decision(True, writers=nodes)
    return Decision(False, answer["error"], asked=nodes | request.participants)


def vote_summary(tx: int, refusal: str | None, nodes: set[str]) -> Message:
    """The votes on ``tx`` summed up as one `vote`, the answer its parked commit resumes
    with: every node said yes (``nodes`` those that must apply their part), or not
    (``refusal`` says why; ``nodes`` are all that were asked)."""
    return message(
        "vote",
        request_id=0,
        tx=tx,
        ok=refusal is None,
        read_only=False,
        participants=sorted(nodes),
        error=refusal,
    )


def call_answer(
    request_id: int, value: object, failure: CallFailure | None = None, changed: bool | None = None
) -> Message:
    """An ok call_response; ``failure``: why a client's call answered nothing; ``changed``:
    whether a call that joined a transaction changed anything in it here."""
    answer = _call_response(request_id, value, None, None, failure)
    if changed is not None:
        answer["changed"] = changed
    return answer


def failed_answer(
    request_id: int, kind: str, text: str, failure: CallFailure | None = None
) -> Message:
    """A failed call_response; ``failure``: the callee ran and failed (the error is its own)."""
    return _call_response(request_id, None, kind, text, failure)


def _call_response(
    request_id: int,
    value: object,
    kind: str | None,
    text: str | None,
    failure: CallFailure | None,
) -> Message:
    fields = {} if failure is None else {"failure": failure}  # absent when there is none
    return message(
        "call_response",
        request_id=request_id,
        ok=kind is None,
        value=value,
        error_kind=kind,
        error=text,
        **fields,
    )


def object_answer(request_id: int, error: str | None, kind: str = "Failed") -> Message:
    """An object_response: ok (the object field then says nothing more) or an error."""
    ok = error is None
    return message(
        "object_response",
        request_id=request_id,
        ok=ok,
        object={} if ok else None,
        error_kind=None if ok else kind,
        error=error,
    )


@dataclass
class _Entry:
    machine: str
    on_answer: Callable[[Answer], None]
    timer: asyncio.TimerHandle
    started: float
    via: Connection | None = None  # the connection it was sent on (None: not sent yet)


class PendingMap:
    """Requests waiting for their answers, each with a timer.

    A request is tied to the connection it was sent on: when that connection ends (the peer
    left, or a newer connection replaced it) the answer can no longer come, so the request
    fails at once, whatever the peer's name is doing on other connections."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.entries: dict[int, _Entry] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def expect(self, request_id: int, machine: str, on_answer: Callable[[Answer], None]) -> None:
        """Register before sending, so no answer can come first (spec §11.5 step 2)."""
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self.timeout, self._expire, request_id)
        self.entries[request_id] = _Entry(machine, on_answer, timer, loop.time())

    def sent(self, request_id: int, conn: Connection) -> None:
        """The request went out on ``conn``."""
        entry = self.entries.get(request_id)
        if entry is not None:
            entry.via = conn

    def machine_of(self, request_id: int) -> str | None:
        entry = self.entries.get(request_id)
        return None if entry is None else entry.machine

    def resolve(self, request_id: int, answer: Answer) -> None:
        """End a request with its answer or the reason it has none; an unknown id (a late
        answer after a timeout) is ignored."""
        entry = self.entries.pop(request_id, None)
        if entry is not None:
            entry.timer.cancel()
            entry.on_answer(answer)

    def fail(self, machine: str | None, reason: str) -> None:
        """End every request to ``machine`` (None: to anyone) with ``reason``."""
        for request_id, entry in list(self.entries.items()):
            if machine is None or entry.machine == machine:
                self.resolve(request_id, reason)

    def fail_via(self, conn: Connection, reason: str) -> None:
        """End every request sent on ``conn``, which has ended."""
        for request_id, entry in list(self.entries.items()):
            if entry.via is conn:
                self.resolve(request_id, reason)

    def _expire(self, request_id: int) -> None:
        entry = self.entries.get(request_id)
        if entry is None:
            return
        loop = asyncio.get_running_loop()
        via = entry.via
        if via is None or via.ended.is_set():
            self.resolve(request_id, f"not connected within {self.timeout:g} s")
        elif via.alive():  # still working: look again a little later
            entry.timer = loop.call_later(min(self.timeout, 0.5), self._expire, request_id)
        else:
            waited = loop.time() - entry.started
            self.resolve(request_id, f"timed out after {waited:.1f} s, the machine is silent")
