"""The Python API: a world of objects to drive from Python, for embedding and for tests.

    from avm_vm.api import World
    w = World.load("examples/bank.avm")
    alice = w.create("Account")
    w.call(alice, ["deposit", 100])          # 100
    w.call(alice, ["withdraw", 500])         # raises CallFailed: insufficient funds

A world is one runtime (docs/semantics.md): its store, trace and transactions persist from
one call to the next. Each `create`, `call` and `main` is a top-level run, exactly as
``return call(obj, msg)`` in a program's ``main`` would be, so objects behave as they do
under `avm run` and on a node. Python values are checked and converted before anything
runs: a value the AVM cannot hold raises `TypeError` and leaves the world as it was.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

from avm_vm.diagnostics import DiagnosticError
from avm_vm.format.bytecode import decode, load
from avm_vm.format.program import Program
from avm_vm.runtime import entry
from avm_vm.runtime.core import RUN_FUEL, RunError, Runtime, RuntimeOptions
from avm_vm.runtime.handlers.introspect import state_seen
from avm_vm.runtime.runs import Done, Failed
from avm_vm.trace import (
    CallFailure,
    ObjectCalled,
    TraceEntry,
    render_json_lines,
    render_mermaid,
    render_text,
)
from avm_vm.values import NAT_MAX, NOTHING, Just, NothingType, ObjectRef, Pair, TxRef, Value

__all__ = [
    "AvmFailure",
    "CallFailed",
    "Just",
    "LoadFailed",
    "ObjectRef",
    "Pair",
    "RunFailed",
    "TraceView",
    "TxRef",
    "World",
    "from_avm",
    "to_avm",
]


# ------------------------------------------------------------------------------ failures


class AvmFailure(Exception):
    """Something the AVM refused: ``kind`` (``Failed``, ``TypeMismatch``, ``TxConflict``...),
    ``message``, and ``location`` (``bank.avm:9:28``) when the program's source is known."""

    def __init__(self, kind: str, message: str, location: str | None = None) -> None:
        self.kind = kind
        self.message = message
        self.location = location
        where = "" if location is None else f" ({location})"
        super().__init__(f"{kind}: {message}{where}")


class CallFailed(AvmFailure):
    """The called object failed; everything it did was undone (docs/semantics.md)."""

    def __init__(self, failure: CallFailure, target: ObjectRef, message: Any) -> None:
        super().__init__(failure.kind, failure.message, failure.location)
        self.target = target
        self.input = message


class RunFailed(AvmFailure):
    """A run stopped as a whole: `main` failed, a transaction could not commit, or the run
    ran out of fuel, call depth or value bytes."""

    def __init__(self, failure: RunError) -> None:
        location = None
        if failure.line:
            location = f"{failure.source_name}:{failure.line}:{failure.col}"
        super().__init__(failure.error.kind.qualified_name, failure.error.message, location)
        self.error = failure


class LoadFailed(Exception):
    """A program could not be compiled, read or verified; the message says where and why."""


# ------------------------------------------------------------------------------ values


def to_avm(value: object) -> Value:
    """The AVM value of a Python one: int (a nat, 0 to 2^64 - 1), bool, str, list or tuple
    (a list), `Pair`, `Just`, None (``nothing``), `ObjectRef`, `TxRef`. Raises `TypeError`
    naming the offending part otherwise."""
    return _to_avm(value, "value")


def _to_avm(value: object, where: str) -> Value:
    kind = type(value)
    if kind is bool or kind is str:
        return value  # type: ignore[return-value]
    if kind is int:
        if 0 <= value <= NAT_MAX:  # type: ignore[operator]
            return value  # type: ignore[return-value]
        raise TypeError(f"{where}: {value} is not a nat (0 to 2^64 - 1)")
    if kind is list or kind is tuple:
        return tuple(_to_avm(item, f"{where}[{i}]") for i, item in enumerate(value))  # type: ignore[arg-type]
    if value is None or kind is NothingType:
        return NOTHING
    if kind is Pair:
        pair: Pair = value  # type: ignore[assignment]
        first, second = _to_avm(pair.first, f"{where}.first"), pair.second
        return Pair(first, _to_avm(second, f"{where}.second"))
    if kind is Just:
        return Just(_to_avm(value.value, f"{where}.value"))  # type: ignore[attr-defined]
    if kind is ObjectRef or kind is TxRef:
        return value  # type: ignore[return-value]
    raise TypeError(
        f"{where}: {kind.__name__} {value!r} is not an AVM value (use int, bool, str, list, "
        "tuple, Pair, Just, None, ObjectRef or TxRef)"
    )


