"""The node's VM side: the runtime and every operation on it, run in the one worker thread.

The event loop (`avm_vm.node.node`) never touches the runtime; it hands the engine one job
at a time, and each job answers a `Step`: the run's outcome (or why it could not start),
the request payload a parked run needs shipped, and the create/destroy notifications the
step's committed changes call for (spec §11.3; a create inside a transaction is announced
when it commits, an aborted one never).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avm_vm.errors import AvmError, ErrorKind
from avm_vm.node import entry
from avm_vm.node.directory import Directory
from avm_vm.node.messages import Message, message
from avm_vm.node.transfer import (
    TransferError,
    duct_from_wire,
    export_activation,
    export_object,
    import_activation,
    install_object,
)
from avm_vm.program import Program
from avm_vm.runs import Failed, MoveOut, Outcome, Parked, RemoteFailure, Run, Teleport
from avm_vm.runtime import Runtime, RuntimeOptions
from avm_vm.trace import entry_json
from avm_vm.values import NOTHING, ObjectRef, Value

STATUS_OBJECTS = 1000  # objects listed by `avm status` (the count is always exact)


@dataclass
class Step:
    """What one job on the VM produced."""

    outcome: Outcome | None = None  # None when nothing ran
    error: str | None = None  # why nothing ran (a run could not start, a transfer refused)
    error_kind: str = "Failed"
    payload: dict[str, Any] | None = None  # a parked run's activation or object to ship
    notices: list[Message] = field(default_factory=list)


class Engine:
    def __init__(
        self,
        programs: list[Program],
        options: RuntimeOptions,
        directory: Directory,
        trace_out: Path | None = None,
    ) -> None:
        self.runtime = Runtime(tuple(programs), options, network=directory)
        self.runtime.store.track_changes()
        self.entry = self.runtime.load(entry.ENTRY)
        self.directory = directory
        self.here = options.machine
        self.trace_out = trace_out

    # ----------------------------------------------------------------- runs

    def client_call(self, target: int, value: Value) -> Step:
        """``return call(target, value)`` as a top-level program."""
        return self._step(self.runtime.start(self.entry, entry.CALL, (ObjectRef(target), value)))

    def client_create(self, behavior: str, controller: str | None) -> Step:
        """``return create behavior`` as a top-level program; the behavior must be loaded."""
        if self.runtime.registry.behavior(behavior) is None:
            error = AvmError(ErrorKind.BEHAVIOR_NOT_FOUND, name=behavior)
            return Step(error=error.message, error_kind=error.kind.qualified_name)
        args = (behavior, NOTHING if controller is None else controller)
        return self._step(self.runtime.start(self.entry, entry.CREATE, args))

    def serve_call(
        self, target: int, value: Value, sender: int, duct: list[tuple[str, int, int]]
    ) -> Step:
        """A peer's call: the callee runs as the base of a new run (spec §11.2)."""
        rt = self.runtime
        call_id = duct[-1][2] if duct else rt.next_call_id()
        try:
            outcome = rt.start_call(target, value, sender, call_id, duct_from_wire(duct[:-1]))
        except AvmError as error:
            return Step(error=error.message, error_kind=error.kind.qualified_name)
        return self._step(outcome)

    def arrive(self, shipped: dict[str, Any]) -> Step:
        """A teleported activation continues here, unless this node lacks its code."""
        try:
            act, dst, came_from = import_activation(self.runtime, shipped)
        except TransferError as error:
            return Step(error=str(error), error_kind="TransferRefused")
        return self._step(self.runtime.arrive(act, dst, came_from))

    def resume(self, run: Run, answer: Value | AvmError | RemoteFailure) -> Step:
        return self._step(self.runtime.resume(run, answer))

    def _step(self, outcome: Outcome) -> Step:
        step = Step(outcome)
        rt = self.runtime
        if type(outcome) is Parked:
            request = outcome.request
            if type(request) is Teleport:
                step.payload = export_activation(request.activation, outcome.run.dst, self.here)
            elif type(request) is MoveOut:
                step.payload = export_object(rt, request.object_id)
        else:  # a transaction the finished run left open must not leak into the next run
            rt.abort_open_tx()
        step.notices = self._notices()
        if not rt.parked:
            self._flush_trace()
        return step

    # ----------------------------------------------------------------- objects

    def install(self, object_id: int, shipped: dict[str, Any]) -> Step:
        """A peer moves an object here."""
        try:
            install_object(self.runtime, object_id, shipped)
        except TransferError as error:
            return Step(error=str(error), error_kind="TransferRefused")
        return Step(notices=self._notices())

    def export(self, object_id: int) -> dict[str, Any] | None:
        return export_object(self.runtime, object_id)

    def forget(self, object_id: int, machine: str) -> Step:
        """The object now lives on ``machine``: drop it here, and say where it went."""
        self.directory.learn(object_id, machine)
        self.runtime.store.forget(object_id)
        return Step(notices=self._notices())

    def _notices(self) -> list[Message]:
        """create_notify for objects that appeared here, and for objects that left, where
        they went; destroy_notify for objects destroyed here."""
        objects = self.runtime.store.objects
        out = []
        for object_id in sorted(self.runtime.store.drain_changes()):
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
            "runs": self.runtime.runs,
        }

    def _flush_trace(self) -> None:
        """Append the trace to ``trace_out`` and forget it; only between runs, since a
        parked run's undo marks point into the entries."""
        trace = self.runtime.trace
        if self.trace_out is None or not trace.entries:
            return
        with self.trace_out.open("a", encoding="utf-8") as out:
            for item in trace.entries:
                out.write(entry_json(item) + "\n")
        trace.entries.clear()


def failure_of(outcome: Failed) -> tuple[str, str]:
    """The error kind and text a failed run answers with."""
    error = outcome.failure.error
    return error.kind.qualified_name, error.message
