"""The runtime: machine state (spec §5), the explicit stack of activations, and the run loop.

An activation is one object call (or the top-level program): its own VM frame stack plus
the context the spec's frame holds (self, input, sender, machine). Object calls push an
activation on `Runtime.stack` instead of recursing, so a million nested calls need memory,
not Python stack (spec §4.5). The loop drives the top activation's VM: a `Vis` goes to the
handler table (a list indexed by instruction number), a `Ret` or `Fault` of a callee
completes its call in the caller (spec §7.1 step 9, with DESIGN.md §12's undo). Translated
code short-cuts the commonest round trips with the same handlers and charges: it performs
the introspection instructions in place, and a call runs its local callee through
`perform_call`, so the loop sees only what must wait or suspend.

A top-level run is resumable (`start`, `resume`, `avm_vm.runtime.runs`): on a node, an
instruction that needs another machine parks the run instead of blocking; runs start
meanwhile, and any parked run resumes once its answer is in (docs/semantics.md, "Nodes:
parked runs"). `run_main` and `run_function` drive one run to its end, as `avm run` does.

Profiles: ``ours`` (DESIGN.md §12, documented in docs/semantics.md) and ``r``, which
reproduces the reference where we deliberately differ: failed callees keep their effects
and lose their trace, no read-your-writes, and the stub answers of spec §6.0.
"""

from __future__ import annotations

import gc
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from avm_vm.errors import AvmError, ErrorKind, vm_error
from avm_vm.format.instructions import BY_NAME
from avm_vm.format.program import Program
from avm_vm.runtime.failures import CalleeFailed, failure_of
from avm_vm.runtime.handlers import PARK, RESTART, SUSPEND, handler_table
from avm_vm.runtime.handlers.events import EntropyPool
from avm_vm.runtime.handlers.machine import complete_fetch, complete_move
from avm_vm.runtime.handlers.objects import call, complete_remote_call, remote_call_failed
from avm_vm.runtime.handlers.solver import ConstraintStore
from avm_vm.runtime.handlers.tx import complete_commit
from avm_vm.runtime.registry import BehaviorEntry, Registry
from avm_vm.runtime.runs import (
    Decision,
    Done,
    Failed,
    FetchIn,
    MoveOut,
    NoAnswer,
    Outcome,
    Parked,
    Preempted,
    Prepare,
    RemoteCall,
    RemoteFailure,
    Request,
    Run,
    Teleport,
)
from avm_vm.runtime.store import IdGenerator, Journal, Store
from avm_vm.runtime.transactions import Transaction
from avm_vm.trace import (
    CallFailure,
    DuctLink,
    Event,
    ExecutionMoved,
    ObjectCalled,
    Trace,
    TransactionAborted,
)
from avm_vm.values import (
    BOX_BYTES,
    EFFECT_STEPS,
    NO_OBJECT_ID,
    NOTHING,
    WALK_STEPS,
    Just,
    ObjectRef,
    Value,
    walk_steps,
)
from avm_vm.vm.frames import DEFAULT_MAX_VALUE_BYTES
from avm_vm.vm.interpreter import (
    CALLING,
    LEAF_CREDIT_MAX,
    PARKED,
    PREEMPTED,
    RETRY,
    Fault,
    Frame,
    Fuel,
    Interpreter,
    Ret,
    Vis,
)

PROFILES = ("ours", "r")
new_object = object.__new__  # see `Runtime.enter`
CALL, CALL_UNWRAP = BY_NAME["call"].number, BY_NAME["call_unwrap"].number


@dataclass(frozen=True)
class RuntimeOptions:
    fuel: int = 1_000_000_000  # VM steps for one top-level run (pure calls included)
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES  # bytes of values one run may build
    max_depth: int = 250_000  # nested object calls
    max_frames: int = 100_000  # pure-function frames within one activation
    machine: str = "local"  # the executing machine's name
    seed: int = 0  # entropy()'s generator
    now: int | None = None  # now() in ms; None: the wall clock
    profile: str = "ours"
    node_prefix: int = 0  # 16-bit id prefix (spec §2.5)
    record_trace: bool = True
    jit: str = "auto"  # off | auto | on (see avm_vm.jit)
    max_search: int = 100_000  # runs of one transaction's body while it searches