def from_avm(value: Value) -> Any:
    """The Python form of an AVM value: lists for lists, None for ``nothing``; nats, bools,
    strings, `Pair`, `Just`, `ObjectRef` and `TxRef` as they are. `to_avm` takes it back."""
    kind = type(value)
    if kind is tuple:
        return [from_avm(item) for item in value]  # type: ignore[union-attr]
    if kind is NothingType:
        return None
    if kind is Pair:
        return Pair(from_avm(value.first), from_avm(value.second))  # type: ignore[union-attr]
    if kind is Just:
        return Just(from_avm(value.value))  # type: ignore[union-attr]
    return value


# ------------------------------------------------------------------------------ traces


@dataclass(frozen=True)
class TraceView(Sequence[TraceEntry]):
    """Trace entries (each with ``timestamp``, ``event``, ``controller``, ``reverted`` and
    ``duct``), with the three renderings `avm run --trace-format` offers."""

    entries: tuple[TraceEntry, ...]

    @overload
    def __getitem__(self, index: int) -> TraceEntry: ...
    @overload
    def __getitem__(self, index: slice) -> TraceView: ...
    def __getitem__(self, index: int | slice) -> TraceEntry | TraceView:
        if isinstance(index, slice):
            return TraceView(self.entries[index])
        return self.entries[index]

    def __len__(self) -> int:
        return len(self.entries)

    def text(self, duct: bool = False) -> str:
        return render_text(self.entries, duct)

    def json(self) -> str:
        return render_json_lines(self.entries)

    def mermaid(self) -> str:
        return render_mermaid(self.entries)

    def __str__(self) -> str:
        return self.text()


# ------------------------------------------------------------------------------ the world


