"""Translate one Tape function into a Python function: the VM's dispatch loop, specialised.

Each function becomes ``run(frame, frames, fuel, max_frames)``, which runs ``frame`` from
``frame.pc`` with its registers in Python locals ``r0 .. rN`` and returns to the trampoline
in `avm_vm.vm.interpreter` when control leaves the function:

- ``None``: CALL pushed a frame, RET popped this one (its value is in the caller's
  registers), or careful code left its block; the trampoline goes on with ``frames[-1]``;
- a `Ret` (the base frame returned) or a `Vis` (an EFFECT; the frame is suspended after it;
  a `call_pure` runs its callee in place instead, and the host runtime performs the
  introspection instructions and object calls in place, unless the runtime must perform
  them through its loop); after a call performed in place, the callee's own outcome when
  it did not simply return: its `Vis`, `PREEMPTED`, a fatal `Fault`, or `PARKED`;
- an `AvmError` raised by an op, to unwind (``frame.pc`` is the failing instruction);
- `OUT_OF_FUEL`: the next block needs more fuel than is left (``frame.pc`` is its start).

Every exit writes the registers back to ``frame.regs`` and the fuel counter to ``fuel``, so
frames stay plain data. The code is split into blocks, entered only at their first
instruction (pc 0, jump and handler targets, the instruction after a CALL or an EFFECT); a
``while`` loop dispatches on ``pc`` to block starts through a shallow tree of ``if`` tests
(jumps ``continue``; falling into the next block takes one test). Each block pays the fuel of
all its instructions on entry, and a conditional jump taken or an error gives back what the
block did not run, so fuel stays exact. An op whose work grows with its values (building,
printing or comparing strings and lists) also pays a size charge when it runs, and counts
the bytes it built in ``fuel.room`` (docs/semantics.md, "Resource limits"); a charge the
fuel left cannot pay fails the op. A block the fuel left cannot pay for sends the run to
*careful* code: each block has a careful translation, made when first needed, in which every
instruction is a block of its own and leaving the block returns ``None`` to the trampoline.
A CALL also pays for setting up the callee's registers (`call_steps`).

When the fuel is sliced (``fuel.preempt``), an op whose size charge exceeds what the slice has
left is stopped before it does its work: a cheap bound on the charge is tested first (a
walk, for printing or comparing values, goes no further than the slice's fuel), and when it
exceeds ``left`` the frame is left at the op, the fuel of the op and of the rest of its block
given back, ``fuel.ahead`` set, and `PREEMPTED` returned. The run goes on there through a
*resume* translation: the careful code of the rest of the block, without that test at its
first op, which therefore runs exactly once, paying with the reserve as it would unsliced.

Two options serve the JIT (`avm_vm.jit`). Tiering (``Proc.hot_after`` > 0): the entry block
and the loop headers (targets of backward jumps) each take one from a counter that starts at
``hot_after``; when it runs out, the block leaves the frame at its start and returns
``SELF.tier_up()``, which installs the function's next runner. Re-entry (``reenter``, for a
function that also has native code): reaching one of the given block starts, other than the
one the call began at, leaves the frame there and returns ``None``, so the trampoline hands
it back to native code (a loop that left native code once goes back at its next iteration).

A function that calls nothing and catches nothing also gets a *direct* translation
(`translate_direct`): it takes its arguments as parameters instead of a frame and answers its
result, and on anything but a plain return answers `RETRY`, so that the caller puts the fuel
back and runs it again on a frame (it wrote nothing meanwhile). `call_pure` runs pure
functions that way, and the runtime runs a behavior's clause that way when it only reads and
writes its own state (a *leaf call*, `Runtime.call_leaf`).

Only ints taken from the verified program reach the source text; constants, functions and
helpers are globals of the generated function.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

from avm_vm.errors import AvmError, ErrorKind, failed, vm_error
from avm_vm.format.instructions import BY_NAME, INSTRUCTIONS, Layer
from avm_vm.format.opcodes import OPCODES, Op, RegType
from avm_vm.format.program import FunctionKind
from avm_vm.values import (
    BOX_BYTES,
    EFFECT_STEPS,
    ITEM_BYTES,
    LISTS,
    NAT_MAX,
    NESTING,
    NOTHING,
    SIZE_UNIT,
    WALK_STEPS,
    Just,
    Kind,
    ListView,
    ObjectRef,
    Pair,
    Value,
    compare_within,
    kind_of,
    render_within,
    walk_steps,
)
from avm_vm.vm import ops
from avm_vm.vm.frames import (
    CALLING,
    PARKED,
    PREEMPTED,
    Frame,
    Fuel,
    Ret,
    Vis,
    call_steps,
    memory_exhausted,
)

if TYPE_CHECKING:
    from avm_vm.format.program import Function
    from avm_vm.vm.interpreter import Interpreter, Proc

_FANOUT = 4  # block starts tested per level of the dispatch tree
# Register types whose values Python's == compares exactly like values_equal (same kind).
_SCALARS = {RegType.NAT: "int", RegType.BOOL: "bool", RegType.STR: "str"}

# Ops that end a block: control never falls through them (CALL and EFFECT resume at the next
# instruction, a block start). A conditional jump stays inside its block: when taken, it gives
# back the fuel of the block's instructions after it.
_BLOCK_ENDS = frozenset({Op.JMP, Op.RET, Op.FAIL, Op.CALL, Op.EFFECT})
# Ops that may pay a size charge (docs/semantics.md, "Resource limits"): a charge the run
# cannot pay fails at the op, so the op's pc must be known.
_CHARGED = frozenset(
    {
        Op.CONCAT, Op.APPEND, Op.SLICE, Op.DROP, Op.MKLIST, Op.MKPAIR, Op.MKJUST, Op.TOSTR,
        Op.SETFIELD, Op.EQ, Op.NE, Op.LT, Op.LE, Op.GT, Op.GE, Op.FAIL, Op.CALL,
    }
)  # fmt: skip


class OutOfFuel(Exception):
    """Raised at the start of a block the remaining fuel cannot pay for."""


OUT_OF_FUEL = object()  # what a translated function returns after an OutOfFuel
RETRY = object()  # what a direct translation returns when it cannot finish (`translate_direct`)
# Ops a direct translation cannot run: they need the frame.
_NOT_DIRECT = frozenset({Op.CALL, Op.TRY, Op.ENDTRY})
# The instructions a direct translation performs itself, for the object it runs as a leaf
# call (`translate_direct`); it gives up at any other EFFECT.
_GET_STATE, _SET_STATE, _SELF = (
    BY_NAME[name].number for name in ("get_state", "set_state", "self")
)
_LEAF_EFFECTS = frozenset({_GET_STATE, _SET_STATE, _SELF})


class Ahead(Exception):
    """Raised before an op whose size charge exceeds what the fuel slice has left."""


_CALL_PURE = BY_NAME["call_pure"].number
# The introspection layer (self, input, sender, current_machine, get_state, set_state): its
# handlers answer at once, never suspending the activation, so the host performs them in
# place (`_Translator.in_place`).
_IN_PLACE = frozenset(i.number for i in INSTRUCTIONS if i.layer is Layer.INTROSPECT)
# Object calls, which the host performs in place too (`_Translator.call_in_place`).
_CALL_UNWRAP = BY_NAME["call_unwrap"].number
_CALLS = frozenset({BY_NAME["call"].number, _CALL_UNWRAP})


def _sized(value: Value) -> int:
    """The items or characters of a list or string, else 0: what an op building a list or
    string from ``value`` charges for, known before it runs."""
    t = type(value)
    return len(value) if t is str or t is tuple or t is ListView else 0  # type: ignore[arg-type]


# States of at most this many fields are rebuilt item by item by SETFIELD, not by slicing.
_SPELLED_FIELDS = 8

# Whether a program drops or slices: only then may its registers hold a `ListView`, which
# its code turns into a tuple wherever a value leaves a register (`_Translator.item`).
_VIEWS: WeakKeyDictionary[Interpreter, bool] = WeakKeyDictionary()


def _makes_views(vm: Interpreter) -> bool:
    views = _VIEWS.get(vm)
    if views is None:
        ops = (Op.DROP, Op.SLICE)
        code = (instr for function in vm.program.functions for instr in function.code)
        views = _VIEWS[vm] = any(instr[0] in ops for instr in code)
    return views


def _depth_exceeded(limit: int) -> AvmError:
    return AvmError(ErrorKind.DEPTH_EXCEEDED, limit=limit)


def _end_try(handlers: list[tuple[int, int]]) -> None:
    if not handlers:
        raise vm_error(ErrorKind.TYPE_MISMATCH, "ENDTRY without an active TRY")
    handlers.pop()


def _checked(instr: tuple) -> tuple:
    """The instruction, once every operand is an int (or a tuple of ints): nothing else may
    reach the generated source."""
    for operand in instr[1:]:
        for item in operand if type(operand) is tuple else (operand,):
            if type(item) is not int:
                raise ValueError(f"bad operand {item!r} in {instr!r}")
    return instr


def _bad_pc(pc: int) -> ValueError:
    return ValueError(f"no instruction starts a block at pc {pc}")


# Size charges. Translated code keeps the fuel left in a local, ``left``, and counts bytes
# built in ``fuel.room``; these helpers settle both when a charge overdraws either.


def _overdraw(fuel: Fuel, left: int) -> int:
    """A charge took ``left`` or the memory budget below zero: the fuel left once the
    reserve paid, else MemoryExhausted or FuelExhausted."""
    if fuel.room < 0:
        raise memory_exhausted(fuel)
    fuel.remaining = left
    fuel.take(0)
    return fuel.remaining


def _tostr(value: Value, fuel: Fuel, left: int, guard: bool) -> tuple[str, int]:
    """``str(value)`` and the fuel left after its charge: rendering never builds a text the
    budgets could not pay for. With ``guard`` and the fuel sliced, raises Ahead when the
    charge exceeds the slice's ``left``."""
    if type(value) is str:
        return value, left
    if type(value) is int:  # the common case, without a walk (render_within's cost)
        text: str | None = str(value)
        cost = len(text) // SIZE_UNIT  # type: ignore[arg-type]
    else:
        sliced = guard and fuel.preempt
        budget = left if sliced else left + fuel.reserve
        text, cost = render_within(value, budget, fuel.room - BOX_BYTES)
        if sliced and text is None and cost > left:
            raise Ahead
    left -= cost
    if text is None:
        if left + fuel.reserve >= 0:  # stopped by the memory budget, not the fuel
            fuel.room = -1
        return "", _overdraw(fuel, left)  # raises
    fuel.room -= BOX_BYTES + len(text)
    if left < 0 or fuel.room < 0:
        left = _overdraw(fuel, left)
    return text, left


