"""Trace events (spec §10.4): one NamedTuple per kind, each with its one-line text."""

from __future__ import annotations

from typing import NamedTuple

from avm_vm.values import Value


def elide(value: Value) -> str:
    """`value_text.elide`, loaded when a text is asked for: a run that shows no trace
    need not pay for loading it."""
    from avm_vm import value_text

    return value_text.elide(value)


class ObjectCreated(NamedTuple):
    id: int
    behavior_name: str

    def text(self) -> str:
        return f"created obj:{self.id} (behavior: {self.behavior_name})"


class ObjectDestroyed(NamedTuple):
    id: int

    def text(self) -> str:
        return f"destroyed obj:{self.id}"


class CallFailure(NamedTuple):
    """Why a call failed: the error's kind (``Failed``, ``TypeMismatch``...), its message and
    where it was raised (``bank.avm:9:28``; None when no source position is known)."""

    kind: str
    message: str
    location: str | None = None

    def text(self) -> str:
        where = "" if self.location is None else f" ({self.location})"
        return f"{self.kind}: {self.message}{where}"


class ObjectCalled(NamedTuple):
    id: int
    input: Value
    output: Value | None  # None: the callee failed
    failure: CallFailure | None = None  # why, when it failed and the reason is known

    def text(self) -> str:
        if self.output is not None:
            arrow = f" -> {elide(self.output)}"
        elif self.failure is not None:
            arrow = f" -> failed: {self.failure.text()}"
        else:
            arrow = ""
        return f"called obj:{self.id} with {elide(self.input)}{arrow}"


class LogRecorded(NamedTuple):
    """A `log(value)` of the running behavior: changes nothing, only shows ``value``."""

    value: Value

    def text(self) -> str:
        return f"log: {elide(self.value)}"


class MessageReceived(NamedTuple):
    id: int
    input: Value

    def text(self) -> str:
        return f"obj:{self.id} received {elide(self.input)}"


class ObjectMoved(NamedTuple):
    id: int
    from_: str
    to: str

    def text(self) -> str:
        return f"moved obj:{self.id} from machine:{self.from_} to machine:{self.to}"


class ExecutionMoved(NamedTuple):
    from_: str
    to: str

    def text(self) -> str:
        return f"execution moved from machine:{self.from_} to machine:{self.to}"


class ObjectFetched(NamedTuple):
    id: int
    machine: str

    def text(self) -> str:
        return f"fetched obj:{self.id} to machine:{self.machine}"


class ObjectTransferred(NamedTuple):
    id: int
    from_: str  # "none" when the object had no controller
    to: str

    def text(self) -> str:
        return f"transferred obj:{self.id} from ctrl:{self.from_} to ctrl:{self.to}"


class ObjectFrozen(NamedTuple):
    id: int
    controller: str

    def text(self) -> str:
        return f"froze obj:{self.id} via ctrl:{self.controller}"


class FunctionUpdated(NamedTuple):
    name: str

    def text(self) -> str:
        return f"updated function {self.name}"


class BehaviorUpgraded(NamedTuple):
    """A code load replaced a behavior's code (`avm load`); hashes in hex. A node's event,
    outside spec §10.4's catalogue (`Event`): no instruction emits it."""

    behavior: str
    old_hash: str
    new_hash: str

    def text(self) -> str:
        return f"upgraded behavior {self.behavior}: {self.old_hash[:12]} -> {self.new_hash[:12]}"


class TransactionStarted(NamedTuple):
    tx: int

    def text(self) -> str:
        return f"tx started: tx:{self.tx}"


class TransactionCommitted(NamedTuple):
    tx: int

    def text(self) -> str:
        return f"tx committed: tx:{self.tx}"


class TransactionAborted(NamedTuple):
    tx: int

    def text(self) -> str:
        return f"tx aborted: tx:{self.tx}"


class SearchEnded(NamedTuple):
    """A transaction's search is over (docs/semantics.md, "Nondeterminism"): ``outcome`` is
    ``solved`` (it commits with ``value``, the values its choice points took), ``collected``
    (`solutions` answered ``found`` answers), ``exhausted`` or ``limit``; ``tried`` counts
    the runs of its body."""

    tx: int
    outcome: str
    tried: int
    found: int
    value: Value | None

    def text(self) -> str:
        chose = "" if self.value is None else f", choices {elide(self.value)}"
        return (
            f"search of tx:{self.tx} {self.outcome}: {self.tried} combinations tried, "
            f"{self.found} solutions{chose}"
        )


class StateUpdated(NamedTuple):
    """``state`` is the new state itself (values are immutable: keeping it copies nothing);
    the text shows it elided, the JSON whole."""

    id: int
    state: Value

    def text(self) -> str:
        return f"state updated: obj:{self.id} = {elide(self.state)}"


Event = (
    ObjectCreated
    | ObjectDestroyed
    | ObjectCalled
    | MessageReceived
    | ObjectMoved
    | ExecutionMoved
    | ObjectFetched
    | ObjectTransferred
    | ObjectFrozen
    | FunctionUpdated
    | TransactionStarted
    | TransactionCommitted
    | TransactionAborted
    | SearchEnded
    | StateUpdated
    | LogRecorded
)

# Fields that hold values (JSON-encoded per spec §2.6); the others are ids or names.
VALUE_FIELDS = frozenset({"input", "output", "value", "state"})
