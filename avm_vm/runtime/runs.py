"""Resumable top-level runs: what a run keeps while it waits on another machine, and outcomes.

A node's runtime never blocks on the network. When an instruction needs another machine (a
remote call, a teleport, a move or a fetch) its handler records a `Request` and answers
`PARK`; the loop then packs the run's state into its `Run` and `Runtime.start` or
`Runtime.resume` returns `Parked`. The node sends the request, and later resumes the run
with the answer or an `AvmError`. Each run keeps its own undo entries, so any parked run whose
answer is in can resume (docs/semantics.md, "Nodes: parked runs").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from avm_vm.errors import AvmError
from avm_vm.trace import CallFailure, DuctLink
from avm_vm.values import Value

if TYPE_CHECKING:
    from avm_vm.runtime.core import Activation, RunError
    from avm_vm.runtime.transactions import Transaction
    from avm_vm.vm.interpreter import Fuel


class RemoteCall(NamedTuple):
    """`call` of an object on ``machine`` (spec §7.5); the answer is the callee's value."""

    machine: str
    target: int
    message: Value
    sender: int
    duct: DuctLink  # the call's own link: what the ObjectCalled entry reports
    strict: bool = False  # a `call!`: the answer is the value itself, a failure fails it
    # Made inside a transaction (profile ours): the callee joins it (docs/transactions.md).
    tx: int | None = None
    coordinator: str | None = None  # the node that began the transaction
    controller: str | None = None  # the transaction's executing controller


class Teleport(NamedTuple):
    """The top activation moves to ``machine``; the answer is the activation's final value."""

    machine: str
    activation: Activation


class MoveOut(NamedTuple):
    """`moveObject` to another node: ``machine`` installs the object; the answer is a bool."""

    machine: str
    object_id: int


class FetchIn(NamedTuple):
    """`fetch` of an object that lives on ``machine``; the answer is a bool."""

    machine: str
    object_id: int


class Prepare(NamedTuple):
    """A commit whose transaction has parts on other nodes: the node asks ``participants``
    to prepare theirs; the answer is the decision (docs/transactions.md)."""

    tx: int
    participants: frozenset[str]


Request = RemoteCall | Teleport | MoveOut | FetchIn | Prepare


class Decision(NamedTuple):
    """The answer to a `Prepare`: commit (every participant voted yes; ``writers`` are
    those whose part changes something, which must apply it), or abort and why."""

    commit: bool
    reason: str | None = None
    writers: frozenset[str] = frozenset()
    asked: frozenset[str] = frozenset()  # every node asked to prepare (an abort tells all)


class NoAnswer(AvmError):
    """A request got no answer (timeout, lost connection): what the peer did is unknown."""


class RemoteFailure(NamedTuple):
    """A teleported activation failed on the other machine: the activation fails here.

    (A plain `AvmError` given to `Runtime.resume` fails the parked instruction itself.)
    """

    error: AvmError


class Run:
    """One top-level run: its activations, fuel, and what it set aside while parked."""

    __slots__ = (
        "changed",
        "dst",
        "entries",
        "failure",
        "fuel",
        "joined_at",
        "journal_active",
        "number",
        "request",
        "stack",
        "tx",
        "undoable",
        "world",
    )

    @property
    def joined(self) -> bool:
        return self.joined_at is not None

    def __init__(self, number: int, stack: list[Activation], fuel: Fuel, undoable: bool) -> None:
        self.number = number  # names it (trace entries, a node's resume events)
        self.stack = stack
        self.fuel = fuel
        # Its own undo entries: the journal records into them while it executes, so runs
        # unwind independently whatever order they resume in.
        self.entries: list[tuple] = []
        self.undoable = undoable  # a served call: its base activation is undone on failure
        # A served call that joined a transaction runs inside it and leaves it open when it
        # ends (`Runtime._end`): where the transaction's changes stood when it began, and,
        # once it ended, whether it changed anything there (the caller counts only calls
        # that did).
        self.joined_at: tuple[int, int] | None = None
        self.changed = False
        self.request: Request | None = None  # what the run waits for while parked
        self.dst = 0  # the register of the parked instruction's answer
        self.tx: Transaction | None = None  # set aside while parked
        self.world: list | None = None
        self.journal_active = False
        # Why the base activation's last call failed (None: it did not): a node's answer to
        # `avm call` carries it when the call answered nothing.
        self.failure: CallFailure | None = None


class Done(NamedTuple):
    run: Run
    value: Value


class Failed(NamedTuple):
    run: Run
    failure: RunError


class Parked(NamedTuple):
    run: Run
    request: Request


class Preempted(NamedTuple):
    """The run's fuel slice ran out (`Runtime.slice`); it is still the executing run, and
    `Runtime.proceed` goes on with it. Nothing else may run in between."""

    run: Run


Outcome = Done | Failed | Parked | Preempted
