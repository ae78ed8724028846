"""When functions become native: the JIT's modes and its tiering policy for one program.

``on`` compiles every function that has a plan (`analysis.plan_program`) before anything
runs. ``auto`` compiles a function once it is hot: the VM's translation of the function
counts its entries and its loop back-edges (`vm_translate`), and after `HOT_COUNT` of them
calls `ProgramJit.tier_up`. A hot function is compiled only when its plan runs at least
`MIN_DENSITY` of its instructions natively, so code full of boxed values (strings, lists,
messages) stays on the VM, where every native exit would only cost a round trip. Either way
the function stops counting.

Compilation never breaks a run: any failure (an LLVM error, a bug in the lowering) leaves
the functions on the VM and is not retried. One `JitEngine` serves the whole process; it is
created on first use, with its on-disk cache in `engine.default_cache_dir()`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from avm_vm.format.program import Program
from avm_vm.jit.analysis import NativePlan, plan_program
from avm_vm.jit.native import Layout, NativeRunner
from avm_vm.vm.translate import translate

if TYPE_CHECKING:
    from avm_vm.jit.engine import JitEngine, NativeModule
    from avm_vm.vm.interpreter import Proc

# Entries plus loop back-edges before a function is hot: about 10 ms of VM time, between a
# compilation found in the disk cache (a few ms) and a fresh one (0.05 to 0.2 s). Runs that
# short, such as almost every test, never compile.
HOT_COUNT = 10_000
# The least fraction of a function's instructions native code must run for auto mode to
# compile it.
MIN_DENSITY = 0.6

_engine: JitEngine | None = None
_engine_lock = threading.Lock()  # one compilation at a time through the shared engine


def _compile(program: Program, plans: dict[int, NativePlan], roots: list[int]) -> NativeModule:
    """Compile ``roots`` (and their native callees) with the process's engine."""
    global _engine
    with _engine_lock:
        if _engine is None:
            from avm_vm.jit.engine import JitEngine, default_cache_dir  # loads LLVM

            _engine = JitEngine(default_cache_dir())
        return _engine.compile(program, plans, roots)


def worthwhile(plan: NativePlan, code_length: int) -> bool:
    """Whether native code runs enough of the function to be worth compiling in auto mode."""
    return plan.native_count >= MIN_DENSITY * code_length


class ProgramJit:
    """The JIT state of one program: its plans and the modules compiled for it."""

    def __init__(self, program: Program, procs: Sequence[Proc]) -> None:
        self.program = program
        self.procs = procs
        self._plans: dict[int, NativePlan] | None = None
        self.layouts: dict[int, Layout] = {}
        self.modules: list[NativeModule] = []  # compiled so far, for reports

    @property
    def plans(self) -> dict[int, NativePlan]:
        if self._plans is None:
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
            if mode == "auto":
                proc.hot_after = HOT_COUNT
        if mode == "on":
            roots = sorted(self.plans)
            if roots and not self._compile(roots, dense_only=False):
                for root in roots:  # one function the engine refuses keeps no other off
                    self._compile([root], dense_only=False)

    def tier_up(self, proc: Proc) -> None:
        """``proc`` is hot: compile it if its plan is worthwhile; it stops counting."""
        if proc.hot_after == 0:
            return  # already decided (an older translation was still counting)
        proc.hot_after = 0
        plan = self.plans.get(proc.index)
        if plan is not None and worthwhile(plan, len(proc.function.code)):
            self._compile([proc.index], dense_only=True)
        if proc.native is None:
            proc.fast = translate(proc)

    def _compile(self, roots: list[int], dense_only: bool) -> bool:
        """Compile ``roots`` and install a runner for each compiled function that has none
        (in auto mode, callees only when worthwhile themselves); False when it failed."""
        plans = self.plans
        try:
            module = _compile(self.program, plans, roots)
        except Exception:  # LLVM's or the lowering's failure: these functions stay on the VM
            return False
        self.modules.append(module)
        for index in module.functions:
            proc = self.procs[index]
            plan = plans.get(index)
            if proc.native is not None or plan is None:
                continue
            if dense_only and index not in roots and not worthwhile(plan, len(proc.function.code)):
                continue
            self._install(proc, plan, module)
        return True

    def _install(self, proc: Proc, plan: NativePlan, module: NativeModule) -> None:
        for index in module.functions:
            if index not in self.layouts and index in self.plans:
                self.layouts[index] = Layout(self.program.functions[index], self.plans[index])
        runner = NativeRunner(
            proc, module.entry(proc.index), plan, module, self.layouts, module.max_nregs
        )
        proc.native = runner
        proc.hot_after = 0
        proc.fast = runner.run