def _equal(x: Value, y: Value, fuel: Fuel, left: int, guard: bool) -> tuple[bool, int]:
    """``values_equal(x, y)`` and the fuel left after its charge (``guard``: as `_tostr`)."""
    sliced = guard and fuel.preempt
    same, cost = compare_within(x, y, left if sliced else left + fuel.reserve)
    if sliced and cost > left:
        raise Ahead
    if cost:
        left -= cost
        if left < 0:
            left = _overdraw(fuel, left)
    return same, left


# The globals every translated function sees; the translator adds constants and callees.
_HELPERS: dict[str, object] = {
    "AvmError": AvmError,
    "OutOfFuel": OutOfFuel,
    "OUT_OF_FUEL": OUT_OF_FUEL,
    "Ahead": Ahead,
    "PREEMPTED": PREEMPTED,
    "RETRY": RETRY,
    "CALLING": CALLING,
    "PARKED": PARKED,
    "sized": _sized,
    "Frame": Frame,
    "new_object": object.__new__,
    "Ret": Ret,
    "Vis": Vis,
    "Pair": Pair,
    "Just": Just,
    "ObjectRef": ObjectRef,
    "NOTHING": NOTHING,
    "walk_steps": walk_steps,
    "NESTING": NESTING,
    "ListView": ListView,
    "LISTS": LISTS,
    "Kind": Kind,
    "kind_of": kind_of,
    "overdraw": _overdraw,
    "tostr": _tostr,
    "equal": _equal,
    "failed": failed,
    "depth_exceeded": _depth_exceeded,
    "end_try": _end_try,
    "bad_pc": _bad_pc,
    **{name: getattr(ops, name) for name in ops.__all__},
}


def block_starts(function: Function, direct: bool = False) -> list[int]:
    """Where the blocks of ``function`` start, in order. A ``direct`` translation never
    suspends at an EFFECT, so one does not end its block there: its blocks only pay their
    fuel earlier, and when that makes one fail, its caller runs the function on a frame."""
    code = function.code
    starts = {0}
    ends = _BLOCK_ENDS - {Op.EFFECT} if direct else _BLOCK_ENDS
    for pc, (op, *operands) in enumerate(code):
        if op in ends:
            starts.add(pc + 1)
        if op in (Op.JMPT, Op.JMPF, Op.TRY):
            starts.add(operands[1])
        elif op is Op.JMP:
            starts.add(operands[0])
    return sorted(start for start in starts if start < len(code))


