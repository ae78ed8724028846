"""What a VM run works on and what it returns: frames, fuel and the three outcomes.

A frame is plain data (function, pc, registers, TRY handlers), so a suspended activation can
wait, be stored or move. `avm_vm.vm.interpreter` re-exports everything here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from avm_vm.errors import AvmError, ErrorKind, vm_error
from avm_vm.values import SIZE_UNIT, Value

if TYPE_CHECKING:
    from avm_vm.format.program import Function
    from avm_vm.vm.interpreter import Proc


# What a native runner (avm_vm.jit.native) answers when it stopped before an instruction it
# does not run: the top frame's pc is that instruction, which the trampoline runs next.
DEOPT = object()


# What `Interpreter.run` answers when a fuel slice ran out at a block start, or before an op
# whose size charge exceeds what the slice has left (then `Fuel.ahead` is set): the frames
# are left resumable there, and the run goes on when it is run again.
PREEMPTED = object()


# What `Interpreter.run` answers when an instruction its code had the runtime perform in
# place (a call, `Runtime.perform_call`) must wait on another machine: the run parks.
PARKED = object()


# What `Runtime.perform_call` answers when the call it performs for translated code did not
# complete at once: the callee's activation was pushed, and the caller, suspended after its
# EFFECT, has `Runtime.run_callee` run it.
CALLING = object()


# Bytes of values a run may build by default (`RuntimeOptions.max_value_bytes`).
DEFAULT_MAX_VALUE_BYTES = 256 << 20


def call_steps(callee: Function) -> int:
    """The size charge of a CALL of ``callee``: its frame sets up all its registers."""
    return callee.nregs // SIZE_UNIT


class Fuel:
    """A run's budgets: steps (one per executed instruction, plus the size charges of
    docs/semantics.md, "Resource limits") and ``room``, the bytes of values it may still
    build. Both are counted in value sizes, never measured, so a run fails the same way
    wherever it is run or replayed.

    A server can hand the VM its fuel in slices (`start_slice`): ``remaining`` then holds
    the slice and ``reserve`` the rest. When the slice runs out at a block start the VM
    answers `PREEMPTED` (with ``preempt`` set), so the server can serve others and go on
    later; slices never change what a run computes or how much fuel it uses. An op whose
    size charge exceeds what the slice has left is preempted before it does its work
    (``ahead`` set): when the run goes on, that op runs first, whatever the slice, paying
    with the reserve, so a long op runs where the server lets runs take their time."""

    __slots__ = ("ahead", "limit", "max_bytes", "preempt", "remaining", "reserve", "room")

    def __init__(self, limit: int, max_bytes: int = DEFAULT_MAX_VALUE_BYTES) -> None:
        self.limit = limit
        self.remaining = limit
        self.reserve = 0
        self.preempt = False
        self.ahead = False  # the run was preempted before an op its slice could not pay for
        self.max_bytes = max_bytes
        self.room = max_bytes

    @property
    def used(self) -> int:
        return self.limit - self.remaining - self.reserve

    def start_slice(self, size: int) -> None:
        """From now on, stop the run (`PREEMPTED`) after about ``size`` more steps."""
        total = self.remaining + self.reserve
        self.remaining = min(total, size)
        self.reserve = total - self.remaining
        self.preempt = True

    def refill(self, most: int | None = None) -> None:
        """Move ``most`` steps (None: all) of the reserve into the slice."""
        moved = self.reserve if most is None else min(self.reserve, most)
        self.remaining += moved
        self.reserve -= moved

    def take(self, steps: int) -> None:
        """Pay ``steps`` more at once (a size charge); raises FuelExhausted when the run's
        fuel cannot pay. A slice that cannot pay borrows from the reserve: charges never
        depend on where a slice ends."""
        self.remaining -= steps
        if self.remaining < 0:
            self.reserve += self.remaining
            self.remaining = 0
            if self.reserve < 0:
                self.reserve = 0
                raise AvmError(ErrorKind.FUEL_EXHAUSTED, steps=self.limit)

    def build(self, nbytes: int) -> None:
        """Count ``nbytes`` of values built; raises MemoryExhausted past the budget."""
        self.room -= nbytes
        if self.room < 0:
            raise memory_exhausted(self)


def memory_exhausted(fuel: Fuel) -> AvmError:
    return vm_error(
        ErrorKind.MEMORY_EXHAUSTED,
        f"the run built more than {fuel.max_bytes} bytes of values (--max-value-bytes)",
    )


class _Record:
    """Fields compared and shown as a dataclass's would be: plain classes, because creating
    a dataclass costs every process a millisecond of start-up."""

    __slots__ = ()
    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"


class Ret(_Record):
    """The activation's base frame returned ``value``."""

    __slots__ = ("value",)

    def __init__(self, value: Value) -> None:
        self.value = value


class Vis(_Record):
    """An AVM instruction to perform; the top frame is suspended after its EFFECT."""

    __slots__ = ("args", "dst", "instruction")

    def __init__(self, instruction: int, args: tuple[Value, ...], dst: int) -> None:
        self.instruction = instruction  # index into instructions.INSTRUCTIONS
        self.args = args
        self.dst = dst  # the answer goes to frames[-1].regs[dst] before run() resumes


class Fault(_Record):
    """The activation failed: no TRY handler took the error, or the error is fatal."""

    __slots__ = ("col", "error", "function", "line", "pc")

    def __init__(self, error: AvmError, function: str, pc: int, line: int, col: int) -> None:
        self.error = error
        self.function = function
        self.pc = pc
        self.line = line  # from the function's line table; 0 when unknown
        self.col = col


class Frame:
    """A running or suspended function activation: plain data."""

    __slots__ = ("caught", "function", "handlers", "pc", "regs", "result_reg")

    def __init__(
        self,
        function: Proc,
        pc: int,
        regs: list[Value],
        handlers: list[tuple[int, int]],
        result_reg: int | None,
    ) -> None:
        self.function = function
        self.pc = pc
        self.regs = regs
        self.handlers = handlers  # TRY stack: (handler pc, message register)
        self.result_reg = result_reg  # the caller's register for our value; None: base frame
        # The error a TRY handler of this frame took last: `else (err, kind)` reads its kind.
        self.caught: AvmError | None = None

    def __repr__(self) -> str:
        return f"Frame({self.function.name} pc={self.pc})"
