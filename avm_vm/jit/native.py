"""A compiled function as a VM runner: native code entered and left exactly as the VM would.

The trampoline (`avm_vm.vm.interpreter.Interpreter.run`) calls a function's runner as
``runner(frame, frames, fuel, max_frames)``. `NativeRunner.run` enters native code when the
frame's pc is a native entry and the live native registers hold what the plan speculates
(``type(v) is int`` for NAT, ``type(v) is bool`` for BOOL: a bool is not a nat); otherwise
the VM's own translation runs the frame. After native code:

- RETURNED: what the VM's RET does: pop the frame, hand the value to the caller's result
  register (or answer `Ret` for a base frame);
- EXITED: the registers, the pc and the fuel go back into the frame, one `Frame` is pushed
  per native callee that was running (abi.py's records), and the runner answers `DEOPT`: the
  trampoline then runs the top frame's block carefully from its pc, so the VM executes the
  instruction native code stopped before (raising the same error, performing the effect, ...).
  A frame that stopped inside a native call_pure gets the name native code never loaded.

When the module has native call_pures, the runner tells native code which of their names
the registry still binds as the program loaded them (``ctx.pures``), and lends it the run's
memory budget (``ctx.room``); native code never calls back into Python, and a pure function
changes no binding, so both hold for the whole native call.

Entering and leaving native code costs about what the VM takes for `ROUND_TRIP` instructions.
A runner keeps a credit: each native call adds the instructions it ran natively and takes
`ROUND_TRIP` away. When the credit runs out (native calls run too little between leaving and
coming back: a loop that touches a list every iteration, a tiny function called from VM
code) the function goes back to the VM for good (`Proc.native` is then None); native code
that calls it directly still does.

The context block and the record buffer are per thread (ctypes releases the GIL while native
code runs); they are reused across calls, since native code never calls back into Python.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from avm_vm.format.opcodes import INITIAL_VALUE, RegType
from avm_vm.jit.abi import RETURNED, JitContext
from avm_vm.values import NAT_MAX, Value
from avm_vm.vm.frames import DEOPT, Frame, Fuel, Ret
from avm_vm.vm.translate import loop_headers, translate

if TYPE_CHECKING:
    from avm_vm.format.program import Function
    from avm_vm.jit.analysis import NativePlan
    from avm_vm.jit.engine import NativeModule
    from avm_vm.vm.interpreter import Proc

# Nested direct native calls allowed per entry into native code: deeper recursion goes on
# after a round trip through the VM, which pushes the frames native code reports.
NATIVE_DEPTH = 1000
RECORDS_CAP = 1 << 16  # u64 words of the per-thread record buffer (512 KiB)
# A native call's own cost, in VM instructions (a few microseconds), and the most credit a
# runner saves up, so that a bad phase after a good one still sends it back to the VM.
ROUND_TRIP = 40
CREDIT_CAP = 200 * ROUND_TRIP


class _Scratch(threading.local):
    """This thread's context block and record buffer."""

    def __init__(self) -> None:
        self.context = JitContext()
        self.records = (ctypes.c_uint64 * RECORDS_CAP)()
        self.context.records = ctypes.cast(self.records, ctypes.POINTER(ctypes.c_uint64))
        self.context.records_cap = RECORDS_CAP
        self.pointer = ctypes.pointer(self.context)


_scratch = _Scratch()
_BOOL = int(RegType.BOOL)


class Layout:
    """Where a function's native registers are, the registers of a fresh frame, and the
    names of native call_pures a frame stopping at a pc must hold (`abi`)."""

    __slots__ = ("bools", "names", "nats", "template")

    def __init__(self, function: Function, plan: NativePlan) -> None:
        self.nats = tuple(r for r, t in enumerate(plan.reg_types) if t is RegType.NAT)
        self.bools = tuple(r for r, t in enumerate(plan.reg_types) if t is RegType.BOOL)
        self.template = [INITIAL_VALUE[t] for t in function.reg_types]
        names: dict[int, list[tuple[int, str]]] = {}
        for e, call in plan.pure_calls.items():
            for pc in range(call.name_pc + 1, e):  # after its LOADK, before its EFFECT
                names.setdefault(pc, []).append((call.name_reg, call.name))
        self.names = {pc: tuple(loaded) for pc, loaded in names.items()}

    def write_back(self, regs: list[Value], slots: ctypes.Array, pc: int) -> None:
        """Copy the native slots into ``regs`` as the VM's values (ints and bools), for a
        frame stopped at ``pc``."""
        values = slots[:]
        for r in self.nats:
            regs[r] = values[r]
        for r in self.bools:
            regs[r] = values[r] != 0
        self.name(regs, pc)

    def registers(self, slots: list[int], pc: int) -> list[Value]:
        """A native callee's registers at ``pc``: its native slots, the others as a call
        leaves them (native code never touches a non-native register of a callee it runs)."""
        regs = self.template.copy()
        for r in self.nats:
            regs[r] = slots[r]
        for r in self.bools:
            regs[r] = slots[r] != 0
        self.name(regs, pc)
        return regs

    def name(self, regs: list[Value], pc: int) -> None:
        """Load the names of the native call_pures under way at ``pc``."""
        for r, name in self.names.get(pc, ()):
            regs[r] = name


