"""When functions become native: the JIT's modes, its tiering policy and its limits.

``on`` compiles every function that has a plan (`analysis.plan_program`) before anything
runs. ``auto`` compiles a function once it is hot: the VM's translation of the function
counts its entries and its loop back-edges (`vm_translate`), and after `HOT_COUNT` of them
calls `ProgramJit.tier_up`. A hot function is compiled only when its plan runs at least
`MIN_DENSITY` of its instructions natively, so code full of boxed values (strings, lists,
messages) stays on the VM, where every native exit would only cost a round trip.

Compilation happens on the process's compile thread (`_Compiler`), never on the thread
running the VM: once hot, a function waits at most `FIRST_LOOK` for its code (what loading
it from the disk cache takes), then goes on in the VM while it compiles, polling every
`POLL_COUNT` counted events, and switches to its native runner at the first poll after the
code is ready (a block start, where VM and native code agree on the frame). ``on`` waits for
its compilations at most `Limits.budget` seconds; what is not ready then switches the same
way. `Limits` bounds what is compiled: a module (a function and its direct callees) larger
than ``max_instructions`` is never compiled, and once a program has spent ``budget``
seconds compiling, it compiles nothing more; such functions stay on the VM.

Compilation never breaks a run: any failure (an LLVM error, a bug in the lowering) leaves
the functions on the VM and is not retried. One `JitEngine` serves the whole process; it is
created on first use, with its on-disk cache in `engine.default_cache_dir()`.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

from avm_vm.format.program import Program
from avm_vm.vm.translate import translate

# The analysis, the lowering (llvmlite) and the native runners load when a function first
# gets hot: a run too short to tier up, the usual `avm run`, never pays for their import.
if TYPE_CHECKING:
    import queue

    from avm_vm.jit.analysis import NativePlan
    from avm_vm.jit.engine import JitEngine, NativeModule
    from avm_vm.jit.native import Layout
    from avm_vm.vm.interpreter import Proc

# Entries plus loop back-edges before a function is hot: about 10 ms of VM time, between a
# compilation found in the disk cache (a few ms) and a fresh one (0.05 to 0.5 s). Runs that
# short, such as almost every test, never compile.
HOT_COUNT = 10_000
# The least fraction of a function's instructions native code must run for auto mode to
# compile it.
MIN_DENSITY = 0.6
# Counted events between two looks at a compilation under way (about 1 ms of VM time).
POLL_COUNT = 1_000
# How long a function that just got hot waits for its code: enough for a disk cache hit
# (2 to 3 ms), which the compile thread, sharing the GIL with a busy VM, could otherwise
# take tens of milliseconds to finish.
FIRST_LOOK = 0.005
# The defaults of `Limits`. LLVM takes about 0.5 ms per instruction (a 1,000-instruction
# module: 0.5 s), more per instruction the larger the function (7,000 instructions: 6 s).
MAX_INSTRUCTIONS = 1_000
BUDGET_SECONDS = 1.0
# How long the compile thread waits for work before it ends (a new job starts it again).
IDLE_SECONDS = 30.0
# At exit, how long to let a compilation under way finish (LLVM must not be torn down
# under it); a module within the size limit takes about a second at most.
EXIT_WAIT = 10.0


class Limits(NamedTuple):
    """What the JIT compiles for one program: modules of at most ``max_instructions``
    instructions (``$AVM_JIT_MAX_INSTRUCTIONS``), for at most ``budget`` seconds of
    compilation in all (``$AVM_JIT_BUDGET``)."""

    max_instructions: int = MAX_INSTRUCTIONS
    budget: float = BUDGET_SECONDS

    @classmethod
    def from_environment(cls) -> Limits:
        return cls(
            int(_setting("AVM_JIT_MAX_INSTRUCTIONS", int, MAX_INSTRUCTIONS, "a whole number")),
            _setting("AVM_JIT_BUDGET", float, BUDGET_SECONDS, "a number of seconds"),
        )


def _setting(name: str, parse: Callable[[str], float], default: float, what: str) -> float:
    """An environment setting: unset or empty means ``default``; so does a bad value, with
    a warning (a tuning knob set wrong must not fail the runs)."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = parse(text)
    except ValueError:
        value = -1
    if not value >= 0:  # also refuses nan
        import logging  # only for this warning: a run's start-up need not load it

        logging.getLogger("avm.jit").warning(
            "%s must be %s (0 or more), not %r: using %g", name, what, text, default
        )
        return default
    return value


