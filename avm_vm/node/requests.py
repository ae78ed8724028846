"""Requests to peers: the message a parked run's request becomes, the pending map that waits
for the answers, and what each answer (or its absence) means to the parked instruction.

Every request has its own id and a deadline; an entry ends exactly once, by its answer, its
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
SWEEP_EVERY = 0.1  # seconds between looks for requests past their timeout, at most
RECHECK_EVERY = 0.5  # past its timeout, a request to a peer that still answers pings waits on


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
    if ok and kind == "call_response" and type(request) in (RemoteCall, Teleport):
        return answer["value"]
    failure = answer.get("failure")  # the callee ran and failed (absent from older peers)
    if type(request) is RemoteCall and kind == "call_response":
        if failure is None and answer["error_kind"] in _PASSED_ON:
            text = f"{answer['error']} (on node {machine})"
            return CalleeFailed(CallFailure(answer["error_kind"], text, None))
        return _remote_error(machine, answer) if failure is None else failure
    if type(request) is Teleport:
        if kind == "call_response":
            failed = _remote_error(machine, answer) if failure is None else CalleeFailed(failure)
            return RemoteFailure(failed)
        if not ok:  # refused before it ran: the teleport itself fails
            return _remote_error(machine, answer)
    if type(request) in (MoveOut, FetchIn) and kind == "object_response":
        return ok
    return AvmError(ErrorKind.MACHINE_UNREACHABLE, machine=f"{machine} (unexpected {kind})")


def _remote_error(machine: str, answer: Message) -> AvmError:
    """The peer answered with an error of its own (not its callee's failure)."""
    text = f"{machine} — remote error: {answer['error_kind']}: {answer['error']}"
    return AvmError(ErrorKind.MACHINE_UNREACHABLE, machine=text)


def _decision(request: Prepare, answer: Answer) -> Decision:
    """The decision the votes came to (their summary, `vote`), or an abort when there is none (the
    node restarted before the votes were in)."""
    if isinstance(answer, str):
        return Decision(False, f"no decision was reached ({answer})", asked=request.participants)
    nodes = frozenset(answer["participants"])
    if answer["ok"]:
        return Decision(True, writers=nodes)
    return Decision(False, answer["error"], asked=nodes | request.participants)


def vote(tx: int, refusal: str | None, nodes: set[str], read_only: bool = False) -> Message:
    """A `vote` on ``tx`` (its request id filled in by whoever sends it): yes, or no and
    why (``refusal``). A participant's names the further nodes its part reached; the
    coordinator sums the votes up in one, the answer its parked commit resumes with, naming
    the nodes that must apply their part (yes) or all that were asked (no)."""
    return message(
        "vote",
        request_id=0,
        tx=tx,
        ok=refusal is None,
        read_only=read_only,
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
    # Built as a literal (one per call answered): the field names are `message`'s to check.
    answer = {
        "type": "call_response",
        "request_id": request_id,
        "ok": kind is None,
        "value": value,
        "error_kind": kind,
        "error": text,
    }
    if failure is not None:  # absent when there is none
        answer["failure"] = failure
    return answer


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
    started: float
    due: float  # when the sweep looks at it next (loop time)
    via: Connection | None = None  # the connection it was sent on (None: not sent yet)


class PendingMap:
    """Requests waiting for their answers, each with a deadline.

    A request is tied to the connection it was sent on: when that connection ends (the peer
    left, or a newer connection replaced it) the answer can no longer come, so the request
    fails at once, whatever the peer's name is doing on other connections.

    One sweep looks for requests past their deadline, a tenth of the timeout (at most
    `SWEEP_EVERY`) apart while any request waits, rather than a timer per request: a
    request ends at most that much after its timeout. Requests are kept in the order they
    were made, so a sweep stops at the first one whose timeout is still to come."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.entries: dict[int, _Entry] = {}
        self._sweep_every = min(timeout / 10, SWEEP_EVERY)
        self._sweeper: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self.entries)

    def expect(self, request_id: int, machine: str, on_answer: Callable[[Answer], None]) -> None:
        """Register before sending, so no answer can come first (spec §11.5 step 2)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        self.entries[request_id] = _Entry(machine, on_answer, now, now + self.timeout)
        if self._sweeper is None:
            self._sweeper = loop.call_later(self._sweep_every, self._sweep)

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

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        due = []
        for request_id, entry in self.entries.items():
            if entry.started + self.timeout > now:
                break  # this one and every later one are within their timeout
            if entry.due <= now:
                due.append(request_id)
        for request_id in due:  # answering may make new requests: not while iterating
            self._expire(request_id, now)
        self._sweeper = loop.call_later(self._sweep_every, self._sweep) if self.entries else None

    def _expire(self, request_id: int, now: float) -> None:
        entry = self.entries.get(request_id)
        if entry is None:
            return
        via = entry.via
        if via is None or via.ended.is_set():
            self.resolve(request_id, f"not connected within {self.timeout:g} s")
        elif via.alive():  # still working: look again a little later
            entry.due = now + min(self.timeout, RECHECK_EVERY)
        else:
            waited = now - entry.started
            self.resolve(request_id, f"timed out after {waited:.1f} s, the machine is silent")
