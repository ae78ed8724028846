"""The node's VM side: the runtime and every operation on it, run in the one worker thread.

The event loop (`avm_vm.node.node`) never touches the runtime; it hands the engine one
event at a time (`apply`), and each answers a `Step`: the run's outcome (or why it could
not start), the request payload a parked run needs shipped, and the create/destroy
notifications the step's committed changes call for (spec §11.3; a create inside a
transaction is announced when it commits, an aborted one never).

Every input that changes the engine is an event (a JSON object, `avm_vm.node.eventlog`),
and `apply` is the one function that applies it, live and in replay, so the engine's state
is a pure function of the events applied (docs/durability.md). Each event carries the
wall-clock time it was logged at, which is what `now()` answers while it is applied.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avm_vm.diagnostics import DiagnosticError
from avm_vm.errors import AvmError, ErrorKind
from avm_vm.format.bytecode import content_hash, decode
from avm_vm.format.opcodes import Op
from avm_vm.format.program import Program
from avm_vm.node.codec import value_from_json, value_to_json
from avm_vm.node.directory import Directory
from avm_vm.node.eventlog import Event, encode_event
from avm_vm.node.intents import IntentPool
from avm_vm.node.messages import Message, decode_message, message
from avm_vm.node.requests import run_answer, vote
from avm_vm.node.transfer import (
    TransferError,
    duct_from_wire,
    export_activation,
    export_object,
    import_activation,
    install_object,
)
from avm_vm.node.wire import dumps_json, value_text
from avm_vm.runtime import entry
from avm_vm.runtime.core import Runtime, RuntimeOptions
from avm_vm.runtime.handlers.events import EntropyPool
from avm_vm.runtime.registry import RegistryError
from avm_vm.runtime.runs import Done, Failed, MoveOut, Outcome, Parked, Preempted, Teleport
from avm_vm.runtime.transactions import Transaction
from avm_vm.trace import (
    BehaviorUpgraded,
    TraceEntry,
    TransactionAborted,
    TransactionCommitted,
    entry_json,
)
from avm_vm.values import NOTHING, ObjectRef, Value, kind_of
from avm_vm.vm.interpreter import Interpreter

_sha256 = hashlib.sha256  # bound once: `Step.digest` runs per logged event
STATUS_OBJECTS = 1000  # objects listed by `avm status` (the count is always exact)


@dataclass(slots=True)
class Step:
    """What one job on the VM produced. A durable node holds each until its log write
    (`Node._commit`): it is one object, and shares its empty lists (tuples)."""

    outcome: Outcome | None = None  # None when nothing ran
    error: str | None = None  # why nothing ran (a run could not start, a transfer refused)
    error_kind: str = "Failed"
    payload: dict[str, Any] | None = None  # a parked run's activation or object to ship
    notices: Sequence[Message] = ()
    reply: Message | None = None  # the answer to a peer's prepare (a vote)
    # Transactions across nodes decided here: (id, committed, the nodes to tell).
    decisions: Sequence[tuple[int, bool, frozenset[str]]] = ()
    # The wire text of a finished run's value (`wire.value_text`), once `digest` made it:
    # the answer carries the same text, so it is not printed twice.
    text: str | None = None

    @property
    def preempted(self) -> bool:
        """The run's slice ran out: `Engine.proceed` goes on with it, nothing else runs."""
        return type(self.outcome) is Preempted

    def digest(self) -> bytes:
        """8 bytes summing up what the step let out, so replay can tell the first event
        whose effects differ (docs/durability.md)."""
        outcome = self.outcome
        if type(outcome) is Done and not self.notices:  # most steps: the text below, directly
            text = self.text = value_text(outcome.value)
            if text is not None:
                return _sha256(f'{{"n":[],"o":["done",{text}]}}'.encode()).digest()[:8]
        if outcome is None:
            shown: object = ["error", self.error_kind, self.error]
        elif type(outcome) is Done:
            shown = ["done", value_to_json(outcome.value)]
        elif type(outcome) is Failed:
            shown = ["failed", *failure_of(outcome)]
        else:
            shown = ["parked", type(outcome.request).__name__, self.payload]
        notices = [[n["type"], n["object_id"], n.get("machine_id")] for n in self.notices]
        if type(outcome) is Done:
            # The same bytes as `encode_event` gives, without sorting: a value's JSON has
            # one key per object, and "n" sorts before "o".
            text = f'{{"n":{dumps_json(notices)},"o":{dumps_json(shown)}}}'
            return hashlib.sha256(text.encode()).digest()[:8]
        return hashlib.sha256(encode_event({"o": shown, "n": notices})).digest()[:8]