def loop_headers(function: Function) -> frozenset[int]:
    """The targets of backward jumps: where every loop of ``function`` starts again."""
    return frozenset(
        operands[-1]
        for pc, (op, *operands) in enumerate(function.code)
        if op in (Op.JMP, Op.JMPT, Op.JMPF) and operands[-1] <= pc
    )


def translate(
    proc: Proc,
    careful: int | None = None,
    reenter: frozenset[int] = frozenset(),
    resume: bool = False,
) -> Callable[..., object]:
    """The Python function running ``proc``; with ``careful``, only the block from there
    to its end, one instruction at a time; ``reenter`` and ``resume`` (with ``careful``):
    see the module docstring."""
    source, namespace = _Translator(proc, careful, reenter, resume).source()
    where = "" if careful is None else f" {'resume' if resume else 'careful'} at {careful}"
    code = compile(source, f"<avm {proc.name!r}{where}>", "exec")
    exec(code, namespace)  # the source holds only ints from the verified program
    return namespace["run"]  # type: ignore[return-value]


def translate_direct(proc: Proc) -> Callable[..., object] | None:
    """A function that calls nothing and catches nothing, as a Python function taking its
    arguments: its registers start as arguments and initial values, not as a frame, and it
    answers its result itself (no `Ret`). It charges fuel and memory as the frame's
    translation does; when that would go anywhere but to a plain return (a failure, fuel
    running out before a block), it answers `RETRY` and leaves the fuel however far it
    got: the caller puts the fuel back and runs the function on a frame instead, which
    does the same work again and ends as it must. It counts nothing towards tiering up.
    None when the function does not qualify.

    A pure function (`call_pure`) is ``run(fuel, *args)``. A behavior is ``run(fuel, host,
    self_id, message)`` and runs as a *leaf call* (`Runtime.call_leaf`), outside any
    transaction, for the object ``self_id``: it pays for its frame first (as `Runtime.enter`
    charges a call), performs `get_state`, `set_state` and `self` with the handlers'
    charges, but keeps the states it writes to itself, and answers its result with them, in
    order, for ``host`` (the runtime) to write; reaching any other instruction answers
    `RETRY`, so a clause that performs one runs on a frame."""
    function = proc.function
    if function.kind is FunctionKind.MAIN or any(i[0] in _NOT_DIRECT for i in function.code):
        return None
    if function.kind is FunctionKind.BEHAVIOR and function.nparams != 1:
        return None  # its calls fail as they set up its frame
    source, namespace = _Translator(proc, None, frozenset(), False, direct=True).source()
    code = compile(source, f"<avm {proc.name!r} direct>", "exec")
    exec(code, namespace)  # the source holds only ints from the verified program
    return namespace["run"]  # type: ignore[return-value]


def source_of(proc: Proc, careful: int | None = None) -> str:
    """The generated source, for reading and debugging."""
    return _Translator(proc, careful, frozenset(), False).source()[0]


