"""The register VM: runs Tape code on explicit frames, suspending at every AVM instruction.

A run works on the frame stack of one activation (a list of `Frame`, plain data). Pure ops
never leave `Interpreter.run`; CALL and RET push and pop frames on that list, so recursion
never grows the Python stack. An EFFECT returns `Vis` with the top frame suspended after it;
the runtime performs the instruction, writes the answer into the frame and calls `run` again
(or `throw` when the instruction failed). The exceptions: `call_pure`, which needs nothing
of the runtime but its table of pure functions (`Interpreter.registry`), which the VM
performs in place, with the runtime's charges (vm_translate, `Interpreter.answer_pure`),
leaving to the runtime only the cases where the instruction itself fails or its charge
cannot be paid; and, when a runtime runs this program (`Interpreter.host`), the
introspection instructions (`get_state`, `set_state`, `self`, ...), which the translated
code has the host's handlers perform without suspending, and object calls, whose local
callee the host runs one level deep before the caller goes on (`Runtime.perform_call`).

Each function is translated once, on its first run, into a specialised Python function
(`vm_translate`); `run` is the trampoline between them. The interpreter trusts a verified
program (`verify.verify`, which `bytecode.decode` runs): operands are in range, calls match
their callee, code never runs off its end, and a register of a declared type always holds a
value of that type, which lets typed operands skip their kind checks.

With the JIT (``jit`` "auto" or "on", `avm_vm.jit`), a function's runner may be native code
(`avm_vm.jit.native`); when it stops before an instruction it does not run, it answers
`DEOPT` and the trampoline runs that instruction's block carefully from the top frame's pc.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from avm_vm.errors import AvmError, ErrorKind, vm_error
from avm_vm.format.opcodes import INITIAL_VALUE
from avm_vm.format.program import Function, Program
from avm_vm.values import NOTHING, Value
from avm_vm.vm.frames import (
    CALLING,
    DEOPT,
    PARKED,
    PREEMPTED,
    Fault,
    Frame,
    Fuel,
    Ret,
    Vis,
    call_steps,
)
from avm_vm.vm.translate import (
    OUT_OF_FUEL,
    RETRY,
    block_starts,
    source_of,
    translate,
    translate_direct,
)

if TYPE_CHECKING:
    from avm_vm.jit.native import NativeRunner
    from avm_vm.jit.tiering import ProgramJit
    from avm_vm.runtime.core import Runtime
    from avm_vm.runtime.registry import Registry

__all__ = [
    "CALLING",
    "DEOPT",
    "JIT_MODES",
    "PARKED",
    "PREEMPTED",
    "Fault",
    "Frame",
    "Fuel",
    "Interpreter",
    "Proc",
    "Ret",
    "Vis",
]

JIT_MODES = ("off", "auto", "on")
# Instructions past which a function is translated block by block as it runs (`Proc`).
LARGE_FUNCTION = 20_000
# Steps a sliced run takes past its slice's end inside a pure call (which cannot stop); then
# it looks again.
SLICE_OVERRUN = 4096

# A behavior's first leaf calls that go back to a frame before the runtime stops trying
# (`Proc.leaf_credit`), and the most credit completed ones build up.
LEAF_CREDIT = 16
LEAF_CREDIT_MAX = 256

Runner = Callable[[Frame, list[Frame], Fuel, int], object]


class Proc:
    """A function of the program as the VM runs it (what `Frame.function` holds)."""

    __slots__ = (
        "careful_blocks",
        "direct",
        "fast",
        "frame_steps",
        "function",
        "hot_after",
        "index",
        "interpreter",
        "jit",
        "leaf_credit",
        "native",
        "nparams",
        "procs",
        "program",
        "rest",
        "resumes",
        "starts",
    )

    def __init__(self, index: int, function: Function, interpreter: Interpreter):
        self.index = index
        self.function = function
        self.nparams = function.nparams
        self.interpreter = interpreter  # its registry serves call_pure (vm_translate)
        self.program = interpreter.program
        self.procs = interpreter.procs
        # Initial values of the registers after the parameters: a call appends them.
        self.rest = [INITIAL_VALUE[t] for t in function.reg_types[function.nparams :]]
        self.frame_steps = call_steps(function)  # the size charge of a call of it
        self.starts = block_starts(function)
        self.fast: Runner = self._translate_fast  # replaced by the translation on first use
        # For call_pure (`Interpreter.answer_pure`): `translate_direct`, made on first use;
        # None once the function does not qualify.
        self.direct: Callable[..., object] | None = self._translate_direct
        # Leaf calls tried before giving up on them (`Runtime.call_leaf`): a call that went
        # back to a frame takes 4, one that completed gives 1 back.
        self.leaf_credit = LEAF_CREDIT
        self.careful_blocks: dict[int, Runner] = {}
        self.resumes: dict[int, Runner] = {}  # by pc: see `resume`
        self.jit: ProgramJit | None = None  # the program's JIT state, unless jit is off
        self.hot_after = 0  # > 0: the translation counts towards tiering up (vm_translate)
        self.native: NativeRunner | None = None  # set once the function runs natively

    @property
    def name(self) -> str:
        return self.function.name

    def careful(self, pc: int) -> Runner:
        """The careful translation of the block holding ``pc`` (fuel paid per instruction)."""
        start = self.starts[bisect_right(self.starts, pc) - 1]
        runner = self.careful_blocks.get(start)
        if runner is None:
            runner = self.careful_blocks[start] = translate(self, careful=start)
        return runner

    def resume(self, pc: int) -> Runner:
        """Careful code from ``pc``, an op a sliced run was preempted before because its
        charge exceeded the slice (`Fuel.ahead`), to the end of its block: that op runs
        without testing the slice again."""
        runner = self.resumes.get(pc)
        if runner is None:
            runner = self.resumes[pc] = translate(self, careful=pc, resume=True)
        return runner

    def source(self, careful: int | None = None) -> str:
        """The Python source of this function (or of the careful block starting at ``careful``)."""
        return source_of(self, careful)

    def _translate_fast(self, *args: object) -> object:
        large = len(self.function.code) > LARGE_FUNCTION
        self.fast = self._run_by_blocks if large else translate(self)
        return self.fast(*args)

    def _translate_direct(self, *args: object) -> object:
        large = len(self.function.code) > LARGE_FUNCTION  # see `_run_by_blocks`
        self.direct = None if large else translate_direct(self)
        return RETRY if self.direct is None else self.direct(*args)

    def _run_by_blocks(
        self, frame: Frame, frames: list[Frame], fuel: Fuel, max_frames: int
    ) -> object:
        """A large function runs one block at a time, each translated when first reached:
        translating it whole would cost time and memory out of proportion to the steps
        one call takes (CPython compiles a 200k-instruction function in seconds)."""
        return self.careful(frame.pc)(frame, frames, fuel, max_frames)

    def tier_up(self) -> None:
        """Called by the counting translation once this function is hot (see vm_translate)."""
        assert self.jit is not None
        self.jit.tier_up(self)

    def __repr__(self) -> str:
        return f"Proc({self.index}, {self.name!r})"


class Interpreter:
    """Runs the functions of one program; holds no state of any run, so runs may nest."""

    def __init__(self, program: Program, jit: str = "off") -> None:
        if jit not in JIT_MODES:
            raise ValueError(f"jit must be one of {', '.join(JIT_MODES)}, not {jit!r}")
        self.program = program
        self.jit = jit  # off | auto | on (avm_vm.jit)
        self.procs: list[Proc] = []
        self.procs.extend(Proc(i, f, self) for i, f in enumerate(program.functions))
        # Where the VM's call_pure finds a function by name (its ``pures``, vm_translate);
        # None: the runtime performs every call_pure.
        self.registry: Registry | None = None
        # The runtime running this program's behaviors: its handlers perform the
        # introspection instructions in place (vm_translate); None: every one is a `Vis`.
        self.host: Runtime | None = None
        self.jit_state: ProgramJit | None = None  # plans and compiled modules, unless off
        if jit != "off":
            from avm_vm.jit.tiering import ProgramJit  # only a JIT run pays for its import

            self.jit_state = ProgramJit(program, self.procs)
            self.jit_state.start(jit)

    def frame(self, function_index: int, args: Sequence[Value]) -> Frame:
        """A new base frame for function ``function_index`` called with ``args``."""
        proc = self.procs[function_index]
        if len(args) != proc.function.nparams:
            raise ValueError(
                f"{proc.name} takes {proc.function.nparams} arguments, not {len(args)}"
            )
        return Frame(proc, 0, [*args, *proc.rest], [], None)

    def run(self, frames: list[Frame], fuel: Fuel, max_frames: int = 100_000) -> Ret | Vis | Fault:
        """Run ``frames[-1]`` until the activation returns, performs an instruction or fails
        (or, when the fuel is sliced, answers `PREEMPTED` at the end of a slice or before an
        op whose charge exceeds what the slice has left).

        Every executed instruction costs one unit of fuel, a failing one included, plus
        its size charge (docs/semantics.md, "Resource limits"). On a
        Fault the frames are left as they were when the error happened, the top frame's pc
        at the failing instruction (for fuel: the one that found the budget empty).
        """
        frame = frames[-1]
        if fuel.ahead:  # preempted before an op's charge: that op goes first, whatever it costs
            fuel.ahead = False
            outcome = frame.function.resume(frame.pc)(frame, frames, fuel, max_frames)
        else:
            outcome = frame.function.fast(frame, frames, fuel, max_frames)
        if type(outcome) is Ret:
            return outcome
        return self.go_on(outcome, frames, fuel, max_frames)

    def go_on(
        self, outcome: object, frames: list[Frame], fuel: Fuel, max_frames: int
    ) -> Ret | Vis | Fault:
        """The trampoline of `run`, from the ``outcome`` of a runner that did not return
        `Ret` (`Runtime.perform_call` runs a callee's first runner itself)."""
        careful = False  # set once the fuel left no longer pays for a whole block
        while True:
            if outcome is None:  # a CALL or a RET: go on with the new top frame
                frame = frames[-1]
                proc = frame.function
                runner = proc.careful(frame.pc) if careful else proc.fast
                outcome = runner(frame, frames, fuel, max_frames)
                continue
            if outcome is DEOPT:  # native code left the top frame before its pc: run it here
                frame = frames[-1]
                outcome = frame.function.careful(frame.pc)(frame, frames, fuel, max_frames)
                continue
            if type(outcome) is Ret or type(outcome) is Vis or outcome is PREEMPTED:
                return outcome  # type: ignore[return-value]
            if type(outcome) is Fault or outcome is PARKED:  # from a call performed in place
                return outcome  # type: ignore[return-value]
            if outcome is OUT_OF_FUEL:
                outcome = None
                if fuel.reserve:  # a slice ran out, not the run's fuel
                    frame = frames[-1]
                    starts = frame.function.starts
                    block = bisect_right(starts, frame.pc) - 1
                    if starts[block] == frame.pc:
                        if fuel.preempt:
                            return PREEMPTED  # type: ignore[return-value]
                        fuel.refill(SLICE_OVERRUN)  # in a pure call: go on a little
                        careful = False
                    else:  # only careful code stops mid-block: pay to its end, stop there
                        last = block + 1 == len(starts)
                        end = len(frame.function.function.code) if last else starts[block + 1]
                        fuel.refill(end - frame.pc)
                        careful = True
                    continue
                if not careful:
                    careful = True
                    continue
                outcome = AvmError(ErrorKind.FUEL_EXHAUSTED, steps=fuel.limit)
            if outcome.kind is ErrorKind.FUEL_EXHAUSTED or fuel.remaining < 0:  # type: ignore[attr-defined]
                fuel.remaining = 0  # a failed size charge's block may have written back more
            fault = _unwind(frames, outcome)  # type: ignore[arg-type]
            if fault is not None:
                return fault
            outcome = None

    def throw(
        self, frames: list[Frame], error: AvmError, fuel: Fuel, max_frames: int = 100_000
    ) -> Ret | Vis | Fault:
        """Fail the suspended EFFECT with ``error``: its TRY handler runs, else a Fault."""
        frames[-1].pc -= 1  # the error belongs to the EFFECT, not to what follows it
        return _unwind(frames, error) or self.run(frames, fuel, max_frames)

    def answer_pure(
        self, function_index: int, args: tuple[Value, ...], fuel: Fuel, max_frames: int
    ) -> Value:
        """What `call_pure` answers (spec §6.6), once the instruction is paid for: the
        function's result as is; ``nothing`` when it declines (wrong arity, a failure).
        A fatal error is raised."""
        proc = self.procs[function_index]
        if len(args) != proc.nparams:
            return NOTHING
        direct = proc.direct
        # Native code, or a function counting towards it, runs on a frame.
        if direct is not None and proc.native is None and not proc.hot_after:
            remaining, reserve, room = fuel.remaining, fuel.reserve, fuel.room
            preempt, fuel.preempt = fuel.preempt, False  # as `_run_unpreempted`
            try:
                value = direct(fuel, *args)
            finally:
                fuel.preempt = preempt
            if value is not RETRY:
                return value
            fuel.remaining, fuel.reserve, fuel.room = remaining, reserve, room
        outcome = self._run_unpreempted(
            Frame(proc, 0, [*args, *proc.rest], [], None), fuel, max_frames
        )
        if type(outcome) is Ret:
            return outcome.value
        if type(outcome) is Fault and outcome.error.fatal:
            raise outcome.error
        return NOTHING  # a failure (the verifier keeps instructions out of pure functions)

    def call_function(
        self, function_index: int, args: Sequence[Value], fuel: Fuel, max_frames: int = 100_000
    ) -> Value:
        """Run a pure function to completion; its failure is raised as `AvmError`."""
        outcome = self._run_unpreempted(self.frame(function_index, args), fuel, max_frames)
        if type(outcome) is Ret:
            return outcome.value
        if type(outcome) is Fault:
            raise outcome.error
        name = self.procs[function_index].name
        raise vm_error(ErrorKind.TYPE_MISMATCH, f"pure function {name} performed an effect")

    def _run_unpreempted(self, frame: Frame, fuel: Fuel, max_frames: int) -> Ret | Vis | Fault:
        """Run the base frame of a pure call. A pure call is not preempted: its caller's
        slice stretches over it."""
        preempt, fuel.preempt = fuel.preempt, False
        try:
            return self.run([frame], fuel, max_frames)
        finally:
            fuel.preempt = preempt


def _unwind(frames: list[Frame], error: AvmError) -> Fault | None:
    """Hand ``error`` to the innermost TRY handler, popping the frames above it; a Fault when
    there is none or the error is fatal (the frames are then left untouched)."""
    if not error.fatal:
        for depth in range(len(frames) - 1, -1, -1):
            frame = frames[depth]
            if frame.handlers:
                del frames[depth + 1 :]
                frame.pc, register = frame.handlers.pop()
                frame.regs[register] = error.message
                frame.caught = error
                return None
    frame = frames[-1]
    lines = frame.function.function.lines
    line, col = lines[frame.pc] if frame.pc < len(lines) else (0, 0)
    return Fault(error, frame.function.name, frame.pc, line, col)