def worthwhile(plan: NativePlan, code_length: int) -> bool:
    """Whether native code runs enough of the function to be worth compiling in auto mode."""
    return plan.native_count >= MIN_DENSITY * code_length


def _compile(program: Program, plans: dict[int, NativePlan], roots: list[int]) -> NativeModule:
    """Compile ``roots`` (and their native callees) with the process's engine; only the
    compile thread calls this."""
    return _compiler.engine().compile(program, plans, roots)


class _Job:
    """Functions to compile for one program; ``done`` is set once ``modules`` is final."""

    __slots__ = ("dense_only", "done", "jit", "modules", "roots")

    def __init__(self, jit: ProgramJit, roots: list[int], dense_only: bool) -> None:
        self.jit = jit
        self.roots = roots
        self.dense_only = dense_only  # auto mode: compile (and install) only functions worth it
        self.modules: list[NativeModule] = []
        self.done = threading.Event()


class _Compiler:
    """The process's compile thread and its engine. Jobs run one at a time, in order; the
    thread ends after `IDLE_SECONDS` without work and starts again with the next job."""

    def __init__(self) -> None:
        # The jobs, where None stops the thread (the process exits). Made with the first
        # job: most runs never compile, and need not load the queue module.
        self.jobs: queue.Queue[_Job | None] | None = None
        self.lock = threading.Lock()  # guards ``thread`` and ``closed``
        self.thread: threading.Thread | None = None
        self.closed = False  # the process is exiting: no new compilation starts
        self._engine: JitEngine | None = None
        self.unfinished = 0  # jobs submitted and not done yet

    def engine(self) -> JitEngine:
        if self._engine is None:
            from avm_vm.jit.engine import JitEngine, default_cache_dir  # loads LLVM

            self._engine = JitEngine(default_cache_dir())
        return self._engine

    def submit(self, job: _Job) -> None:
        with self.lock:
            if self.closed:
                job.done.set()  # nothing compiled: the functions stay on the VM
                return
            if self.jobs is None:
                import queue

                self.jobs = queue.Queue()
            self.jobs.put(job)
            self.unfinished += 1
            if self.thread is None:
                self.thread = threading.Thread(target=self._serve, name="avm-jit", daemon=True)
                self.thread.start()

    def _serve(self) -> None:
        import queue

        jobs = self.jobs
        assert jobs is not None  # a job made it before the thread started
        while True:
            try:
                job = jobs.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self.lock:
                    if jobs.empty():
                        self.thread = None
                        return
                continue
            if job is None:
                return
            try:
                if not self.closed:
                    job.jit.build(job)
            finally:
                job.done.set()
                with self.lock:
                    self.unfinished -= 1

    def idle(self, timeout: float) -> bool:
        """Wait until no compilation is queued or under way (tests: a compilation left
        running by one test must not take the interpreter from the next)."""
        deadline = time.monotonic() + timeout
        while self.unfinished and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self.unfinished

    def close(self) -> None:
        """At exit: start nothing new, and let a compilation under way finish."""
        with self.lock:
            self.closed = True
            thread = self.thread
        if thread is not None and self.jobs is not None:
            self.jobs.put(None)
            thread.join(EXIT_WAIT)


_compiler = _Compiler()
atexit.register(_compiler.close)