class _Translator:
    def __init__(
        self,
        proc: Proc,
        careful: int | None,
        reenter: frozenset[int],
        resume: bool,
        direct: bool = False,
    ) -> None:
        self.proc = proc
        self.direct = direct  # see `translate_direct`
        self.leaf = direct and proc.function.kind is FunctionKind.BEHAVIOR
        # The bytes values may still take: a local of a direct run, which writes it back
        # when it returns (on `RETRY` the caller puts the fuel back anyway).
        self.room = "room" if direct else "fuel.room"
        self.function = proc.function
        self.program = proc.program
        self.types = proc.function.reg_types
        self.careful = careful is not None
        self.unguarded = careful if resume else -1  # the op a resume translation runs first
        starts = block_starts(self.function, direct=True) if direct else proc.starts
        if careful is None:
            ends = [*starts[1:], len(self.function.code)]
            self.blocks = list(zip(starts, ends, strict=True))
        else:  # one block's rest: found by bisection, so its cost does not grow with the code
            after = bisect_right(starts, careful)
            end = starts[after] if after < len(starts) else len(self.function.code)
            self.blocks = [(pc, pc + 1) for pc in range(careful, end)]
        self.lines: list[str] = []
        self.depth = 0
        self.end = 0  # end of the block being translated
        self.namespace: dict[str, object] = {**_HELPERS, "SELF": proc}
        self.reenter = reenter
        self.views = _makes_views(proc.interpreter)
        self.counted: frozenset[int] = frozenset()  # blocks that count towards tiering
        if careful is None and proc.hot_after > 0 and not direct:
            self.counted = loop_headers(self.function) | {0}
            self.namespace["HEAT"] = proc.hot_after

    # -- output

    def emit(self, *lines: str) -> None:
        self.lines.extend("    " * self.depth + line for line in lines)

    @contextmanager
    def block(self, header: str) -> Iterator[None]:
        self.emit(header)
        self.depth += 1
        yield
        self.depth -= 1

    def source(self) -> tuple[str, dict[str, object]]:
        if self.direct:
            return self.direct_source()
        with self.block("def run(frame, frames, fuel, max_frames):"):
            if self.counted:
                self.emit("global HEAT")
            if self.types:
                self.emit(f"{self.all_regs()}, = frame.regs")
            self.emit("left = fuel.remaining", "pc = frame.pc")
            if self.reenter:
                self.emit("entered = pc")
            if self.hosted():
                # Whether the host runs this activation (and whether a callee of it runs
                # in place) cannot change while this runner runs: tested once.
                self.namespace["VM"] = self.proc.interpreter
                self.emit("host = VM.host")
                tests = "host is not None and host.run is not None and host.act.frames is frames"
                self.emit(f"here = {tests}", "calls = here and not host.calling")
            with self.block("try:"):
                with self.block("while True:"):
                    self.dispatch(self.blocks)
                    # Careful code covers one block: outside it, the trampoline goes on.
                    self.emit("break" if self.careful else "raise bad_pc(pc)")
                if self.careful:
                    self.spill()
                    self.emit("frame.pc = pc", "fuel.remaining = left", "return None")
            if not self.careful:
                ends = [0] * len(self.function.code)
                for start, end in self.blocks:
                    ends[start:end] = [end] * (end - start)
                self.namespace["END"] = tuple(ends)
            with self.block("except AvmError as error:"):
                self.spill()
                self.emit("frame.pc = pc")
                # Give back the instructions of the block after the failing one.
                self.emit("fuel.remaining = left" + ("" if self.careful else " + END[pc] - pc - 1"))
                self.emit("return error")
            with self.block("except Ahead:"):  # the op at pc runs later: give back its fuel too
                self.spill()
                self.emit("frame.pc = pc", "fuel.ahead = True")
                self.emit("fuel.remaining = left + " + ("1" if self.careful else "END[pc] - pc"))
                self.emit("return PREEMPTED")
            with self.block("except OutOfFuel:"):
                self.spill()
                self.emit("frame.pc = pc", "fuel.remaining = left", "return OUT_OF_FUEL")
        return "\n".join(self.lines) + "\n", self.namespace

    def direct_source(self) -> tuple[str, dict[str, object]]:
        """`translate_direct`: the registers after the parameters default to their
        initial values."""
        nparams = self.function.nparams
        self.namespace["INIT"] = self.proc.rest
        registers = [f"r{n}" for n in range(nparams)]
        registers += [f"r{n}=INIT[{n - nparams}]" for n in range(nparams, len(self.types))]
        context = ["host", "self_id"] if self.leaf else []
        with self.block(f"def run({', '.join(['fuel', *context, *registers])}):"):
            # A leaf call pays for the callee's frame first, as `Runtime.enter` does.
            steps = self.proc.frame_steps if self.leaf else 0
            self.emit(f"left = fuel.remaining - {steps}" if steps else "left = fuel.remaining")
            self.emit("room = fuel.room", "pc = 0")
            if self.leaf:
                self.emit("writes = []")  # the states set, written when it returns
            with self.block("try:"), self.block("while True:"):
                self.dispatch(self.blocks)
                self.emit("raise bad_pc(pc)")
            with self.block("except (AvmError, Ahead, OutOfFuel):"):
                self.emit("return RETRY")
        return "\n".join(self.lines) + "\n", self.namespace

    def dispatch(self, blocks: list[tuple[int, int]]) -> None:
        """Test ``pc`` against block starts: a tree of ``pc <`` tests, leaves ``pc ==``."""
        if len(blocks) <= _FANOUT:
            for start, end in blocks:
                with self.block(f"if pc == {start}:"):
                    self.translate_block(start, end)
            return
        size = -(-len(blocks) // _FANOUT)
        for first in range(0, len(blocks), size):
            group = blocks[first : first + size]
            with self.block(f"if pc < {group[-1][1]}:"):
                self.dispatch(group)

    def translate_block(self, start: int, end: int) -> None:
        self.end = end
        count = end - start
        if start in self.counted:
            self.emit("HEAT -= 1")
            with self.block("if not HEAT:"):
                self.leave(start, "SELF.tier_up()")
        if start in self.reenter:
            with self.block(f"if entered != {start}:"):
                self.leave(start, "None")
        # A leaf pays its state instructions' steps and boxes with the block's: where it
        # would run short, all it does is go back to a frame (`leaf_effect`).
        effects = self.leaf_effects(start, end)
        steps, room = count + EFFECT_STEPS * effects, BOX_BYTES * effects
        with self.block(f"if left < {steps}" + (f" or room < {room}:" if room else ":")):
            self.emit("raise OutOfFuel")
        self.emit(f"left -= {steps}")
        if room:
            self.emit(f"room -= {room}")
        code = self.function.code
        for pc in range(start, end):
            op, *operands = _checked(code[pc])
            where = OPCODES[op].may_fail or op is Op.ENDTRY or op in _CHARGED
            if where and pc != start and not self.direct:  # a direct run does not say where
                self.emit(f"pc = {pc}")  # where an error happened
            getattr(self, f"op_{op.name.lower()}")(pc, *operands)
        last = code[end - 1][0]
        if last not in _BLOCK_ENDS or (self.direct and last is Op.EFFECT):
            self.emit(f"pc = {end}")  # fall through to the next block

    # -- names

    def all_regs(self) -> str:
        return ", ".join(f"r{n}" for n in range(len(self.types)))

    def spill(self) -> None:
        self.emit(f"frame.regs = [{self.all_regs()}]")

    def leave(self, start: int, outcome: str) -> None:
        """Leave the frame at the start of a block (nothing of it run yet), answering
        ``outcome`` to the trampoline."""
        self.spill()
        self.emit(f"frame.pc = {start}", "fuel.remaining = left", f"return {outcome}")

    def const(self, k: int) -> str:
        value = self.program.constants[k]
        if type(value) is int or type(value) is bool:
            return repr(value)
        self.namespace[f"K{k}"] = value
        return f"K{k}"

    def is_(self, r: int, *types: RegType) -> bool:
        return self.types[r] in types

    def check(self, r: int, typename: str, known: RegType) -> list[str]:
        """The test that ``r`` holds a ``typename``, unless its register type says so."""
        return [] if self.types[r] is known else [f"type(r{r}) is {typename}"]

    def fast_or(self, a: int, tests: list[str], fast: str, slow: str) -> None:
        """``r{a} := fast`` when every test holds, else ``slow`` (which may raise)."""
        if tests:
            with self.block(f"if {' and '.join(tests)}:"):
                self.emit(f"r{a} = {fast}")
            with self.block("else:"):
                self.emit(f"r{a} = {slow}")
        else:
            self.emit(f"r{a} = {fast}")

    # -- ops; operands in Op order after the pc (see opcodes.OPCODES)

    def op_move(self, pc: int, a: int, b: int) -> None:
        self.emit(f"r{a} = r{b}")

    def op_loadk(self, pc: int, a: int, k: int) -> None:
        self.emit(f"r{a} = {self.const(k)}")

    def arith(self, a: int, b: int, c: int, helper: str, test: str, fast: str) -> None:
        """Checked nat arithmetic: ``fast`` when the operands are nats and ``test`` holds
        (it checks the result ``v`` or the divisor), else the helper, which raises."""
        if not self.is_(b, RegType.NAT, RegType.ANY) or not self.is_(c, RegType.NAT, RegType.ANY):
            self.emit(f"r{a} = {helper}(r{b}, r{c})")  # always a type error
            return
        tests = [*self.check(b, "int", RegType.NAT), *self.check(c, "int", RegType.NAT), test]
        self.fast_or(a, tests, fast, f"{helper}(r{b}, r{c})")

    def op_add(self, pc: int, a: int, b: int, c: int) -> None:
        self.arith(a, b, c, "add", f"(v := r{b} + r{c}) <= {NAT_MAX}", "v")

    def op_sub(self, pc: int, a: int, b: int, c: int) -> None:
        self.arith(a, b, c, "sub", f"(v := r{b} - r{c}) >= 0", "v")

    def op_mul(self, pc: int, a: int, b: int, c: int) -> None:
        self.arith(a, b, c, "mul", f"(v := r{b} * r{c}) <= {NAT_MAX}", "v")

    def op_div(self, pc: int, a: int, b: int, c: int) -> None:
        self.arith(a, b, c, "div", f"r{c} != 0", f"r{b} // r{c}")

    def op_mod(self, pc: int, a: int, b: int, c: int) -> None:
        self.arith(a, b, c, "mod", f"r{c} != 0", f"r{b} % r{c}")

    def charge(self, steps: str | None, nbytes: str | None) -> None:
        """Pay a size charge: ``steps`` more fuel and ``nbytes`` of values built."""
        tests = []
        if steps is not None:
            self.emit(f"left -= {steps}")
            tests.append("left < 0")
        if nbytes is not None:
            self.emit(f"{self.room} -= {nbytes}")
            tests.append(f"{self.room} < 0")
        with self.block(f"if {' or '.join(tests)}:"):
            # A direct run does not settle a shortfall: on a frame, the same charge does.
            self.emit("raise OutOfFuel" if self.direct else "left = overdraw(fuel, left)")

    def guarded(self, pc: int) -> bool:
        """Whether the op at ``pc`` tests its charge against the fuel slice."""
        return pc != self.unguarded

    def ahead(self, pc: int, steps: str) -> None:
        """Before an op whose size charge is at most ``steps``: stop when the fuel is sliced
        and the slice has less left (Ahead). A direct run tests nothing before: whatever
        the charge, its shortfall sends the call back to a frame (`charge`)."""
        if self.guarded(pc) and not self.direct:
            with self.block(f"if fuel.preempt and {steps} > left:"):
                self.emit("raise Ahead")

    def sized(self, r: int) -> str:
        """The length of ``r{r}`` if a list or string, else 0."""
        return f"len(r{r})" if self.is_(r, RegType.STR, RegType.LIST) else f"sized(r{r})"

    def built(self, a: int, kind: RegType) -> None:
        """Charge for ``r{a}``, just built as a list or a string (``kind`` ANY: either)."""
        self.emit(f"size = len(r{a})")
        items = {
            RegType.LIST: f"{ITEM_BYTES} * size",
            RegType.STR: "size",
            RegType.ANY: f"(size if type(r{a}) is str else {ITEM_BYTES} * size)",
        }[kind]
        self.charge(f"size // {SIZE_UNIT}", f"{BOX_BYTES} + {items}")

    def string_charge(self, b: int) -> None:
        """Comparing strings: charge by the length of ``r{b}`` when it holds one."""
        if self.is_(b, RegType.STR):
            self.charge(f"len(r{b}) // {SIZE_UNIT}", None)
        elif self.is_(b, RegType.ANY):
            with self.block(f"if type(r{b}) is str:"):
                self.charge(f"len(r{b}) // {SIZE_UNIT}", None)

    def string_ahead(self, pc: int, b: int) -> None:
        """`ahead` of `string_charge`."""
        if self.is_(b, RegType.STR, RegType.ANY):
            self.ahead(pc, f"{self.sized(b)} // {SIZE_UNIT}")

    def equal(self, pc: int, a: int, b: int, c: int, negate: bool) -> None:
        """``r{a} := values_equal(r{b}, r{c})`` (negated), cheaper when a type is known."""
        tb, tc = self.types[b], self.types[c]
        if tb is not RegType.ANY and tc is not RegType.ANY and tb is not tc:
            self.emit(f"r{a} = {negate}")  # different kinds
            return
        known = tb if tb in _SCALARS else tc
        if known not in _SCALARS:
            self.emit(f"v, left = equal(r{b}, r{c}, fuel, left, {self.guarded(pc)})")
            self.emit(f"r{a} = {'not v' if negate else 'v'}")
            return
        name = _SCALARS[known]
        tests = [f"type(r{r}) is {name}" for r in (b, c) if self.types[r] is not known]
        test = " and ".join([*tests, f"r{b} == r{c}"])
        if known is RegType.STR:
            self.string_ahead(pc, b if tb is known else c)
        self.emit(f"r{a} = not ({test})" if negate else f"r{a} = {test}")
        if known is RegType.STR:
            self.string_charge(b if tb is known else c)

    def op_eq(self, pc: int, a: int, b: int, c: int) -> None:
        self.equal(pc, a, b, c, negate=False)

    def op_ne(self, pc: int, a: int, b: int, c: int) -> None:
        self.equal(pc, a, b, c, negate=True)

    def order(self, pc: int, a: int, b: int, c: int, symbol: str, helper: str) -> None:
        """Nats or strings compared; the fast path assumes the kind a register type names."""
        known = RegType.STR if RegType.STR in (self.types[b], self.types[c]) else RegType.NAT
        name = "str" if known is RegType.STR else "int"
        if not self.is_(b, known, RegType.ANY) or not self.is_(c, known, RegType.ANY):
            self.emit(f"r{a} = {helper}(r{b}, r{c})")  # always a type error
            return
        tests = self.check(b, name, known) + self.check(c, name, known)
        self.string_ahead(pc, b)
        self.fast_or(a, tests, f"r{b} {symbol} r{c}", f"{helper}(r{b}, r{c})")
        self.string_charge(b)

    def op_lt(self, pc: int, a: int, b: int, c: int) -> None:
        self.order(pc, a, b, c, "<", "lt")

    def op_le(self, pc: int, a: int, b: int, c: int) -> None:
        self.order(pc, a, b, c, "<=", "le")

    def op_gt(self, pc: int, a: int, b: int, c: int) -> None:
        self.order(pc, a, b, c, ">", "gt")

    def op_ge(self, pc: int, a: int, b: int, c: int) -> None:
        self.order(pc, a, b, c, ">=", "ge")

    def op_not(self, pc: int, a: int, b: int) -> None:
        self.emit(f"r{a} = not r{b}" if self.is_(b, RegType.BOOL) else f"r{a} = not truth(r{b})")

    def op_concat(self, pc: int, a: int, b: int, c: int) -> None:
        same = self.types[b] is self.types[c] and self.is_(b, RegType.STR, RegType.LIST)
        size = "len" if same else "sized"
        self.ahead(pc, f"({size}(r{b}) + {size}(r{c})) // {SIZE_UNIT}")
        self.emit(f"r{a} = r{b} + r{c}" if same else f"r{a} = concat(r{b}, r{c})")
        self.built(a, self.types[b] if same else RegType.ANY)

    def op_len(self, pc: int, a: int, b: int) -> None:
        known = self.is_(b, RegType.STR, RegType.LIST)
        self.emit(f"r{a} = len(r{b})" if known else f"r{a} = length(r{b})")

    def op_index(self, pc: int, a: int, b: int, c: int) -> None:
        tests = [] if self.is_(b, RegType.STR, RegType.LIST) else [f"type(r{b}) is tuple"]
        tests += [*self.check(c, "int", RegType.NAT), f"r{c} < len(r{b})"]
        self.fast_or(a, tests, f"r{b}[r{c}]", f"index(r{b}, r{c})")

    def op_slice(self, pc: int, a: int, b: int, c: int, d: int) -> None:
        self.ahead(pc, f"{self.sized(b)} // {SIZE_UNIT}")  # at most all of it
        self.emit(f"r{a} = slice_shared(r{b}, r{c}, r{d})")
        self.built(a, self.types[b] if self.is_(b, RegType.STR, RegType.LIST) else RegType.ANY)

    def op_append(self, pc: int, a: int, b: int, c: int) -> None:
        fast = self.is_(b, RegType.LIST)
        self.ahead(pc, f"({self.sized(b)} + 1) // {SIZE_UNIT}")
        self.emit(f"r{a} = (*r{b}, {self.item(c)})" if fast else f"r{a} = append(r{b}, r{c})")
        self.built(a, RegType.LIST)

    def op_mklist(self, pc: int, a: int, items: tuple[int, ...]) -> None:
        self.emit(f"r{a} = {self.tuple_of(items)}")
        self.charge(None, str(BOX_BYTES + ITEM_BYTES * len(items)))

    def tuple_of(self, regs: tuple[int, ...]) -> str:
        return "(" + "".join(f"{self.item(r)}, " for r in regs) + ")"

    def item(self, r: int) -> str:
        """``r{r}`` as it goes into another value or out of the VM: a view as a tuple."""
        if self.views and self.is_(r, RegType.LIST, RegType.ANY):
            return f"(r{r}.plain() if type(r{r}) is ListView else r{r})"
        return f"r{r}"

    def op_mkpair(self, pc: int, a: int, b: int, c: int) -> None:
        self.emit(f"r{a} = Pair({self.item(b)}, {self.item(c)})")
        self.charge(None, str(BOX_BYTES))

    def op_mkjust(self, pc: int, a: int, b: int) -> None:
        self.emit(f"r{a} = Just({self.item(b)})")
        self.charge(None, str(BOX_BYTES))

    def op_fst(self, pc: int, a: int, b: int) -> None:
        self.fast_or(a, [f"type(r{b}) is Pair"], f"r{b}.first", f"first(r{b})")

    def op_snd(self, pc: int, a: int, b: int) -> None:
        self.fast_or(a, [f"type(r{b}) is Pair"], f"r{b}.second", f"second(r{b})")

    def op_unwrap(self, pc: int, a: int, b: int) -> None:
        self.fast_or(a, [f"type(r{b}) is Just"], f"r{b}.value", f"unwrap(r{b})")

    def op_iskind(self, pc: int, a: int, b: int, kind: int) -> None:
        self.emit(f"r{a} = kind_of(r{b}) is Kind.{Kind(kind).name}")

    def length_test(self, a: int, b: int, n: int, symbol: str) -> None:
        tests = [f"len(r{b}) {symbol} {n}"]
        if not self.is_(b, RegType.LIST):
            tests.insert(0, f"type(r{b}) in LISTS" if self.views else f"type(r{b}) is tuple")
        self.emit(f"r{a} = {' and '.join(tests)}")

    def op_islen(self, pc: int, a: int, b: int, n: int) -> None:
        self.length_test(a, b, n, "==")

    def op_islenge(self, pc: int, a: int, b: int, n: int) -> None:
        self.length_test(a, b, n, ">=")

    def op_drop(self, pc: int, a: int, b: int, n: int) -> None:
        self.ahead(pc, f"{self.sized(b)} // {SIZE_UNIT}")  # at most all of it
        self.emit(f"r{a} = drop_shared(r{b}, {n})")
        self.built(a, RegType.LIST)

    def op_tostr(self, pc: int, a: int, b: int) -> None:
        if self.is_(b, RegType.STR):
            self.emit(f"r{a} = r{b}")
        else:
            self.tostr(f"r{a}", b, pc)

    def op_getfield(self, pc: int, a: int, b: int, field: int, k: int) -> None:
        tests = [f"type(r{b}) is tuple", f"len(r{b}) > {field}"]
        self.fast_or(a, tests, f"r{b}[{field}]", f"get_field(r{b}, {field}, {self.const(k)})")

    def op_setfield(self, pc: int, a: int, b: int, field: int, c: int, k: int) -> None:
        args = f"r{b}, {field}, r{c}, {self.const(k)}"
        # The state list as long as its fields at most: the longer of it and the defaults.
        fields = len(self.program.constants[k])  # type: ignore[arg-type]
        self.ahead(pc, f"max({self.sized(b)}, {fields}) // {SIZE_UNIT}")
        # A state with every field (its items plain, as in any tuple) is copied with one
        # item replaced; any other goes through `set_field`, which pads it.
        items = [f"r{b}[{n}]" for n in range(fields)] if fields <= _SPELLED_FIELDS else []
        if items:
            items[field] = self.item(c)
            fast = f"({', '.join(items)},)"
        else:
            fast = f"(*r{b}[:{field}], {self.item(c)}, *r{b}[{field + 1}:])"
        tests = [f"type(r{b}) is tuple", f"len(r{b}) == {fields}"]
        self.fast_or(a, tests, fast, f"set_field({args})")
        self.built(a, RegType.LIST)

    def jump(self, target: int | str, pc: int | None = None) -> None:
        """Go to ``target``; from a conditional jump at ``pc``, refund the rest of the block."""
        if pc is not None and self.end - pc > 1:
            effects = self.leaf_effects(pc + 1, self.end)
            self.emit(f"left += {self.end - pc - 1 + EFFECT_STEPS * effects}")
            if effects:
                self.emit(f"room += {BOX_BYTES * effects}")
        self.emit(f"pc = {target}", "continue")

    def leaf_effects(self, start: int, end: int) -> int:
        """How many of the instructions from ``start`` to ``end`` a leaf performs itself
        (`leaf_effect`); none outside a leaf."""
        if not self.leaf:
            return 0
        code = self.function.code
        return sum(
            code[pc][0] is Op.EFFECT and code[pc][2] in _LEAF_EFFECTS for pc in range(start, end)
        )

    def op_jmp(self, pc: int, target: int) -> None:
        self.jump(target)

    def op_jmpt(self, pc: int, a: int, target: int) -> None:
        if self.is_(a, RegType.BOOL):
            with self.block(f"if r{a}:"):
                self.jump(target, pc)
            return
        with self.block(f"if r{a} is True:"):
            self.jump(target, pc)
        with self.block(f"if r{a} is not False:"):
            self.emit(f"truth(r{a})")  # raises: not a bool

    def op_jmpf(self, pc: int, a: int, target: int) -> None:
        if self.is_(a, RegType.BOOL):
            with self.block(f"if not r{a}:"):
                self.jump(target, pc)
            return
        with self.block(f"if r{a} is not True:"):
            with self.block(f"if r{a} is not False:"):
                self.emit(f"truth(r{a})")  # raises: not a bool
            self.jump(target, pc)

    def suspend(self, pc: int, leaving: bool = True) -> None:
        """Leave this frame resumable at the next instruction (and the fuel counted, when
        control is ``leaving`` this Python function)."""
        self.spill()
        self.emit(f"frame.pc = {pc + 1}")
        if leaving:
            self.emit("fuel.remaining = left")

    def op_call(self, pc: int, a: int, f: int, args: tuple[int, ...]) -> None:
        callee = self.proc.procs[f]
        self.namespace[f"P{f}"] = callee
        self.namespace[f"REST{f}"] = callee.rest
        steps = call_steps(callee.function)
        if steps:
            self.ahead(pc, str(steps))
        with self.block("if len(frames) >= max_frames:"):
            self.emit("raise depth_exceeded(max_frames)")
        if steps:
            self.charge(str(steps), None)
        self.suspend(pc, leaving=callee is not self.proc)
        if callee is not self.proc:
            self.new_frame("callee", f"P{f}", f"[{''.join(f'r{r}, ' for r in args)}*REST{f}]", a)
            self.emit("frames.append(callee)", "return None")
            return
        # A call of this very function goes on here, without a round trip to the trampoline;
        # the new frame's registers live in the locals until it is next suspended.
        self.new_frame("frame", "SELF", "[]", a)
        self.emit("frames.append(frame)")
        if args:  # one simultaneous assignment: an argument may sit in a parameter register
            params = ", ".join(f"r{n}" for n in range(len(args)))
            self.emit(f"{params} = {', '.join(f'r{r}' for r in args)}")
        if callee.rest:
            self.emit(f"{''.join(f'r{n}, ' for n in range(len(args), len(self.types)))}= REST{f}")
        self.jump(0)

    def new_frame(self, name: str, proc: str, regs: str, result_reg: int) -> None:
        """``name = Frame(proc, 0, regs, [], result_reg)``, without the cost of a call."""
        self.emit(f"{name} = new_object(Frame)", f"{name}.function = {proc}", f"{name}.pc = 0")
        self.emit(f"{name}.regs = {regs}", f"{name}.handlers = []")
        self.emit(f"{name}.result_reg = {result_reg}", f"{name}.caught = None")

    def op_ret(self, pc: int, a: int) -> None:
        if self.direct:
            self.emit("fuel.remaining = left", "fuel.room = room")
            self.emit(f"return {self.item(a)}, writes" if self.leaf else f"return {self.item(a)}")
            return
        self.emit("frames.pop()")
        with self.block("if frames:"):
            self.emit(f"frames[-1].regs[frame.result_reg] = r{a}", "frame = frames[-1]")
            with self.block("if frame.function is SELF:"):  # go on in the caller here
                if self.types:
                    self.emit(f"{self.all_regs()}, = frame.regs")
                self.jump("frame.pc")
            self.emit("fuel.remaining = left", "return None")
        self.emit("fuel.remaining = left", f"return Ret({self.item(a)})")

    def op_effect(self, pc: int, a: int, instruction: int, args: tuple[int, ...]) -> None:
        if self.direct:
            self.leaf_effect(pc, a, instruction, args)
            return
        if instruction == _CALL_PURE:
            self.call_pure(pc, a, *args)
            return
        if instruction in _IN_PLACE:
            self.in_place(pc, a, instruction, args)
            return
        if instruction in _CALLS:
            self.call_in_place(pc, a, instruction, args)
            return
        self.suspend(pc)
        self.emit(f"return Vis({instruction}, {self.tuple_of(args)}, {a})")

    def leaf_effect(self, pc: int, a: int, instruction: int, args: tuple[int, ...]) -> None:
        """`get_state`, `set_state` or `self` in a leaf call (`translate_direct`), with the
        charges `in_place` pays (its steps and box, paid with its block's, and the walk of a
        state written); anything the fuel cannot pay, a state that is not a list, or any
        other instruction, goes back to the frame. The state is read as the handler reads it
        outside a transaction, the call's own writes first. Paying early changes nothing a
        call shows: every charge is a deduction, so one the fuel cannot pay means the call
        goes back, wherever it falls, and a jump out of the block refunds the rest."""
        if instruction not in _LEAF_EFFECTS:
            self.emit("raise OutOfFuel")  # not for a leaf: the call runs on a frame
            return
        if instruction == _GET_STATE:
            self.emit(f"r{a} = writes[-1] if writes else host.store.states.get(self_id, ())")
        elif instruction == _SELF:
            self.emit(f"r{a} = ObjectRef(self_id)")
        else:
            state = f"r{args[0]}"
            with self.block(f"if type({state}) is not tuple:"):
                self.emit("raise OutOfFuel")  # set_state fails: on the frame
            # `walk_steps`, whose commonest case, a state of one field that holds no other
            # value, is counted here without a call.
            with self.block(f"if len({state}) == 1 and type({state}[0]) not in NESTING:"):
                self.emit(f"left -= {WALK_STEPS}")
            with self.block("else:"):
                self.emit(f"left -= walk_steps({state}, left // {WALK_STEPS} + 1)")
            with self.block("if left < 0:"):
                self.emit("raise OutOfFuel")
            self.emit(f"writes.append({state})", f"r{a} = NOTHING")

    def in_place(self, pc: int, a: int, instruction: int, args: tuple[int, ...]) -> None:
        """An instruction of `_IN_PLACE`, performed here by its handler in the host's table
        (`Interpreter.host`, whose table a profile or an observer may have replaced)
        without suspending this frame, when the host is running this very activation and
        the fuel left pays the instruction's charges as the runtime's loop would (its steps
        and box). Otherwise the runtime performs it (a `Vis`). A failure is located as the
        runtime's loop locates it: a fatal error after the EFFECT, any other at it."""
        self.host_test(pc, a, instruction, args, "here")
        self.emit(f"fuel.remaining = left - {EFFECT_STEPS}", f"fuel.room -= {BOX_BYTES}")
        self.perform(pc, f"r{a} = host.handlers[{instruction}](host, {self.tuple_of(args)})")
        self.emit("left = fuel.remaining", f"pc = {pc + 1}")

    def perform(self, pc: int, line: str) -> None:
        """``line``, which has the host perform the EFFECT at ``pc``; an error it raises is
        this runner's outcome, with the frame suspended after the EFFECT (a fatal error)
        or at it (any other), as the runtime's loop locates it."""
        with self.block("try:"):
            self.emit(line)
        with self.block("except BaseException as error:"):
            self.suspend(pc, leaving=False)
            with self.block("if isinstance(error, AvmError):"):
                with self.block("if not error.fatal:"):
                    self.emit(f"frame.pc = {pc}")
                self.emit("return error")
            self.emit("raise")

    def call_in_place(self, pc: int, a: int, instruction: int, args: tuple[int, ...]) -> None:
        """``call`` or ``call!``: with the instruction's charges paid (as `in_place`), the
        host makes it a leaf call (`Runtime.call_leaf`) or else performs it
        (`Runtime.perform_call`), unless it already runs a callee in place. A call that
        completed at once (a leaf or remote callee) answers here; otherwise this frame is
        suspended after the EFFECT and the host runs the callee one level deep
        (`Runtime.run_callee`) or the run parks. Then this frame goes on here, or the
        host's outcome is this runner's (a failure of the instruction located at the
        EFFECT, as `in_place`)."""
        self.host_test(pc, a, instruction, args, "calls")
        self.emit(f"fuel.remaining = left - {EFFECT_STEPS}", f"fuel.room -= {BOX_BYTES}")
        target, message = args
        strict = instruction == _CALL_UNWRAP
        self.emit(f"answer = host.call_leaf(r{target}, r{message}, {strict})")
        with self.block("if answer is RETRY:"):
            self.perform(
                pc, f"answer = host.perform_call({instruction}, {self.tuple_of(args)}, {a})"
            )
            with self.block("if answer is CALLING:"):
                self.suspend(pc, leaving=False)
                self.emit("outcome = host.run_callee()")
                with self.block("if outcome is not None:"):
                    with self.block("if isinstance(outcome, AvmError) and not outcome.fatal:"):
                        self.emit(f"frame.pc = {pc}")
                    self.emit("return outcome")
                self.emit(f"answer = frame.regs[{a}]")
            with self.block("elif answer is PARKED:"):
                self.suspend(pc, leaving=False)
                self.emit("return PARKED")
        self.emit(f"r{a} = answer", "left = fuel.remaining", f"pc = {pc + 1}")

    def hosted(self) -> bool:
        """Whether the code translated performs an instruction in place (`in_place`,
        `call_in_place`)."""
        code = self.function.code
        return any(
            code[pc][0] is Op.EFFECT and (code[pc][2] in _IN_PLACE or code[pc][2] in _CALLS)
            for start, end in self.blocks
            for pc in range(start, end)
        )

    def host_test(
        self, pc: int, a: int, instruction: int, args: tuple[int, ...], here: str
    ) -> None:
        """Unless ``here`` (the host runs this activation, see `source`) and the fuel left
        pays the instruction's steps and box, suspend this frame with a `Vis`."""
        tests = f"{here} and left >= {EFFECT_STEPS} and fuel.room >= {BOX_BYTES}"
        with self.block(f"if not ({tests}):"):
            self.suspend(pc)
            self.emit(f"return Vis({instruction}, {self.tuple_of(args)}, {a})")

    def call_pure(self, pc: int, a: int, name: int, args: int) -> None:
        """A call_pure runs its callee here (`Interpreter.answer_pure`), without suspending
        this frame, when it can pay the instruction's charges as the runtime would (its
        steps and box, from the fuel left) and the name is registered. Otherwise the
        runtime performs it (a `Vis`, as for any EFFECT): it borrows from a fuel slice's
        reserve, or fails the instruction. A fatal error of the callee (the only kind it
        raises) fails the run where the runtime would report it: with this frame suspended
        after the EFFECT; so does any other exception on its way out."""
        self.namespace["VM"] = self.proc.interpreter
        self.emit("registry = VM.registry")
        tests = [
            "registry is not None",
            f"type(r{name}) is str",
            f"type(r{args}) in LISTS" if self.views else f"type(r{args}) is tuple",
            f"left >= {EFFECT_STEPS}",
            f"fuel.room >= {BOX_BYTES}",
            f"(entry := registry.pures.get(r{name})) is not None",
        ]
        with self.block(f"if not ({' and '.join(tests)}):"):
            self.suspend(pc)
            self.emit(f"return Vis({_CALL_PURE}, {self.tuple_of((name, args))}, {a})")
        self.emit(f"fuel.remaining = left - {EFFECT_STEPS}", f"fuel.room -= {BOX_BYTES}")
        with self.block("try:"):
            self.emit(f"r{a} = entry[0].answer_pure(entry[1], r{args}, fuel, max_frames)")
        with self.block("except BaseException as error:"):
            self.suspend(pc, leaving=False)
            with self.block("if isinstance(error, AvmError):"):
                self.emit("return error")
            self.emit("raise")
        self.emit("left = fuel.remaining", f"pc = {pc + 1}")

    def op_fail(self, pc: int, a: int) -> None:
        if self.direct:  # the failure is made on a frame: no message to print here
            self.emit("raise OutOfFuel")
            return
        self.tostr("v", a, pc)
        self.emit("raise failed(v)")

    def tostr(self, text: str, r: int, pc: int) -> None:
        """``text`` := the text of ``r{r}``, paid for (`_tostr`, which counts the bytes in
        ``fuel.room``: a direct run's local ``room`` goes through it)."""
        if self.direct:
            self.emit("fuel.room = room")
        self.emit(f"{text}, left = tostr(r{r}, fuel, left, {self.guarded(pc)})")
        if self.direct:
            self.emit("room = fuel.room")

    def op_try(self, pc: int, a: int, target: int) -> None:
        self.emit(f"frame.handlers.append(({target}, {a}))")

    def op_endtry(self, pc: int) -> None:
        self.emit("end_try(frame.handlers)")
