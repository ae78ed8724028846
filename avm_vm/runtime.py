"""The runtime: machine state (spec §5), the explicit stack of activations, and the run loop.

An activation is one object call (or the top-level program): its own VM frame stack plus
the context the spec's frame holds (self, input, sender, machine). Object calls push an
activation on `Runtime.stack` instead of recursing, so a million nested calls need memory,
not Python stack (spec §4.5). The loop drives the top activation's VM: a `Vis` goes to the
handler table (a list indexed by instruction number), a `Ret` or `Fault` of a callee
completes its call in the caller (spec §7.1 step 9, with DESIGN.md §12's undo).

Profiles: ``ours`` (DESIGN.md §12, documented in docs/semantics.md) and ``r``, which
reproduces the reference where we deliberately differ: failed callees keep their effects
and lose their trace, no read-your-writes, and the stub answers of spec §6.0.
"""

from __future__ import annotations

import gc
import random
from dataclasses import dataclass
from typing import Protocol

from avm_vm.errors import AvmError, ErrorKind
from avm_vm.handlers import SUSPEND, handler_table
from avm_vm.handlers.solver import ConstraintStore
from avm_vm.program import Program
from avm_vm.registry import BehaviorEntry, Registry
from avm_vm.store import IdGenerator, Journal, Store
from avm_vm.trace import DuctLink, Event, ObjectCalled, Trace, TransactionAborted
from avm_vm.transactions import Transaction
from avm_vm.values import NO_OBJECT_ID, NOTHING, Just, Value
from avm_vm.vm import Fault, Frame, Fuel, Interpreter, Ret, Vis

PROFILES = ("ours", "r")


@dataclass(frozen=True)
class RuntimeOptions:
    fuel: int = 1_000_000_000  # VM steps for one top-level run (pure calls included)
    max_depth: int = 250_000  # nested object calls
    max_frames: int = 100_000  # pure-function frames within one activation
    machine: str = "local"  # the executing machine's name
    seed: int = 0  # entropy()'s generator
    now: int | None = None  # now() in ms; None: the wall clock
    profile: str = "ours"
    node_prefix: int = 0  # 16-bit id prefix (spec §2.5)
    record_trace: bool = True
    jit: str = "auto"  # off | auto | on (see avm_vm.jit)


class Transport(Protocol):
    """Carries a call to an object on another machine (spec §7.5); raises `AvmError`."""

    def call(self, machine: str, target: int, message: Value, sender: int) -> Value: ...


class Activation:
    """One running object call, or the top-level program (``duct`` None, ``sender`` None)."""

    __slots__ = (
        "behavior",
        "dst",
        "duct",
        "frames",
        "input",
        "interpreter",
        "machine",
        "mark",
        "self_id",
        "sender",
        "trace_mark",
        "unreceived",
    )

    def __init__(
        self,
        interpreter: Interpreter,
        frame: Frame,
        self_id: int,
        message: Value,
        sender: int | None,
        machine: str,
        behavior: str,
        duct: DuctLink | None,
    ) -> None:
        self.interpreter = interpreter
        self.frames = [frame]
        self.self_id = self_id
        self.input = message
        self.sender = sender
        self.machine = machine
        self.behavior = behavior
        self.duct = duct
        self.unreceived = sender is not None  # the mailbox holds this call's message
        self.mark = 0  # journal length at entry
        self.trace_mark = 0  # trace length at entry
        self.dst = 0  # the caller's register waiting for the answer


@dataclass(eq=False)
class RunError(Exception):
    """The top-level program failed, or a fatal error stopped the run."""

    error: AvmError
    object_id: int  # the object whose behavior was running (NO_OBJECT_ID: main)
    behavior: str
    function: str
    line: int
    col: int
    source_name: str
    duct: tuple[tuple[int, str, int], ...]

    def __str__(self) -> str:
        return f"{self.error.kind.qualified_name}: {self.error.message}"