class ProgramJit:
    """The JIT state of one program: its plans and the modules compiled for it."""

    def __init__(self, program: Program, procs: Sequence[Proc]) -> None:
        self.program = program
        self.procs = procs
        self.limits = Limits.from_environment()
        self._plans: dict[int, NativePlan] | None = None
        self.layouts: dict[int, Layout] = {}
        self.modules: list[NativeModule] = []  # compiled and installed so far, for reports
        self.pending: dict[int, _Job] = {}  # function index -> its compilation under way
        self.spent = 0.0  # seconds of compilation so far (the compile thread's count)

    @property
    def plans(self) -> dict[int, NativePlan]:
        if self._plans is None:
            from avm_vm.jit.analysis import plan_program

            try:
                self._plans = plan_program(self.program)
            except Exception:  # a bug in the analysis must not break the run: no JIT
                self._plans = {}
        return self._plans

    @property
    def compile_seconds(self) -> float:
        return sum(module.seconds for module in self.modules)

    def start(self, mode: str) -> None:
        """Attach to the program's functions: count (auto) or compile everything (on)."""
        for proc in self.procs:
            proc.jit = self
            # A function over the size limit by itself never compiles: it need not count.
            if mode == "auto" and len(proc.function.code) <= self.limits.max_instructions:
                proc.hot_after = HOT_COUNT
        if mode == "on" and self.plans:
            job = self._submit(sorted(self.plans), dense_only=False)
            if job.done.wait(self.limits.budget):
                self._settle(job)
            else:  # still compiling: the functions poll for their code as they run
                for index in job.roots:
                    self.procs[index].hot_after = POLL_COUNT

    def tier_up(self, proc: Proc) -> None:
        """Called by the counting translation: ``proc`` is hot, or polls its compilation."""
        job = self.pending.get(proc.index)
        if job is None:
            if proc.hot_after == 0 or proc.native is not None:
                return  # already decided (an older translation was still counting)
            job = self._submit([proc.index], dense_only=True)
            job.done.wait(FIRST_LOOK)
        if job.done.is_set():
            self._settle(job)
        elif proc.native is None:  # count again: the next poll comes after POLL_COUNT events
            proc.fast.__globals__["HEAT"] = POLL_COUNT  # type: ignore[attr-defined]

    def wait(self, timeout: float) -> bool:
        """Wait for the compilations under way and install what they made; False if some
        were not done within ``timeout`` seconds (for tests and reports)."""
        deadline = time.monotonic() + timeout
        for job in list(dict.fromkeys(self.pending.values())):
            if not job.done.wait(max(0.0, deadline - time.monotonic())):
                return False
            self._settle(job)
        return True

    def _submit(self, roots: list[int], dense_only: bool) -> _Job:
        job = _Job(self, roots, dense_only)
        for index in roots:
            self.pending[index] = job
        _compiler.submit(job)
        return job

    def size(self, roots: list[int]) -> int:
        """Instructions in the module for ``roots``: what `Limits.max_instructions` bounds."""
        from avm_vm.jit.lower import module_functions

        functions = module_functions(self.plans, roots)
        return sum(len(self.program.functions[f].code) for f in functions)

    def build(self, job: _Job) -> None:
        """On the compile thread: compile the job's roots (in one module when they fit in
        one, else one module each), within the limits; failures compile nothing."""
        plans = self.plans
        roots = [r for r in job.roots if r in plans]
        if job.dense_only:
            roots = [r for r in roots if worthwhile(plans[r], len(self.procs[r].function.code))]
        groups = [roots] if len(roots) > 1 else []
        groups += [[root] for root in roots]
        covered: set[int] = set()
        for group in groups:
            if covered.issuperset(group) or self.size(group) > self.limits.max_instructions:
                continue
            if self.spent >= self.limits.budget or _compiler.closed:
                return
            began = time.perf_counter()
            try:
                module = _compile(self.program, plans, group)
            except Exception:  # LLVM's or the lowering's failure: these stay on the VM
                continue
            finally:
                self.spent += time.perf_counter() - began
            job.modules.append(module)
            covered.update(module.functions)

    def _settle(self, job: _Job) -> None:
        """On the VM's thread, once ``job`` is done: install a runner for each compiled
        function that has none (in auto mode, callees only when worthwhile themselves);
        the job's other functions go on in the VM, no longer counting."""
        if any(self.pending.get(index) is job for index in job.roots):
            for index in job.roots:
                if self.pending.get(index) is job:
                    del self.pending[index]
            for module in job.modules:
                self._install_module(module, job)
        for index in job.roots:
            proc = self.procs[index]
            if proc.hot_after and proc.native is None:
                proc.hot_after = 0
                proc.fast = translate(proc)

    def _install_module(self, module: NativeModule, job: _Job) -> None:
        self.modules.append(module)
        for index in module.functions:
            proc = self.procs[index]
            plan = self.plans.get(index)
            if proc.native is not None or plan is None:
                continue
            if (
                job.dense_only
                and index not in job.roots
                and not worthwhile(plan, len(proc.function.code))
            ):
                continue
            self._install(proc, plan, module)

    def _install(self, proc: Proc, plan: NativePlan, module: NativeModule) -> None:
        from avm_vm.jit.native import Layout, NativeRunner

        for index in module.functions:
            if index not in self.layouts and index in self.plans:
                self.layouts[index] = Layout(self.program.functions[index], self.plans[index])
        runner = NativeRunner(
            proc, module.entry(proc.index), plan, module, self.layouts, module.max_nregs
        )
        proc.native = runner
        proc.hot_after = 0
        proc.fast = runner.run