# The fuel of a run someone waits for (`avm run`, `avm repl`, the Python API): an endless
# loop should stop within seconds, not minutes. Measured on a loaded 2-core machine: a tight
# loop runs 30-45 million steps a second in the VM (--jit off, or code the JIT does not
# compile), billions once native; a loop of pure calls 5-8 million in the VM. So 200 million
# steps is 5-7 s for the slow tight loop and under a second native; loops of object calls or
# state writes run into the value budget (--max-value-bytes) first, within about 15 s.
# Servers (`avm node`) keep the larger default of `RuntimeOptions.fuel`: their runs are
# sliced, so one long run never blocks the others.
RUN_FUEL = 200_000_000


class Transport(Protocol):
    """Carries a call to an object on another machine (spec §7.5); raises `AvmError`."""

    def call(self, machine: str, target: int, message: Value, sender: int) -> Value: ...


class Network(Protocol):
    """A node's view of the other machines. With one, instructions that need another
    machine park the run (`avm_vm.runtime.runs`) instead of using a `Transport`."""

    def locate(self, object_id: int) -> str | None:
        """The machine of an object not in the local store (the location directory)."""
        ...

    def is_peer(self, machine: str) -> bool:
        """Whether ``machine`` is another node this one can reach."""
        ...

    def cannot_join(self, machine: str) -> str | None:
        """Why a call to ``machine`` cannot join a transaction (None: it can)."""
        ...


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
        "strict",
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
        # `Runtime.enter` makes the activations of local calls without this __init__, and
        # sets every field set here.
        self.interpreter = interpreter
        self.frames = [frame]
        self.self_id = self_id
        self.input = message
        self.sender = sender
        self.machine = machine
        self.behavior = behavior
        self.duct = duct
        self.unreceived = sender is not None  # the mailbox holds this call's message
        self.mark = 0  # length of its run's undo entries at entry
        self.trace_mark = 0  # the trace clock at entry (stamps survive other runs' drops)
        self.dst = 0  # the caller's register waiting for the answer
        self.strict = False  # entered by `call!`: the caller gets the value, or our failure


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

    @property
    def origin(self) -> CallFailure | None:
        """Where the failure was first raised when a `call!` passed a callee's failure up
        to here (its location is then in another behavior); None otherwise."""
        error = self.error
        return error.failure if isinstance(error, CalleeFailed) else None

    def call_failure(self) -> CallFailure:
        """The failure as a failed call reports it (a node's answer to a failed served call)."""
        return failure_of(self.error, self.source_name, self.line, self.col)