class Runtime:
    def __init__(
        self,
        programs: Program | tuple[Program, ...] = (),
        options: RuntimeOptions | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.options = options = options or RuntimeOptions()
        if options.profile not in PROFILES:
            raise ValueError(f"unknown profile {options.profile!r}")
        self.ours = options.profile == "ours"
        self.journal = Journal()
        self.store = Store(self.journal)
        self.registry = Registry(self.journal)
        self.constraints = ConstraintStore(self.journal)
        self.trace = Trace(options.record_trace)
        self.ids = IdGenerator(options.node_prefix)
        self.rng = random.Random(options.seed)
        self.transport = transport
        self.handlers = handler_table(options.profile)
        self.tx: Transaction | None = None
        self.stack: list[Activation] = []
        self.act: Activation  # the top of `stack` while running
        self.fuel = Fuel(options.fuel)
        self.call_ids = 0
        self.interpreters: list[Interpreter] = []
        for program in (programs,) if isinstance(programs, Program) else programs:
            self.load(program)

    def load(self, program: Program) -> Interpreter:
        interpreter = self.registry.load(program, self.options.jit)
        self.interpreters.append(interpreter)
        return interpreter

    # ----------------------------------------------------------------- running

    def run_main(self, program: Program | None = None) -> Value:
        """Run ``main`` of ``program`` (default: the first loaded program that has one)."""
        for interpreter in self.interpreters:
            if program in (None, interpreter.program) and interpreter.program.main is not None:
                return self.run_function(interpreter, interpreter.program.main)
        raise ValueError("no program with a main was loaded")

    def run_function(
        self, interpreter: Interpreter, function: int, args: tuple[Value, ...] = ()
    ) -> Value:
        """Run a function as a top-level program (spec §5.2): self is the sentinel, no sender.

        State (store, ids, clock, an open transaction) persists across runs; each run gets
        a fresh fuel budget. Raises `RunError` when the program fails.
        """
        self.fuel = Fuel(self.options.fuel)
        frame = interpreter.frame(function, args)
        main = Activation(
            interpreter, frame, NO_OBJECT_ID, NOTHING, None, self.options.machine, "main", None
        )
        self.stack = [main]
        self.act = main
        # A deep call chain keeps every activation alive, and CPython's default young-
        # generation threshold makes the collector rescan them constantly: collecting less
        # often nearly halves the cost of a call. The setting is restored after the run.
        thresholds = gc.get_threshold()
        gc.set_threshold(max(thresholds[0], 10_000), *thresholds[1:])
        try:
            return self._loop()
        except AvmError as error:  # fatal: fuel or depth
            raise self._abandon(error, None) from None
        finally:
            gc.set_threshold(*thresholds)

    def _loop(self) -> Value:
        stack = self.stack
        handlers = self.handlers
        fuel = self.fuel
        max_frames = self.options.max_frames
        act = self.act
        result = act.interpreter.run(act.frames, fuel, max_frames)
        while True:
            kind = type(result)
            if kind is Vis:
                try:
                    answer = handlers[result.instruction](self, result.args)
                except AvmError as error:
                    if error.fatal:
                        raise
                    result = act.interpreter.throw(act.frames, error, fuel, max_frames)
                    continue
                if answer is SUSPEND:  # a local call pushed the callee's activation
                    act = self.act
                    act.dst = result.dst
                else:
                    act.frames[-1].regs[result.dst] = answer
            elif kind is Ret:
                if len(stack) == 1:
                    return result.value
                act = self._finish(result.value)
            else:
                if len(stack) == 1 or result.error.fatal:
                    raise self._abandon(result.error, result)
                act = self._finish(None)
            result = act.interpreter.run(act.frames, fuel, max_frames)

    # ----------------------------------------------------------------- calls

    def enter(self, entry: BehaviorEntry, target: int, message: Value, machine: str, name: str):
        """Push the activation of a local call (spec §7.1 step 6); the loop runs it next."""
        caller = self.act
        if len(self.stack) > self.options.max_depth:
            raise AvmError(ErrorKind.DEPTH_EXCEEDED, limit=self.options.max_depth)
        frame = entry.interpreter.frame(entry.function, (message,))
        call_id = self.call_ids
        self.call_ids = call_id + 1
        duct = DuctLink(target, name, call_id, caller.duct)
        act = Activation(
            entry.interpreter, frame, target, message, caller.self_id, machine, name, duct
        )
        if self.ours:
            self.journal.active = True
            act.mark = len(self.journal.entries)
        act.trace_mark = len(self.trace.entries)
        self.stack.append(act)
        self.act = act
        return SUSPEND

    def next_call_id(self) -> int:
        self.call_ids += 1
        return self.call_ids - 1

    def _finish(self, value: Value | None) -> Activation:
        """Complete the top call: ``value`` is its answer, None when it failed (spec §7.1 §9)."""
        callee = self.stack.pop()
        caller = self.act = self.stack[-1]
        if value is None:
            if self.ours:
                self.journal.unwind(callee.mark)
                self.trace.revert_from(callee.trace_mark)
            else:
                self.trace.drop_from(callee.trace_mark)
        if len(self.stack) == 1:  # back at top level: nothing left that could be undone
            self.journal.active = False
            self.journal.entries.clear()
        self.emit_at(ObjectCalled(callee.self_id, callee.input, value), callee.duct)
        caller.frames[-1].regs[callee.dst] = NOTHING if value is None else Just(value)
        return caller

    def _abandon(self, error: AvmError, fault: Fault | None) -> RunError:
        """Stop the run. A fatal error also aborts the open transaction (it cannot finish)."""
        act = self.act
        if fault is None:
            frame = act.frames[-1]
            lines = frame.function.function.lines
            line, col = lines[frame.pc] if frame.pc < len(lines) else (0, 0)
            function = frame.function.name
        else:
            line, col, function = fault.line, fault.col, fault.function
        failure = RunError(
            error,
            act.self_id,
            act.behavior,
            function,
            line,
            col,
            act.interpreter.program.source_name,
            () if act.duct is None else act.duct.chain(),
        )
        self.stack = []
        self.journal.active = False
        self.journal.entries.clear()
        if error.fatal and self.tx is not None:
            tx = self.rollback()
            self.trace.emit(TransactionAborted(tx.id), None, None)
        return failure

    # ----------------------------------------------------------------- helpers for handlers

    def emit(self, event: Event) -> None:
        """Log ``event`` with the executing controller (spec §10.3) and the current duct."""
        self.emit_at(event, self.act.duct)

    def emit_at(self, event: Event, duct: DuctLink | None) -> None:
        tx = self.tx
        self.trace.emit(event, None if tx is None else tx.controller, duct)

    def set_tx(self, tx: Transaction | None) -> None:
        """Open or close the transaction, undoably; direct world changes log into it."""
        self.journal.set_attr(self, "tx", tx)
        self.journal.set_attr(self.journal, "world", None if tx is None else tx.world)

    def rollback(self) -> Transaction:
        """Close the open transaction and put the world back as it was at begin (§8.7)."""
        tx = self.tx
        assert tx is not None
        self.set_tx(None)
        self.journal.restore_world(tx.world)
        return tx