class World:
    """A runtime with programs loaded: create objects, call them, read state and trace."""

    def __init__(self, *programs: Program, options: RuntimeOptions | None = None) -> None:
        self.runtime = Runtime(programs, options or RuntimeOptions(fuel=RUN_FUEL))
        self._entry = self.runtime.load(entry.ENTRY)

    @classmethod
    def load(cls, *paths: str | os.PathLike[str], **options: Any) -> World:
        """A world with the programs of these files: `.avm` source (compiled and verified)
        or `.tape` bytecode. Keyword arguments are `RuntimeOptions` fields (``fuel``,
        ``jit``, ``seed``, ``now``, ``max_depth``, ``max_value_bytes``, ``profile``...)."""
        return cls(*(read_program(Path(path)) for path in paths), options=_options(options))

    @classmethod
    def from_source(cls, source: str, filename: str = "<source>", **options: Any) -> World:
        """A world with the program compiled from ``source`` (see `load` for options)."""
        return cls(compile_program(source, filename), options=_options(options))

    # ----------------------------------------------------------------- runs

    def create(self, behavior: str, controller: str | None = None) -> ObjectRef:
        """A new object of ``behavior`` (under ``controller``, a name, when given)."""
        if not isinstance(behavior, str):
            raise TypeError(f"behavior: expected a behavior name (str), got {behavior!r}")
        if controller is not None and not isinstance(controller, str):
            raise TypeError(f"controller: expected a controller name (str), got {controller!r}")
        args = (behavior, NOTHING if controller is None else controller)
        created = self._run(entry.CREATE, args)
        assert type(created) is ObjectRef
        return created

    def call(self, target: ObjectRef, message: Any) -> Any:
        """Call ``target`` with ``message`` and answer what its behavior returned, as a
        Python value; raises `CallFailed` with the callee's reason if it failed."""
        if type(target) is not ObjectRef:
            raise TypeError(f"target: expected an object (ObjectRef), got {target!r}")
        avm_message = _to_avm(message, "message")
        mark = len(self.runtime.trace.entries)
        answer = self._run(entry.CALL, (target, avm_message))
        if type(answer) is Just:
            return from_avm(answer.value)
        raise CallFailed(self._failure_since(mark, target.id), target, message)

    def main(self) -> Any:
        """Run the loaded program's ``main`` and answer its result."""
        try:
            return from_avm(self.runtime.run_main())
        except RunError as failure:
            raise RunFailed(failure) from None
        except ValueError as error:
            raise LoadFailed(str(error)) from None

    @contextmanager
    def transaction(self, controller: str | None = None) -> Iterator[TxRef]:
        """Run the block's calls in one transaction: committed at the end (`RunFailed` with
        ``TxConflict`` if it cannot commit), aborted if the block raises."""
        if controller is not None and not isinstance(controller, str):
            raise TypeError(f"controller: expected a controller name (str), got {controller!r}")
        tx = self._run(entry.BEGIN, (NOTHING if controller is None else controller,))
        assert type(tx) is TxRef
        try:
            yield tx
        except BaseException:
            if self.runtime.tx is not None and self.runtime.tx.id == tx.id:
                self._run(entry.ABORT, (tx,))
            raise
        if self.runtime.tx is not None and self.runtime.tx.id == tx.id:
            self._run(entry.COMMIT, (tx,))

    def _run(self, function: int, args: tuple[Value, ...]) -> Value:
        outcome = self.runtime.start(self._entry, function, args)
        if type(outcome) is Done:
            return outcome.value
        if type(outcome) is Failed:
            raise RunFailed(outcome.failure)
        raise RuntimeError(f"a run stopped without an answer ({type(outcome).__name__})")

    def _failure_since(self, mark: int, target: int) -> CallFailure:
        """Why the top-level call to ``target`` made since trace position ``mark`` failed."""
        for trace_entry in reversed(self.runtime.trace.entries[mark:]):
            event = trace_entry.event
            if type(event) is ObjectCalled and event.id == target and event.output is None:
                link = trace_entry.duct_link
                if link is not None and link.parent is None and event.failure is not None:
                    return event.failure
        return CallFailure("Failed", f"the call to obj:{target} failed")

    # ----------------------------------------------------------------- looking

    def state(self, target: ObjectRef) -> Any:
        """The object's state (committed, or as the open transaction sees it)."""
        if type(target) is not ObjectRef:
            raise TypeError(f"target: expected an object (ObjectRef), got {target!r}")
        runtime = self.runtime
        created = runtime.tx is not None and target.id in runtime.tx.creates
        if not created and runtime.store.get(target.id) is None:
            raise KeyError(f"no object obj:{target.id} in this world")
        return from_avm(state_seen(runtime, target.id))

    def trace(self) -> TraceView:
        """Every trace entry so far, oldest first."""
        return TraceView(tuple(self.runtime.trace.entries))

    @property
    def objects(self) -> list[ObjectRef]:
        """The objects in the store, ids increasing."""
        return [ObjectRef(object_id) for object_id in self.runtime.store.ids()]

    @property
    def behaviors(self) -> list[str]:
        """The names of the behaviors the loaded programs define."""
        return sorted(self.runtime.registry.behaviors)


# ------------------------------------------------------------------------------ loading


def read_program(path: Path) -> Program:
    """A verified program: `.avm` compiled (then decoded and verified like any `.tape`), or
    a `.tape` file read and verified. Raises `LoadFailed` with the rendered diagnostic."""
    if path.suffix == ".avm":
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise LoadFailed(f"cannot read {path}: {error}") from None
        return compile_program(text, str(path))
    try:
        return load(path)
    except DiagnosticError as error:
        raise LoadFailed(error.render()) from None


def compile_program(source: str, filename: str) -> Program:
    from avmc.compiler import build  # the compiler is needed only for source

    try:
        return decode(build(source, filename).tape, filename)
    except DiagnosticError as error:
        raise LoadFailed(error.render(source)) from None


def _options(given: dict[str, Any]) -> RuntimeOptions:
    try:
        return RuntimeOptions(**{"fuel": RUN_FUEL, **given})
    except TypeError as error:
        raise TypeError(f"World options: {error}") from None