class NativeRunner:
    """Runs one function natively where its plan allows, through the VM elsewhere."""

    __slots__ = (
        "bindings",
        "credit",
        "depth_cap",
        "entries",
        "entry",
        "layout",
        "layouts",
        "module",
        "proc",
        "slots_type",
        "vm",
    )

    def __init__(
        self,
        proc: Proc,
        entry: Callable[..., int],
        plan: NativePlan,
        module: NativeModule,
        layouts: dict[int, Layout],
        max_nregs: int,
    ) -> None:
        self.proc = proc
        self.entry = entry
        self.module = module  # keeps the machine code alive as long as this runner
        self.layouts = layouts  # of every function whose frames native code may report
        self.layout = layouts[proc.index]
        kinds = {RegType.NAT: int, RegType.BOOL: bool}
        self.entries = {
            pc: tuple((r, kinds[t]) for r, t in live) for pc, live in plan.entries.items()
        }
        self.slots_type = ctypes.c_uint64 * proc.function.nregs
        self.depth_cap = min(NATIVE_DEPTH, RECORDS_CAP // (3 + max_nregs))
        self.vm: Callable[..., object] = self._translate_vm
        self.credit = CREDIT_CAP
        self.bindings = module.pure_bindings

    def _translate_vm(self, *args: object) -> object:
        """The VM's translation, made on first need; it hands the frame back to native code
        at the function's start and its loop headers (`vm_translate`)."""
        reenter = (loop_headers(self.proc.function) | {0}) & self.entries.keys()
        self.vm = translate(self.proc, reenter=frozenset(reenter))
        return self.vm(*args)

    def run(self, frame: Frame, frames: list[Frame], fuel: Fuel, max_frames: int) -> object:
        pc = frame.pc
        live = self.entries.get(pc)
        if live is None:
            return self.vm(frame, frames, fuel, max_frames)
        regs = frame.regs
        slots = self.slots_type()
        for r, kind in live:
            value = regs[r]
            if type(value) is not kind:  # the speculation does not hold here: the VM runs it
                return self.vm(frame, frames, fuel, max_frames)
            slots[r] = value
        scratch = _scratch
        context = scratch.context
        remaining = fuel.remaining
        excess = remaining - NAT_MAX if remaining > NAT_MAX else 0  # fuel beyond a u64
        context.fuel = remaining - excess
        depth = self.depth_cap
        room = max_frames - len(frames)  # frames the VM could still push
        if room < depth:
            depth = room if room > 0 else 0
        context.depth_left = depth
        if self.bindings:
            context.pures = self._bound()
            memory = fuel.room
            lent = min(max(memory, 0), NAT_MAX)
            context.room = lent
            status = self.entry(scratch.pointer, slots, pc)
            fuel.room = memory - lent + context.room
        else:
            status = self.entry(scratch.pointer, slots, pc)
        left = context.fuel
        fuel.remaining = left + excess
        credit = self.credit + remaining - excess - left - ROUND_TRIP
        if credit < 0:
            self._demote()
        self.credit = credit if credit < CREDIT_CAP else CREDIT_CAP
        if status == RETURNED:
            value = context.ret
            if context.ret_type == _BOOL:
                value = value != 0
            frames.pop()
            if frames:
                frames[-1].regs[frame.result_reg] = value  # type: ignore[index]
                return None
            return Ret(value)
        frame.pc = context.pc
        self.layout.write_back(regs, slots, frame.pc)
        if context.nrecords:
            self._push_records(frame, frames, scratch.records, context.nrecords)
        return DEOPT

    def _bound(self) -> int:
        """``ctx.pures``: the bindings of `bindings` the registry holds now."""
        interpreter = self.proc.interpreter
        registry = interpreter.registry
        if registry is None:  # no runtime: the VM leaves every call_pure to the runtime
            return 0
        pures = registry.pures
        bits = 0
        for call in self.bindings:
            entry = pures.get(call.name)
            if entry is not None and entry[0] is interpreter and entry[1] == call.callee:
                bits |= 1 << call.binding
        return bits

    def _demote(self) -> None:
        """Native calls from the VM cost more than they save: the VM runs the function."""
        proc = self.proc
        if proc.native is self:
            proc.native = None
            proc.fast = translate(proc)

    def _push_records(
        self, frame: Frame, frames: list[Frame], words: ctypes.Array, count: int
    ) -> None:
        """Push the frames of the native callees that were running, outermost first; each
        one's value goes to the A operand of the CALL its caller is suspended after."""
        records = []
        position = 0
        for _ in range(count):
            function, pc, nregs = words[position : position + 3]
            start = position + 3
            records.append((function, pc, words[start : start + nregs]))
            position = start + nregs
        procs = self.proc.procs
        caller = frame
        for function, pc, slots in reversed(records):
            result_reg = caller.function.function.code[caller.pc - 1][1]
            regs = self.layouts[function].registers(slots, pc)
            callee = Frame(procs[function], pc, regs, [], result_reg)
            frames.append(callee)
            caller = callee