@dataclass
class Branch:
    """This node's part of a transaction begun on another node (docs/transactions.md)."""

    tx: Transaction
    since: int  # when a call last joined it or it was prepared (event time, ms)
    prepared: bool = False  # it voted yes: its objects are locked until the decision


class LoadError(Exception):
    """A code load that cannot apply (bad tape, a conflict); nothing was changed."""


@dataclass
class Loaded:
    """A program a load event brought in: its .tape bytes and its interpreter."""

    tape: bytes
    interpreter: Interpreter


class Engine:
    def __init__(
        self, options: RuntimeOptions, directory: Directory, trace_out: Path | None = None
    ) -> None:
        self.runtime = Runtime((), options, network=directory)
        self.runtime.store.track_changes()
        self.runtime.entropy = EntropyPool()
        self.entry = self.runtime.load(entry.ENTRY)
        self.directory = directory
        self.here = options.machine
        self.trace_out = trace_out
        # Called with each batch of trace entries as it is flushed (`avm node --http`'s
        # /events); on the thread that applied the event, so they must not block.
        self.observers: list[Callable[[list[TraceEntry]], None]] = []
        self.loaded: list[Loaded] = []  # in load order; snapshots refer to them by index
        self.applied = 0  # events applied: the index of the next one
        # Transactions across nodes (docs/transactions.md): this node's parts of others'
        # transactions, and its own committed ones whose participants have not yet said
        # they applied them (answers to "what became of tx N?" come from here).
        self.branches: dict[int, Branch] = {}
        self.outcomes: dict[int, set[str]] = {}
        # Why this node may not vote yes for a part that changes something (it keeps no
        # log, and the user did not accept the risk); None: it may.
        self.volatile: str | None = None
        self.boots = 0  # start-ups (entropy events marked boot): request ids use it
        self.handlers: dict[str, Callable[[Event], Step]] = {
            "load": self._load,
            "entropy": self._entropy,
            "peer": self._peer,
            "client_call": self._client_call,
            "client_create": self._client_create,
            "call": self._serve_call,
            "prepare": self._prepare,
            "decide": self._decide,
            "acked": self._acked,
            "teleport": self._arrive,
            "resume": self._resume,
            "install": self._install,
            "forget": self._forget,
            "learn": self._learn,
            "unlearn": self._unlearn,
            "checkpoint": lambda event: Step(),
        }
        self.intents = IntentPool(self)  # intents waiting to be solved (docs/intents.md)
        self.handlers.update(self.intents.handlers())

    # ----------------------------------------------------------------- events

    def apply(self, event: Event) -> Step:
        """Apply one event: the only way the engine's state changes (live and replay)."""
        self.applied += 1
        self.runtime.event_time = event["t"]
        return self.handlers[event["k"]](event)

    def check_load(self, tape: bytes, upgrade: bool) -> Program:
        """The program a load event of ``tape`` would bring in; `LoadError` if it cannot
        apply, so a bad load is refused before it is logged."""
        try:
            program = decode(tape, "<loaded tape>")
        except DiagnosticError as error:
            raise LoadError(f"the program does not load: {error.render()}") from None
        if self.has_program(program):
            raise LoadError("this program is already loaded")
        registry = self.runtime.registry
        for behavior in program.behaviors:
            old = registry.behavior(behavior.name)
            if old is None:
                continue
            if not upgrade:
                raise LoadError(f"behavior already registered: {behavior.name}")
            fields = _fields(old.interpreter.program, behavior.name)
            if fields != behavior.fields:
                raise LoadError(
                    f"behavior {behavior.name} cannot be upgraded: its fields change from "
                    f"{list(fields)} to {list(behavior.fields)}, and objects keep their state"
                )
        return program

    def check_field_types(self, program: Program) -> None:
        """`LoadError` if an upgrade to ``program`` changes a field's type. Checked before
        an upgrade is logged, never when a logged one is applied: a log written before this
        rule replays as it ran."""
        registry = self.runtime.registry
        for behavior in program.behaviors:
            old = registry.behavior(behavior.name)
            if old is None:
                continue
            retyped = _retyped_field(old.interpreter.program, program, behavior.name)
            if retyped:
                raise LoadError(f"behavior {behavior.name} cannot be upgraded: {retyped}")

    def has_program(self, program: Program) -> bool:
        digest = content_hash(program)
        return any(content_hash(item.interpreter.program) == digest for item in self.loaded)

    def _load(self, event: Event) -> Step:
        tape = base64.b64decode(event["tape"])
        program = self.check_load(tape, event["upgrade"])
        rt = self.runtime
        before = {b.name: rt.registry.code_hash(b.name) for b in program.behaviors}
        try:
            interpreter = rt.load(program, replace=event["upgrade"])
        except RegistryError as error:  # check_load refuses these first
            raise LoadError(str(error)) from None
        self.loaded.append(Loaded(tape, interpreter))
        store = rt.store
        for name, old in before.items():
            new = rt.registry.code_hash(name)
            if old is None or new is None or old == new:
                continue
            # Objects run their behavior's current code, so their record shows its hash.
            for object_id, record in list(store.objects.items()):
                if record.behavior == name:
                    store.objects[object_id] = record._replace(code_hash=new)
            rt.emit_at(BehaviorUpgraded(name, old.hex(), new.hex()), None)
        if not rt.parked:
            self._flush_trace()
        return Step()

    def _entropy(self, event: Event) -> Step:
        assert self.runtime.entropy is not None
        self.runtime.entropy.mix(bytes.fromhex(event["bytes"]))
        self.boots += event["boot"]
        return Step()

    def _peer(self, event: Event) -> Step:
        self.directory.add_peer(event["machine"], event["prefix"], event.get("version"))
        return Step()

    # ----------------------------------------------------------------- runs

    def _client_call(self, event: Event) -> Step:
        """``return call(target, value)`` as a top-level program."""
        args = (ObjectRef(event["target"]), value_from_json(event["input"]))
        return self._step(self.runtime.start(self.entry, entry.CALL, args))

    def _client_create(self, event: Event) -> Step:
        """``return create behavior`` as a top-level program; the behavior must be loaded."""
        behavior, controller = event["behavior"], event["controller"]
        if self.runtime.registry.behavior(behavior) is None:
            error = AvmError(ErrorKind.BEHAVIOR_NOT_FOUND, name=behavior)
            return Step(error=error.message, error_kind=error.kind.qualified_name)
        args = (behavior, NOTHING if controller is None else controller)
        return self._step(self.runtime.start(self.entry, entry.CREATE, args))

    def _serve_call(self, event: Event) -> Step:
        """A peer's call: the callee runs as the base of a new run (spec §11.2)."""
        rt = self.runtime
        duct = [tuple(link) for link in event["duct"]]
        call_id = duct[-1][2] if duct else rt.next_call_id()
        value = value_from_json(event["input"])
        try:
            tx = self._joined(event)
            outcome = rt.start_call(
                event["target"], value, event["sender"], call_id, duct_from_wire(duct[:-1]), tx
            )
        except AvmError as error:
            return Step(error=error.message, error_kind=error.kind.qualified_name)
        return self._step(outcome)

    # ----------------------------------------------------------------- transactions

    def _joined(self, event: Event) -> Transaction | None:
        """The transaction a served call joins (None: it came outside one): this node's
        part of it, made on its first call; on the node that began it (A → B → A), the
        transaction itself, set aside in the run that waits on the call."""
        tx_id = event.get("tx")
        if tx_id is None:
            return None
        rt = self.runtime
        coordinator = event["coordinator"]
        if not rt.ours:
            raise AvmError(
                ErrorKind.TX_CANNOT_JOIN,
                detail=f"node {self.here} runs profile r: calls into it stay outside transactions",
            )
        if coordinator == self.here:
            for run in rt.parked.values():
                if run.tx is not None and run.tx.id == tx_id:
                    return run.tx
            raise AvmError(ErrorKind.TX_NOT_FOUND, tx=tx_id, reason="it is no longer open here")
        branch = self.branches.get(tx_id)
        if branch is None:
            controller = event.get("controller")
            branch = Branch(Transaction(tx_id, controller, None, coordinator), event["t"])
            self.branches[tx_id] = branch
        elif branch.prepared:
            raise AvmError(ErrorKind.TX_NOT_FOUND, tx=tx_id, reason="it is committing already")
        branch.since = event["t"]
        return branch.tx

    def _prepare(self, event: Event) -> Step:
        """The coordinator asks this node to prepare its part: check it can commit, lock
        its objects, and vote. The vote leaves once the event is durable."""
        tx_id = event["tx"]
        branch = self.branches.get(tx_id)
        if branch is None:  # never joined, or rolled back already (e.g. after a restart)
            return Step(reply=self.vote(tx_id, "this node holds no part of it"))
        tx = branch.tx
        if branch.prepared:
            return Step(reply=self.vote(tx_id, None, tx))  # a repeated prepare: the same vote
        rt = self.runtime
        if any(run.tx is tx for run in rt.parked.values()):
            reason: str | None = "a call inside it is still running here"
        else:
            reason = tx.stale(rt.store)
            if reason == "":
                reason = "an object it read was destroyed"
        if reason is None and not tx.changes_nothing() and self.volatile is not None:
            reason = self.volatile
        if reason is not None:
            self._discard(tx_id)
            return Step(reply=self.vote(tx_id, reason))
        if tx.changes_nothing():  # read-only: valid now, nothing to decide here
            del self.branches[tx_id]
            return Step(reply=self.vote(tx_id, None, tx, read_only=True))
        rt.store.lock(tx.touched(), tx_id)
        branch.prepared, branch.since = True, event["t"]
        return Step(reply=self.vote(tx_id, None, tx))

    @property
    def unsettled(self) -> bool:
        """Runs are parked or transactions across nodes are open: the state is not data
        (no snapshot, checkpoint or state hash now)."""
        return bool(self.runtime.parked or self.branches or self.outcomes)

    def coordinator_of(self, tx_id: int) -> str | None:
        """The node that began a transaction this node holds a part of (None: no part)."""
        branch = self.branches.get(tx_id)
        return None if branch is None else branch.tx.coordinator

    def vote(
        self,
        tx_id: int,
        refusal: str | None,
        tx: Transaction | None = None,
        read_only: bool = False,
    ) -> Message:
        """This node's vote on its part of ``tx_id``: yes, or no and why (``refusal``)."""
        called = set() if tx is None else tx.participants
        why = None if refusal is None else f"node {self.here}: {refusal}"
        return vote(tx_id, why, called, read_only)

    def _decide(self, event: Event) -> Step:
        """The coordinator's decision on a transaction this node has a part of: apply it
        or roll it back, and unlock. A decision on a part it does not hold changes nothing
        (it was applied already, or rolled back)."""
        branch = self.branches.get(event["tx"])
        if branch is None:
            return Step()
        if event["commit"] and not branch.prepared:
            return Step()  # no coordinator commits before every part voted: ignored
        self._discard(event["tx"], event["commit"])
        return Step(notices=self._notices())

    def _discard(self, tx_id: int, commit: bool = False) -> None:
        """End this node's part of ``tx_id``: applied (``commit``) or rolled back."""
        branch = self.branches.pop(tx_id)
        tx, rt = branch.tx, self.runtime
        rt.store.unlock(tx.touched(), tx_id)
        if commit:
            tx.apply(rt.store, self.here)
            rt.emit_at(TransactionCommitted(tx_id), None)
        else:
            rt.journal.restore_world(tx.world)
            rt.emit_at(TransactionAborted(tx_id), None)
        if not rt.parked:
            self._flush_trace()

    def _acked(self, event: Event) -> Step:
        """A participant applied a committed transaction: it will not ask about it again."""
        waiting = self.outcomes.get(event["tx"])
        if waiting is not None:
            waiting.discard(event["machine"])
            if not waiting:
                del self.outcomes[event["tx"]]
        return Step()

    def outcome(self, tx_id: int) -> str:
        """What became of a transaction begun here, as a participant asks: committed, still
        open, or else aborted (a transaction this node has no word of never committed)."""
        if tx_id in self.outcomes:
            return "commit"
        rt = self.runtime
        if any(run.tx is not None and run.tx.id == tx_id for run in rt.parked.values()):
            return "pending"
        return "abort"

    def idle_branches(self, before: int) -> list[tuple[int, str]]:
        """Parts of others' transactions untouched since ``before`` (ms; a call joined, or
        it was prepared): (id, coordinator) for the node to ask about."""
        return [
            (tx_id, branch.tx.coordinator or "")
            for tx_id, branch in self.branches.items()
            if branch.since < before
        ]

    def _arrive(self, event: Event) -> Step:
        """A teleported activation continues here, unless this node lacks its code."""
        try:
            act, dst, came_from = import_activation(self.runtime, event["activation"])
        except TransferError as error:
            return Step(error=str(error), error_kind="TransferRefused")
        return self._step(self.runtime.arrive(act, dst, came_from))

    def _resume(self, event: Event) -> Step:
        """The answer to a parked run's request (or why there is none) resumes it: the run
        the event names, or the most recently parked one (logs from before resume events
        named their run, when runs resumed last parked, first resumed)."""
        parked = self.runtime.parked
        number = event.get("run")
        if number is None:
            number = next(reversed(parked), None)
        run = parked.get(number)
        if run is None:
            raise LookupError(f"no run {number} is parked to resume")
        request = run.request
        assert request is not None
        answer = event["answer"]
        got = answer["fail"] if "fail" in answer else decode_message(answer)
        if type(request) is MoveOut and not isinstance(got, str) and got["ok"]:
            self.directory.learn(request.object_id, request.machine)  # before it resumes
        changed = isinstance(got, str) or got.get("changed", True)
        return self._step(self.runtime.resume(run, run_answer(request, got), changed))  # type: ignore[arg-type]

    def proceed(self, sliced: bool = False) -> Step:
        """Go on with the run a step left preempted: in slices again when ``sliced``."""
        return self._step(self.runtime.proceed(sliced))

    def _step(self, outcome: Outcome) -> Step:
        step = Step(outcome)
        if type(outcome) is Preempted:
            return step  # the run is not over: nothing to announce yet
        rt = self.runtime
        if type(outcome) is Parked:
            request = outcome.request
            if type(request) is Teleport:
                step.payload = export_activation(request.activation, outcome.run.dst, self.here)
            elif type(request) is MoveOut:
                step.payload = export_object(rt, request.object_id)
        else:  # a transaction the finished run left open must not leak into the next run
            rt.abort_open_tx()
        if rt.decided:
            step.decisions, rt.decided = rt.decided, []
            for tx_id, committed, machines in step.decisions:
                if committed and machines:
                    self.outcomes[tx_id] = set(machines)
        step.notices = self._notices()
        if not rt.parked:
            self._flush_trace()
        return step

    # ----------------------------------------------------------------- objects

    def _install(self, event: Event) -> Step:
        """A peer moves an object here."""
        try:
            install_object(self.runtime, event["object_id"], event["object"])
        except TransferError as error:
            return Step(error=str(error), error_kind="TransferRefused")
        return Step(notices=self._notices())

    def export(self, object_id: int) -> dict[str, Any] | None:
        """The object as shipped to a peer, or None; reads only (no event)."""
        return export_object(self.runtime, object_id)

    def peek(self, object_id: int) -> dict[str, Any] | None:
        """`avm peek`: the object's record and state, read-only (no event)."""
        shipped = export_object(self.runtime, object_id)
        if shipped is not None:
            record = self.runtime.store.objects[object_id]
            shipped.update(id=object_id, machine=record.machine)
        return shipped

    def _forget(self, event: Event) -> Step:
        """The object now lives on ``machine``: drop it here, and say where it went."""
        self.directory.learn(event["object_id"], event["machine"])
        self.runtime.store.forget(event["object_id"])
        return Step(notices=self._notices())

    def _learn(self, event: Event) -> Step:
        self.directory.learn(event["object_id"], event["machine"])
        return Step()

    def _unlearn(self, event: Event) -> Step:
        self.directory.forget(event["object_id"], event["machine"])
        return Step()

    def _notices(self) -> Sequence[Message]:
        """create_notify for objects that appeared here, and for objects that left, where
        they went; destroy_notify for objects destroyed here."""
        changed = self.runtime.store.drain_changes()
        if not changed:  # most runs create, move and destroy nothing
            return ()
        objects = self.runtime.store.objects
        out = []
        for object_id in sorted(changed):
            if object_id in objects:
                self.directory.objects.pop(object_id, None)
                out.append(message("create_notify", object_id=object_id, machine_id=self.here))
            else:
                moved_to = self.directory.objects.get(object_id)
                if moved_to is None:
                    out.append(message("destroy_notify", object_id=object_id))
                else:
                    out.append(message("create_notify", object_id=object_id, machine_id=moved_to))
        return out

    # ----------------------------------------------------------------- status and trace

    def status(self) -> dict[str, Any]:
        store = self.runtime.store
        ids = store.ids()
        return {
            "object_count": len(ids),
            "objects": [
                [i, store.objects[i].behavior, store.objects[i].machine]
                for i in ids[:STATUS_OBJECTS]
            ],
            "directory": len(self.directory.objects),
            "parked_runs": len(self.runtime.parked),
            "transactions": {
                "parts": len(self.branches),
                "prepared": sum(branch.prepared for branch in self.branches.values()),
                "locked_objects": len(self.runtime.store.locks),
                "unacknowledged": len(self.outcomes),
            },
            "runs": self.runtime.runs,
            "intents": self.intents.status(),
        }

    def _flush_trace(self) -> None:
        """Append the trace to ``trace_out`` and forget it; only between runs, since a
        parked run's undo marks point into the entries."""
        trace = self.runtime.trace
        if not trace.entries or (self.trace_out is None and not self.observers):
            return
        if self.trace_out is not None:
            with self.trace_out.open("a", encoding="utf-8") as out:
                for item in trace.entries:
                    out.write(entry_json(item) + "\n")
        for observer in self.observers:
            observer(trace.entries)
        trace.entries.clear()