class Runtime:
    def __init__(
        self,
        programs: Program | tuple[Program, ...] = (),
        options: RuntimeOptions | None = None,
        transport: Transport | None = None,
        network: Network | None = None,
    ) -> None:
        self.options = options = options or RuntimeOptions()
        if options.profile not in PROFILES:
            raise ValueError(f"unknown profile {options.profile!r}")
        self.ours = options.profile == "ours"
        self.journal = Journal()
        self.store = Store(self.journal)
        self.registry = Registry(self.journal)
        self.constraints = ConstraintStore(self.journal, self._pay)
        self.trace = Trace(options.record_trace)
        self.ids = IdGenerator(options.node_prefix)
        self.rng = random.Random(options.seed)
        # A node replaces both: entropy from logged events, time from the applied event.
        self.entropy: EntropyPool | None = None
        self.event_time: int | None = None
        self.transport = transport
        self.network = network
        self.handlers = handler_table(options.profile)
        # The call instructions, by number, and whether each is strict (`call!`), in profile
        # ours, where translated code tries a leaf call before `perform_call` does the rest.
        self.leaf_calls = {CALL: False, CALL_UNWRAP: True} if self.ours else {}
        self.tx: Transaction | None = None
        # Set with RESTART when a search ends without a solution: thrown at its checkpoint.
        self.search_failure: AvmError | None = None
        self.run: Run | None = None  # the executing run
        self.parked: dict[int, Run] = {}  # runs waiting on another machine, by number
        self.runs = 0  # runs started, which numbers them
        # Transactions with parts on other nodes that ended here: (id, committed, the nodes
        # to tell). A node sends them and empties the list after each step.
        self.decided: list[tuple[int, bool, frozenset[str]]] = []
        self.request: Request | None = None  # set by a handler that answers PARK
        self.stack: list[Activation] = []  # the executing run's activations
        self.act: Activation  # the top of `stack` while running
        self.calling = False  # a callee runs inside `perform_call`: its calls are `Vis`
        self.fuel = Fuel(options.fuel, options.max_value_bytes)
        # Steps a run takes before it is preempted (None: runs are never cut): a server
        # runs short work inline and hands what is left of a long run to a thread.
        self.slice: int | None = None
        # Call ids carry the node prefix like object ids, so ducts stay unique across nodes.
        self.call_ids = options.node_prefix << 48
        # Told of each `log(value)` as it runs, with where it ran (`avm run` prints them).
        self.log_sink: Callable[[Value, str | None], None] | None = None
        self.interpreters: list[Interpreter] = []
        for program in (programs,) if isinstance(programs, Program) else programs:
            self.load(program)

    def load(self, program: Program, replace: bool = False) -> Interpreter:
        """Register a program; ``replace``: its behaviors replace those of the same name."""
        interpreter = self.registry.load(program, self.options.jit, replace)
        interpreter.host = self  # performs get_state, set_state, self... in place
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
        outcome = self.start(interpreter, function, args)
        if type(outcome) is Done:
            return outcome.value
        if type(outcome) is Failed:
            raise outcome.failure
        raise RuntimeError("a run parked: a runtime with a network is driven by start/resume")

    def start(
        self, interpreter: Interpreter, function: int, args: tuple[Value, ...] = ()
    ) -> Outcome:
        """Start a top-level run of a function: self is the sentinel, no sender (spec §5.2)."""
        frame = interpreter.frame(function, args)
        main = Activation(
            interpreter, frame, NO_OBJECT_ID, NOTHING, None, self.options.machine, "main", None
        )
        self._begin(main, undoable=False)
        return self._drive(None)

    def start_call(
        self,
        target: int,
        message: Value,
        sender: int,
        call_id: int,
        parent: DuctLink | None,
        tx: Transaction | None = None,
    ) -> Outcome:
        """Serve a call from another machine (spec §11.2): the callee is the run's base
        activation, undone if it fails (like any failed callee, DESIGN.md §12). With ``tx``
        the call joined that transaction: it runs inside it, as a local callee would, and
        leaves it open. Raises `AvmError` (ObjNotFound, BehaviorNotFound, ObjLocked) when
        there is nothing to run."""
        record = self.store.get(target)
        if record is None:
            raise AvmError(ErrorKind.OBJ_NOT_FOUND, id=target)
        holder = self.store.locked_by(target)
        if holder is not None:
            raise AvmError(ErrorKind.OBJ_LOCKED, id=target, tx=holder)
        entry = self.registry.behaviors.get(record.behavior)
        if entry is None:
            raise AvmError(ErrorKind.BEHAVIOR_NOT_FOUND, name=record.behavior)
        frame = entry.interpreter.frame(entry.function, (message,))
        duct = DuctLink(target, record.behavior, call_id, parent)
        act = Activation(
            entry.interpreter, frame, target, message, sender, record.machine, record.behavior, duct
        )
        self._begin(act, undoable=True)
        if tx is not None:
            run = self.run
            assert run is not None
            run.joined_at = tx.progress()
            self.tx, self.journal.world = tx, tx.world
            tx.called(self.journal, self.store, target, message)
        return self._drive(None)

    def arrive(self, act: Activation, dst: int, came_from: str) -> Outcome:
        """Continue an activation that teleported here from ``came_from``: its teleport
        answers true, and it runs as a served call would (spec §6.7)."""
        act.frames[-1].regs[dst] = True
        self._begin(act, undoable=True)
        self.emit(ExecutionMoved(came_from, act.machine))
        return self._drive(None)

    def resume(
        self,
        run: Run,
        answer: Value | AvmError | RemoteFailure | CallFailure | Decision,
        changed: bool = True,
    ) -> Outcome:
        """Continue a parked run with the answer to what it waited for: a value, an
        `AvmError` (the parked instruction fails), a `RemoteFailure` (a teleported
        activation failed), a `CallFailure` (the remote callee of a call ran and failed) or
        a `Decision` (on a commit across nodes). ``changed``: whether a remote callee that
        joined the run's transaction changed anything there. Any parked run may resume, in
        any order: each keeps its own undo entries."""
        if self.run is not None or self.parked.get(run.number) is not run:
            raise RuntimeError("only a parked run can resume, and only between runs")
        del self.parked[run.number]
        request, run.request = run.request, None
        self._enter(run)
        self.tx, self.journal.world, self.journal.active = run.tx, run.world, run.journal_active
        run.tx = run.world = None
        act = self.act
        fuel, max_frames = self.fuel, self.options.max_frames
        result: Ret | Vis | Fault | None = None
        if type(request) is Teleport:
            result = self._teleport_done(answer)
        elif type(request) is Prepare:
            assert type(answer) is Decision
            try:
                act.frames[-1].regs[run.dst] = complete_commit(self, answer)
            except AvmError as error:
                result = act.interpreter.throw(act.frames, error, fuel, max_frames)
        elif isinstance(answer, AvmError):
            tx = self.tx
            if type(answer) is NoAnswer and tx is not None and type(request) is RemoteCall:
                tx.doomed = tx.doomed or (
                    f"the call to obj:{request.target} on node {request.machine} got no "
                    "answer, so what it changed there is unknown"
                )
            result = act.interpreter.throw(act.frames, answer, fuel, max_frames)
        elif type(answer) is RemoteFailure:
            raise AssertionError("only a teleported activation fails remotely")
        elif type(answer) is CallFailure:  # the remote callee ran and failed
            assert type(request) is RemoteCall
            error = remote_call_failed(self, request, answer)
            if error is None:
                act.frames[-1].regs[run.dst] = NOTHING
            else:
                result = act.interpreter.throw(act.frames, error, fuel, max_frames)
        else:
            if type(request) is RemoteCall:
                answer = complete_remote_call(self, request, answer, changed)
            elif type(request) is MoveOut:
                answer = complete_move(self, request, answer)
            elif type(request) is FetchIn:
                answer = complete_fetch(self, request, answer)
            act.frames[-1].regs[run.dst] = answer
        return self._drive(result)

    def proceed(self, sliced: bool = False) -> Outcome:
        """Go on with the run its slice stopped (`Preempted`): in slices again when
        ``sliced``, else to its end or its next stop on another machine."""
        run = self.run
        if run is None or run.stack is not self.stack:
            raise RuntimeError("no preempted run to proceed with")
        if not sliced:
            self.fuel.refill()
            self.fuel.preempt = False
        elif self.slice is not None:
            self.fuel.start_slice(self.slice)
        return self._drive(None)

    def _teleport_done(self, answer: Value | AvmError | RemoteFailure) -> Ret | Vis | Fault:
        """The teleported top activation finished elsewhere: the loop completes it as if it
        had returned or failed here. A refused teleport fails the instruction instead."""
        act = self.act
        if isinstance(answer, AvmError):
            return act.interpreter.throw(act.frames, answer, self.fuel, self.options.max_frames)
        if type(answer) is RemoteFailure:
            frame = act.frames[-1]
            lines = frame.function.function.lines
            line, col = lines[frame.pc - 1] if 0 < frame.pc <= len(lines) else (0, 0)
            return Fault(answer.error, frame.function.name, frame.pc - 1, line, col)
        return Ret(answer)

    def _begin(self, act: Activation, undoable: bool) -> None:
        if self.run is not None:
            raise RuntimeError("a run is executing; runs start between runs")
        self.runs += 1
        fuel = Fuel(self.options.fuel, self.options.max_value_bytes)
        run = Run(self.runs, [act], fuel, undoable)
        self._enter(run)
        act.trace_mark = self.trace.clock
        self.journal.active = undoable and self.ours

    def _enter(self, run: Run) -> None:
        self.run = run
        self.stack = run.stack
        self.act = run.stack[-1]
        self.fuel = run.fuel
        self.journal.entries = run.entries
        if self.slice is not None:
            run.fuel.start_slice(self.slice)
        self.trace.run = run.number

    def _drive(self, result: Ret | Vis | Fault | None) -> Outcome:
        """Run the executing run until it ends or parks."""
        run = self.run
        assert run is not None
        # A deep call chain keeps every activation alive, and CPython's default young-
        # generation threshold makes the collector rescan them constantly: collecting less
        # often nearly halves the cost of a call. The setting is restored afterwards.
        thresholds = gc.get_threshold()
        gc.set_threshold(max(thresholds[0], 10_000), *thresholds[1:])
        try:
            value = self._loop(result)
        except _Abandon as stop:
            return Failed(run, self._abandon(stop.error, stop.fault))
        except AvmError as error:  # fatal: fuel, depth or memory
            return Failed(run, self._abandon(error, None))
        except MemoryError:  # the process ran out before the run's budget did
            error = vm_error(ErrorKind.MEMORY_EXHAUSTED, "the process could not allocate more")
            return Failed(run, self._abandon(error, None))
        except BaseException:
            # A bug (or an interrupt) must not leave this run executing: every later run
            # would be refused. Undo it as a failed run, then let the exception go on.
            try:
                self._abandon(vm_error(ErrorKind.FAILED, "internal error"), None)
            finally:
                self.run, self.stack = None, []
            raise
        finally:
            gc.set_threshold(*thresholds)
        if value is PARK:
            return Parked(run, run.request)  # type: ignore[arg-type]
        if value is PREEMPTED:
            return Preempted(run)
        self._end()
        return Done(run, value)

    def _loop(self, result: Ret | Vis | Fault | None) -> Value:
        """Drive the top activation; ``result`` is where to pick up (None: run it). A run
        may come back from another activation than it started on: translated code performs
        a call in place (`perform_call`), so the top activation is read again each time."""
        stack = self.stack
        handlers = self.handlers
        fuel = self.fuel
        max_frames = self.options.max_frames
        if result is None:
            act = self.act
            result = act.interpreter.run(act.frames, fuel, max_frames)
        while True:
            act = self.act
            kind = type(result)
            if kind is Vis:
                try:
                    # An instruction's work in the runtime (a call, a state read or write,
                    # a trace entry) is that of tens of VM steps: charged, so fuel bounds
                    # time. What it keeps counts as a box of value bytes, so a run cannot
                    # grow the heap unboundedly.
                    fuel.take(EFFECT_STEPS)
                    fuel.build(BOX_BYTES)
                    answer = handlers[result.instruction](self, result.args)
                except AvmError as error:
                    if error.fatal:
                        raise
                    result = act.interpreter.throw(act.frames, error, fuel, max_frames)
                    continue
                if answer is SUSPEND:  # a local call pushed the callee's activation
                    act = self.act
                    act.dst = result.dst
                elif answer is PARK:  # waiting on another machine
                    self._park(result.dst)
                    return PARK
                elif answer is RESTART:  # a search went back to its checkpoint (search.py)
                    act = self.act
                    error = self.search_failure
                    if error is not None:
                        self.search_failure = None
                        result = act.interpreter.throw(act.frames, error, fuel, max_frames)
                        continue
                else:
                    act.frames[-1].regs[result.dst] = answer
                result = act.interpreter.run(act.frames, fuel, max_frames)
                continue
            elif kind is Ret:
                if len(stack) == 1:
                    self._pay_result(result.value, act)
                    return result.value
                act, error = self._returned(result.value), None
            elif result is PREEMPTED:
                return PREEMPTED  # type: ignore[return-value]  # frames stay resumable
            elif result is PARKED:  # a call performed in place went to another machine
                self._park(self.run.dst)  # type: ignore[union-attr]
                return PARK
            else:
                if len(stack) == 1 or result.error.fatal:
                    raise _Abandon(result.error, result)
                act, error = self._failed(result)
            if error is None:
                result = act.interpreter.run(act.frames, fuel, max_frames)
            else:  # a `call!` whose callee failed fails in the caller
                result = act.interpreter.throw(act.frames, error, fuel, max_frames)

    def perform_call(self, instruction: int, args: tuple[Value, ...], dst: int) -> object:
        """``call`` or ``call!`` performed in place by translated code (vm_translate), its
        charges paid, after `call_leaf` declined it: answers the value for the caller's
        register ``dst`` when the call completed at once (a remote call the transport
        answered); `CALLING` when the callee's activation was pushed (the caller suspends
        and has `run_callee` run it); `PARKED` when the call waits on another machine.
        Raises the `AvmError` the instruction fails with."""
        strict = self.leaf_calls.get(instruction)
        if strict is None:
            answer = self.handlers[instruction](self, args)
        else:  # its handler is `call`, which need not try the leaf call again
            answer = call(self, args, strict, leaf=False)
        if answer is SUSPEND:
            self.act.dst = dst
            return CALLING
        if answer is PARK:
            self.run.dst = dst  # type: ignore[union-attr]  # `_loop` parks the run
            return PARKED
        return answer

    def run_callee(self) -> object:
        """Run the local callee `perform_call` pushed, one level deep (its own calls are
        `Vis`), and complete it as `_loop` completes it; the caller is suspended after its
        EFFECT. Answers None once the answer is in the caller's register; otherwise what
        the caller's runner answers instead: the callee's `Vis` or `PREEMPTED` (the loop
        goes on with the callee), its fatal `Fault`, or the `AvmError` a `call!` fails
        with."""
        callee = self.act
        frames = callee.frames
        frame = frames[0]
        fuel = self.fuel
        self.calling = True
        try:
            # `Interpreter.run` without its call: nothing is preempted mid-run (no
            # `Fuel.ahead`), so the fresh frame's runner goes first, the trampoline after.
            result = frame.function.fast(frame, frames, fuel, self.options.max_frames)
            if type(result) is not Ret:
                result = callee.interpreter.go_on(result, frames, fuel, self.options.max_frames)
        finally:
            self.calling = False
        if type(result) is Ret:
            self._returned(result.value)
            return None
        if type(result) is Fault and not result.error.fatal:
            return self._failed(result)[1]
        return result

    def pay_walk(self, value: Value) -> None:
        """Charge the run for walking ``value`` as a tree (`walk_steps`), before it leaves
        the run to be printed, sent or stored: a value that shares itself over and over is
        cheap to build but not to encode, and fails here (FuelExhausted) instead of
        wedging whoever encodes it."""
        fuel = self.fuel
        steps = walk_steps(value, (fuel.remaining + fuel.reserve) // WALK_STEPS + 1)
        if fuel.remaining >= steps:  # paid in place (`Fuel.take` borrows from the reserve)
            fuel.remaining -= steps
        else:
            fuel.take(steps)

    def _pay_result(self, value: Value, act: Activation) -> None:
        """The run's value leaves it: printed, or sent as an answer (`pay_walk`)."""
        try:
            self.pay_walk(value)
        except AvmError as error:
            raise _Abandon(error, Fault(error, act.behavior, 0, 0, 0)) from None

    def _park(self, dst: int) -> None:
        """Set the executing run aside: its transaction and undo state leave with it."""
        run = self.run
        assert run is not None and self.request is not None
        run.request, self.request = self.request, None
        run.dst = dst
        journal = self.journal
        run.tx, run.world, run.journal_active = self.tx, journal.world, journal.active
        self.tx = None
        journal.world = None
        self.parked[run.number] = run
        self._leave()

    def _end(self) -> None:
        """The executing run is over: forget its undo entries (parked runs keep theirs). A
        run that joined a transaction leaves it open for the rest of it."""
        run = self.run
        assert run is not None
        run.entries.clear()
        run.stack = []
        if run.joined:
            assert self.tx is not None
            run.changed = self.tx.progress() != run.joined_at
            self.tx = self.journal.world = None
        self._leave()

    def _leave(self) -> None:
        """No run executes now: changes made between runs record no undo."""
        self.journal.entries = []
        self.journal.active = False
        self.run = None
        self.stack = []

    # ----------------------------------------------------------------- calls

    def enter(
        self,
        entry: BehaviorEntry,
        target: int,
        message: Value,
        machine: str,
        name: str,
        strict: bool = False,
    ):
        """Push the activation of a local call (spec §7.1 step 6); the loop runs it next.
        ``strict``: a `call!`, which answers the value itself or fails as the callee did."""
        caller = self.act
        stack = self.stack
        if len(stack) > self.options.max_depth:
            raise AvmError(ErrorKind.DEPTH_EXCEEDED, limit=self.options.max_depth)
        interpreter = entry.interpreter
        proc = interpreter.procs[entry.function]
        if proc.nparams != 1:
            interpreter.frame(entry.function, (message,))  # raises
        if proc.frame_steps:
            self.fuel.take(proc.frame_steps)  # its frame, like a CALL's
        call_id = self.call_ids
        self.call_ids = call_id + 1
        # Calling the __init__ of the frame, the duct link and the activation would cost
        # more than making them: made bare, every field their __init__ sets is set here.
        frame = new_object(Frame)
        frame.function = proc
        frame.pc = 0
        frame.regs = [message, *proc.rest]
        frame.handlers = []
        frame.result_reg = None
        frame.caught = None
        duct = new_object(DuctLink)
        duct.object_id = target
        duct.behavior = name
        duct.call_id = call_id
        duct.parent = caller.duct
        act = new_object(Activation)
        act.interpreter = interpreter
        act.frames = [frame]
        act.self_id = target
        act.input = message
        act.sender = caller.self_id
        act.machine = machine
        act.behavior = name
        act.duct = duct
        act.unreceived = True
        act.dst = 0
        act.strict = strict
        act.trace_mark = self.trace.clock
        if self.ours:
            journal = self.journal
            journal.active = True
            act.mark = len(journal.entries)
        else:
            act.mark = 0
        stack.append(act)
        self.act = act
        return SUSPEND

    def call_leaf(self, target: Value, message: Value, strict: bool) -> Value:
        """A call (``call``, or ``call!`` when ``strict``) outside any transaction, in
        profile ours, of a local object whose callee has a direct translation (a leaf: it
        calls nothing and catches nothing, `translate_direct`) runs to its end here, without
        an activation: answers what the caller's register gets, or `RETRY` when the call is
        not such a one or the callee did not simply return; `call` then makes it. The callee
        keeps its state writes to itself until it returns, so nothing but the fuel has to be
        put back then, and the call is made again as any other (`enter`), which does the
        same work and ends as it must. A behavior whose calls mostly go back to a frame (a
        clause that performs other instructions, say) is soon no longer tried
        (`Proc.leaf_credit`)."""
        if type(target) is not ObjectRef or self.tx is not None or not self.ours:
            return RETRY
        target = target.id
        store = self.store
        record = store.objects.get(target)
        caller = self.act
        # Routed as `call` routes it: nothing else is a local call that can be a leaf.
        if record is None or record.machine != caller.machine or store.locks:
            return RETRY
        name = record.behavior
        entry = self.registry.behaviors.get(name)
        if entry is None:
            return RETRY
        stack = self.stack
        proc = entry.interpreter.procs[entry.function]
        leaf = proc.direct  # it pays for the callee's frame itself
        if leaf is None or proc.leaf_credit <= 0 or len(stack) > self.options.max_depth:
            return RETRY
        fuel = self.fuel
        remaining, reserve, room = fuel.remaining, fuel.reserve, fuel.room
        done = leaf(fuel, self, target, message)
        if done is RETRY:
            fuel.remaining, fuel.reserve, fuel.room = remaining, reserve, room
            proc.leaf_credit -= 4  # a behavior whose calls mostly go back stops trying
            return RETRY
        if proc.leaf_credit < LEAF_CREDIT_MAX:
            proc.leaf_credit += 1
        value, writes = done
        call_id = self.call_ids
        self.call_ids = call_id + 1
        # Written as `set_state` writes outside a transaction: undoably unless nothing of
        # this run can be undone (at its base, where `_back_at_base` forgets the undo
        # entries at once). The trace keeps the writes and the call in one row.
        for state in writes:
            store.set_state(target, state)
        self.trace.record_call(target, name, call_id, caller.duct, message, value, writes)
        if len(stack) == 1:
            self._back_at_base(None)
        if strict:
            return value
        just = new_object(Just)  # as `Just(value)`, without its __init__
        just.value = value
        return just

    def next_call_id(self) -> int:
        self.call_ids += 1
        return self.call_ids - 1

    def _returned(self, value: Value) -> Activation:
        """Complete the top call, which answered ``value`` (spec §7.1 step 9); answers the
        caller, its register set."""
        stack = self.stack
        callee = stack.pop()
        caller = self.act = stack[-1]
        tx = self.tx
        self.trace.record(
            None if tx is None else tx.controller,
            callee.duct,
            ObjectCalled,
            callee.self_id,
            callee.input,
            value,  # never None: None stands for a failed call's output
        )
        if len(stack) == 1:
            self._back_at_base(None)
        caller.frames[-1].regs[callee.dst] = value if callee.strict else Just(value)
        return caller

    def _failed(self, fault: Fault) -> tuple[Activation, AvmError | None]:
        """Complete the top call, which failed with ``fault`` (spec §7.1 step 9): undo it.
        Answers the caller, and the error it fails with (a failed `call!`)."""
        stack = self.stack
        callee = stack.pop()
        caller = self.act = stack[-1]
        source = callee.interpreter.program.source_name
        failure = failure_of(fault.error, source, fault.line, fault.col)
        if self.ours:
            self.journal.unwind(callee.mark)
            self.trace.revert_from(callee.trace_mark)
        else:
            self.trace.drop_from(callee.trace_mark)
        self.emit_at(ObjectCalled(callee.self_id, callee.input, None, failure), callee.duct)
        if len(stack) == 1:
            self._back_at_base(failure)
        if callee.strict:
            return caller, CalleeFailed(failure)
        caller.frames[-1].regs[callee.dst] = NOTHING
        return caller, None

    def _back_at_base(self, failure: CallFailure | None) -> None:
        """A call of the base activation completed."""
        run = self.run
        run.failure = failure  # type: ignore[union-attr]  # as `note_call`
        if not run.undoable:  # type: ignore[union-attr]  # top level: nothing can be undone
            self.journal.active = False
            self.journal.entries.clear()

    def note_call(self, failure: CallFailure | None) -> None:
        """A call of the executing activation completed: the base activation's last one is
        remembered (a node tells `avm call` why its target failed)."""
        if len(self.stack) == 1:
            self.run.failure = failure  # type: ignore[union-attr]

    def _abandon(self, error: AvmError, fault: Fault | None) -> RunError:
        """Stop the run. A served call's effects are undone (ours), as any failed callee's;
        a fatal error also aborts the open transaction (it cannot finish)."""
        act = self.act
        run = self.run
        assert run is not None
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
        if run.undoable and self.ours:
            self.journal.unwind(0)
            self.trace.revert_from(run.stack[0].trace_mark)
        self._end()
        if error.fatal and self.tx is not None:
            tx = self.rollback()
            self.trace.emit(TransactionAborted(tx.id), None, None)
        return failure

    def abort_open_tx(self) -> int | None:
        """Abort a transaction a finished run left open (a node does, between runs, so it
        cannot leak into the next client's run); answers its id."""
        if self.run is not None or self.tx is None:
            return None
        tx = self.rollback()
        self.trace.emit(TransactionAborted(tx.id), None, None)
        return tx.id

    # ----------------------------------------------------------------- helpers for handlers

    def _pay(self, steps: int) -> None:
        """Charge the executing run ``steps`` of fuel for work a handler does (the solver)."""
        self.fuel.take(steps)

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

    def rollback(self, asked: frozenset[str] = frozenset()) -> Transaction:
        """Close the open transaction and put the world back as it was at begin (§8.7).
        Its parts on other nodes (and on ``asked``, nodes asked to prepare) are told to
        roll back too: for good, so should an undo reopen it, it can no longer commit."""
        tx = self.tx
        assert tx is not None
        self.set_tx(None)
        self.journal.restore_world(tx.world)
        if tx.participants or asked:
            tx.doomed = tx.doomed or "it was rolled back on the nodes it reached"
            self.decided.append((tx.id, False, frozenset(tx.participants | asked)))
        return tx

    def fence(self) -> None:
        """Nothing the executing run did so far can be undone any more: a commit across
        nodes is final, and so is what led to it (docs/transactions.md)."""
        self.journal.entries.clear()
        clock = self.trace.clock
        for act in self.stack:
            act.mark = 0
            act.trace_mark = clock


class _Abandon(Exception):
    """The run's base activation failed: carries the error to `_drive`."""

    def __init__(self, error: AvmError, fault: Fault | None = None) -> None:
        self.error = error
        self.fault = fault