def failure_of(outcome: Failed) -> tuple[str, str]:
    """The error kind and text a failed run answers with."""
    error = outcome.failure.error
    return error.kind.qualified_name, error.message


def _fields(program: Program, behavior: str) -> tuple[str, ...]:
    return next(b.fields for b in program.behaviors if b.name == behavior)


def _field_defaults(program: Program, behavior: str) -> tuple[Value, ...] | None:
    """The field defaults a behavior's GETFIELD / SETFIELD carry (None if it uses no field)."""
    function = next(b.function for b in program.behaviors if b.name == behavior)
    for instr in program.functions[function].code:
        if instr[0] is Op.GETFIELD or instr[0] is Op.SETFIELD:
            return program.constants[instr[-1]]  # type: ignore[return-value]
    return None


def _retyped_field(old: Program, new: Program, behavior: str) -> str | None:
    """Why an upgrade changes a field's type (the kind of its default value), or None:
    objects keep values of the old kind, which the new code would misread."""
    before, after = _field_defaults(old, behavior), _field_defaults(new, behavior)
    if before is None or after is None:
        return None
    for name, was, now in zip(_fields(new, behavior), before, after, strict=False):
        if kind_of(was) is not kind_of(now):
            return (
                f"field {name} changes type from {kind_of(was).name.lower()} to "
                f"{kind_of(now).name.lower()}, and objects keep their state"
            )
    return None
