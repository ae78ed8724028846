"""Which registers and instructions of a Tape function native code handles.

Native code keeps NAT and BOOL values unboxed in 64-bit registers. A register declared NAT
or BOOL is native. The compiler types parameters and CALL results ANY, so an ANY register is
*speculated* NAT (or BOOL) when every instruction writing it produces that type (an EFFECT
whose answer nothing reads, a statement's, does not count); parameters are taken on trust
from how the function uses them (the VM checks the live registers before it enters native
code, so a wrong guess only means native code is not entered). Return types come from a
fixpoint over the call graph, recursion included: a function returns NAT when every RET
returns a NAT register, which may itself be the result of a recursive CALL.

An instruction runs natively when its registers are native and of the types the op needs;
every other instruction is an *exit*: native code stops before it and the VM runs it. A CALL
runs natively (a *direct* call, native to native) when the callee can start natively from
its parameters alone and the argument, parameter and result types agree.

So does a `call_pure` of the usual shape (a `PureCall`): ``LOADK name, "f"``, possibly other
instructions, then ``MKLIST list, [args]`` (or a LOADK of a constant list) and the EFFECT,
in straight-line code (no jump lands after the LOADK), the name and list registers dead
after it, ``"f"`` a pure function of this program of the list's arity (the one the name is
bound to at load), direct as for a CALL. Native code then skips the LOADK and the list, and
calls the callee directly behind a guard (`abi`): whatever the guard refuses, the VM
performs the call_pure as ever.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from avm_vm.format.instructions import BY_NAME
from avm_vm.format.opcodes import OPCODES, Op, RegType, const_type
from avm_vm.format.program import Function, FunctionKind, Program
from avm_vm.values import BOX_BYTES, ITEM_BYTES
from avm_vm.vm.translate import block_starts

NATIVE_TYPES = (RegType.NAT, RegType.BOOL)
_ARITH = frozenset({Op.ADD, Op.SUB, Op.MUL, Op.DIV, Op.MOD})
_ORDER = frozenset({Op.LT, Op.LE, Op.GT, Op.GE})
_CONDITIONS = frozenset({Op.NOT, Op.JMPT, Op.JMPF})
_CALL_PURE = BY_NAME["call_pure"].number
# Distinct (name, function) bindings a program's native call_pures test: the bits of
# `JitContext.pures`. A call_pure of a binding past these stays on the VM.
MAX_BINDINGS = 64


class _Top:
    """The optimistic start of the type fixpoint: no write seen yet."""

    def __repr__(self) -> str:
        return "TOP"


TOP = _Top()
# A speculated type during the fixpoint: TOP, NAT, BOOL or None (not native).
_Spec = RegType | _Top | None


class PureCall(NamedTuple):
    """A call_pure native code makes as a direct call (see the module docstring)."""

    name: str  # the constant naming the function
    callee: int  # the function of this program the name is bound to at load
    binding: int  # the bit of `JitContext.pures` saying the name is still bound to it
    name_pc: int  # the LOADK of the name
    name_reg: int
    args: tuple[int, ...]  # the argument registers (MKLIST), or the values of a constant list
    constant: bool  # the list is a constant (LOADK), not built by MKLIST
    list_bytes: int  # what MKLIST builds, for the run's memory budget (0 for a constant)

    def arg_types(self, types: list[_Spec]) -> list[_Spec]:
        """The types of the arguments, given the caller's register types."""
        if self.constant:
            return [const_type(value) for value in self.args]
        return [types[r] for r in self.args]


@dataclass(frozen=True)
class NativePlan:
    """What native code does for one function (see the module docstring)."""

    function_index: int
    reg_types: tuple[RegType | None, ...]  # NAT/BOOL: kept native; None: left to the VM
    native: frozenset[int]  # pcs of the instructions native code runs
    entries: dict[int, tuple[tuple[int, RegType], ...]]  # block start -> live native regs
    return_type: RegType | None  # NAT/BOOL when every RET returns a native register of it
    param_types: tuple[RegType | None, ...]
    direct: bool  # callable natively from other native code (`starts_from_params`)
    direct_callees: frozenset[int]  # functions its native CALLs and call_pures call
    blocks: tuple[tuple[int, int], ...]  # (start, end) of every block, as the VM cuts them
    pure_calls: dict[int, PureCall]  # the EFFECT's pc -> its native call_pure

    @property
    def native_count(self) -> int:
        return len(self.native)


def _meet(a: _Spec, b: _Spec) -> _Spec:
    if a is TOP:
        return b
    if b is TOP or a == b:
        return a
    return None


def _operands(instr: tuple) -> Iterable[tuple[str, object]]:
    return zip(OPCODES[instr[0]].operands, instr[1:], strict=True)


def reads(instr: tuple) -> list[int]:
    """The registers an instruction reads."""
    op = instr[0]
    regs: list[int] = []
    for position, (letter, operand) in enumerate(_operands(instr)):
        if letter == "R" and not (position == 0 and OPCODES[op].writes):
            regs.append(operand)  # type: ignore[arg-type]
        elif letter == "L":
            regs.extend(operand)  # type: ignore[arg-type]
    if op is Op.TRY:  # writes its register only when a failure reaches the handler
        regs.clear()
    return regs


def writes(instr: tuple) -> int | None:
    """The register an instruction writes (TRY's, when a failure reaches its handler)."""
    return instr[1] if OPCODES[instr[0]].writes else None


def successors(function: Function, pc: int) -> list[int]:
    """Where control may go after the instruction at ``pc`` (handlers apart)."""
    op, *operands = function.code[pc]
    targets = []
    if not OPCODES[op].ends_block and pc + 1 < len(function.code):
        targets.append(pc + 1)
    if op is Op.JMP:
        targets.append(operands[0])
    elif op in (Op.JMPT, Op.JMPF, Op.TRY):
        targets.append(operands[1])
    return targets


def liveness(function: Function) -> list[frozenset[int]]:
    """The registers live before each instruction (read on some path before a write).

    A TRY handler may be reached from any instruction once a TRY ran, so in a function with
    handlers every instruction also flows to every handler (a safe over-approximation)."""
    code = function.code
    handlers = [instr[2] for instr in code if instr[0] is Op.TRY]
    succ = [successors(function, pc) + handlers for pc in range(len(code))]
    preds: list[list[int]] = [[] for _ in code]
    for pc, targets in enumerate(succ):
        for target in targets:
            preds[target].append(pc)
    used = [frozenset(reads(instr)) for instr in code]
    killed = [None if instr[0] is Op.TRY else writes(instr) for instr in code]
    live_in: list[frozenset[int]] = [frozenset()] * len(code)
    pending = list(range(len(code)))  # a stack: the last pcs first, the fast order here
    queued = [True] * len(code)
    while pending:
        pc = pending.pop()
        queued[pc] = False
        out: set[int] = set()
        for target in succ[pc]:
            out |= live_in[target]
        out.discard(killed[pc])  # type: ignore[arg-type]
        new = used[pc].union(out)
        if new != live_in[pc]:
            live_in[pc] = new
            for before in preds[pc]:
                if not queued[before]:
                    queued[before] = True
                    pending.append(before)
    return live_in


class _Analysis:
    """The whole-program fixpoints: register and return types, then direct calls."""

    def __init__(self, program: Program) -> None:
        self.program = program
        self.functions = program.functions
        self.types: list[list[_Spec]] = [
            [TOP if t is RegType.ANY else (t if t in NATIVE_TYPES else None) for t in f.reg_types]
            for f in self.functions
        ]
        self.returns: list[_Spec] = [TOP] * len(self.functions)
        # Per function and register: the pcs of the instructions writing it, and
        # (parameters only) the instructions reading it.
        self.writers: list[list[list[int]]] = []
        self.param_uses: list[list[list[tuple]]] = []
        for function in self.functions:
            writers: list[list[int]] = [[] for _ in range(function.nregs)]
            uses: list[list[tuple]] = [[] for _ in range(function.nparams)]
            for pc, instr in enumerate(function.code):
                written = writes(instr)
                if written is not None:
                    writers[written].append(pc)
                for register in set(reads(instr)):
                    if register < function.nparams:
                        uses[register].append(instr)
            self.writers.append(writers)
            self.param_uses.append(uses)
        self.lives: dict[int, list[frozenset[int]]] = {}  # computed where needed: it costs
        self.landings: dict[int, frozenset[int]] = {}
        self.pure_names: dict[str, int] = {}  # as `Registry.load` binds them: the first
        for index, function in enumerate(self.functions):
            if function.kind is FunctionKind.PURE:
                self.pure_names.setdefault(function.name, index)
        # Per function: the call_pures of the shape native code can call directly, by the
        # EFFECT's pc, and the pcs of their name LOADK and list instruction -> that pc.
        self.pure_calls: list[dict[int, PureCall]] = []
        self.pure_parts: list[dict[int, int]] = []
        bindings: dict[tuple[str, int], int] = {}
        for f in range(len(self.functions)):
            calls = self.find_pure_calls(f, bindings)
            self.pure_calls.append(calls)
            self.pure_parts.append(
                {pc: e for e, call in calls.items() for pc in (call.name_pc, e - 1)}
            )

    def targets(self, f: int) -> frozenset[int]:
        """Where the jumps and handlers of ``f`` land."""
        if f not in self.landings:
            self.landings[f] = frozenset(
                operands[-1]
                for op, *operands in self.functions[f].code
                if op in (Op.JMP, Op.JMPT, Op.JMPF, Op.TRY)
            )
        return self.landings[f]

    def live(self, f: int) -> list[frozenset[int]]:
        if f not in self.lives:
            self.lives[f] = liveness(self.functions[f])
        return self.lives[f]

    def live_after(self, f: int, pc: int) -> frozenset[int]:
        live = self.live(f)
        return live[pc + 1] if pc + 1 < len(live) else frozenset()

    # -- call_pure

    def find_pure_calls(self, f: int, bindings: dict[tuple[str, int], int]) -> dict[int, PureCall]:
        """The call_pures of ``f`` of the shape of the module docstring; each new binding
        (name, callee) takes the next bit of ``bindings``, while there are bits."""
        code = self.functions[f].code
        calls = {}
        for e, instr in enumerate(code):
            if instr[0] is Op.EFFECT and instr[2] == _CALL_PURE:
                call = self.pure_call(f, e, bindings)
                if call is not None:
                    calls[e] = call
        return calls

    def pure_call(self, f: int, e: int, bindings: dict[tuple[str, int], int]) -> PureCall | None:
        function = self.functions[f]
        code, constants = function.code, self.program.constants
        name_reg, list_reg = code[e][3]
        if e < 2 or name_reg == list_reg:
            return None
        built = code[e - 1]
        if built[0] is Op.MKLIST and built[1] == list_reg:
            args, constant = tuple(built[2]), False
            list_bytes = BOX_BYTES + ITEM_BYTES * len(args)
        elif built[0] is Op.LOADK and built[1] == list_reg:
            values = constants[built[2]]
            if type(values) is not tuple or any(const_type(v) not in NATIVE_TYPES for v in values):
                return None
            args, constant, list_bytes = values, True, 0
        else:
            return None
        name_pc = next((pc for pc in range(e - 2, -1, -1) if writes(code[pc]) == name_reg), -1)
        # Straight-line code from the name to the call: no jump lands in between.
        if (
            name_pc < 0
            or code[name_pc][0] is not Op.LOADK
            or not self.targets(f).isdisjoint(range(name_pc + 1, e + 1))
        ):
            return None
        name = constants[code[name_pc][2]]
        callee = self.pure_names.get(name) if type(name) is str else None
        if callee is None or self.functions[callee].nparams != len(args):
            return None
        after = self.live_after(f, e)
        if name_reg in after or list_reg in after:
            return None
        binding = bindings.get((name, callee))
        if binding is None:
            if len(bindings) == MAX_BINDINGS:
                return None
            binding = bindings[name, callee] = len(bindings)
        return PureCall(name, callee, binding, name_pc, name_reg, args, constant, list_bytes)

    def pure_call_native(self, f: int, e: int, direct: set[int]) -> bool:
        """Whether the call_pure at ``e`` runs natively: its callee is direct and the
        argument, parameter and result types agree (as `runs_natively` a CALL)."""
        call = self.pure_calls[f][e]
        callee = call.callee
        result = self.types[f][self.functions[f].code[e][1]]
        return (
            callee in direct
            and result is not None
            and result == self.returns[callee]
            and call.arg_types(self.types[f]) == self.types[callee][: len(call.args)]
        )

    # -- types

    def produced(self, f: int, pc: int) -> _Spec:
        """The type of the value an instruction writes, as far as is known yet."""
        instr = self.functions[f].code[pc]
        op = instr[0]
        if op is Op.MOVE:
            return self.types[f][instr[2]]
        if op is Op.LOADK:
            kind = const_type(self.program.constants[instr[2]])
            return kind if kind in NATIVE_TYPES else None
        if op is Op.CALL:
            return self.returns[instr[2]]
        if op is Op.EFFECT:
            if pc in self.pure_calls[f]:
                return self.returns[self.pure_calls[f][pc].callee]
            if instr[1] not in self.live_after(f, pc):
                return TOP  # an answer nothing reads (a statement's) says nothing of the type
        result = OPCODES[op].result
        return result if result in NATIVE_TYPES else None

    def use_hint(self, f: int, register: int) -> _Spec:
        """What a parameter's uses say it holds: NAT if it is an operand of arithmetic or
        order, BOOL if a condition, the callee's parameter type if passed to a CALL."""
        hint: _Spec = TOP
        for instr in self.param_uses[f][register]:
            op = instr[0]
            if op in _ARITH or op in _ORDER:
                hint = _meet(hint, RegType.NAT)
            elif op in _CONDITIONS:
                hint = _meet(hint, RegType.BOOL)
            elif op in (Op.EQ, Op.NE):
                other = instr[3] if instr[2] == register else instr[2]
                declared = self.functions[f].reg_types[other]
                if declared in NATIVE_TYPES:
                    hint = _meet(hint, declared)
            elif op is Op.CALL:
                callee = instr[2]
                for position, arg in enumerate(instr[3]):
                    if arg == register:
                        hint = _meet(hint, self.types[callee][position])
        return hint

    def settle_types(self) -> None:
        """Iterate to the greatest fixpoint; whatever stays TOP (never written, or only by
        calls that never return) is then not native, and the fixpoint is redone."""
        while True:
            self.iterate()
            unresolved = False
            for f, types in enumerate(self.types):
                for register, spec in enumerate(types):
                    if spec is TOP:
                        types[register] = None
                        unresolved = True
                if self.returns[f] is TOP:
                    self.returns[f] = None
                    unresolved = True
            if not unresolved:
                return

    def iterate(self) -> None:
        changed = True
        while changed:
            changed = False
            for f, function in enumerate(self.functions):
                types = self.types[f]
                for register in range(function.nregs):
                    if function.reg_types[register] is not RegType.ANY or types[register] is None:
                        continue
                    spec = types[register]
                    if register < function.nparams:
                        spec = _meet(spec, self.use_hint(f, register))
                    for pc in self.writers[f][register]:
                        spec = _meet(spec, self.produced(f, pc))
                    if spec is not types[register]:
                        types[register] = spec
                        changed = True
                returned = self.returns[f]  # only ever lowered (settle_types may set None)
                for instr in function.code:
                    if instr[0] is Op.RET:
                        returned = _meet(returned, types[instr[1]])
                if returned is not self.returns[f]:
                    self.returns[f] = returned
                    changed = True

    # -- instructions

    def runs_natively(self, f: int, pc: int, direct: set[int]) -> bool:
        types = self.types[f]
        instr = self.functions[f].code[pc]
        op = instr[0]
        call_pure = self.pure_parts[f].get(pc, pc if op is Op.EFFECT else None)
        if call_pure is not None:  # a part of a call_pure runs natively as the whole does
            return call_pure in self.pure_calls[f] and self.pure_call_native(f, call_pure, direct)
        if op is Op.JMP:
            return True
        if op in (Op.JMPT, Op.JMPF):
            return types[instr[1]] is RegType.BOOL
        if op is Op.RET:
            return types[instr[1]] is not None
        if op is Op.CALL:
            _, a, callee, args = instr
            params = self.types[callee][: len(args)]
            return (
                callee in direct
                and types[a] is not None
                and types[a] == self.returns[callee]
                and all(types[arg] == param for arg, param in zip(args, params, strict=True))
            )
        if op is Op.LOADK:
            return types[instr[1]] is not None and types[instr[1]] == self.produced(f, pc)
        if op is Op.MOVE:
            return types[instr[1]] is not None and types[instr[1]] == types[instr[2]]
        if op not in _ARITH and op not in _ORDER and op not in (Op.EQ, Op.NE, Op.NOT):
            return False
        a, *rest = instr[1:]
        operands = [types[r] for r in rest]
        if op in _ARITH:
            return types[a] is RegType.NAT and operands == [RegType.NAT, RegType.NAT]
        if op in _ORDER:
            return types[a] is RegType.BOOL and operands == [RegType.NAT, RegType.NAT]
        if op in (Op.EQ, Op.NE):
            return types[a] is RegType.BOOL and None not in operands
        return types[a] is RegType.BOOL and operands == [RegType.BOOL]  # NOT

    def plans(self) -> dict[int, NativePlan]:
        self.settle_types()
        # Optimistically every function whose signature is native is directly callable;
        # drop those that then cannot start natively, until nothing changes.
        direct = {
            f
            for f, function in enumerate(self.functions)
            if self.returns[f] is not None
            and None not in self.types[f][: function.nparams]
            and function.code
        }
        while True:
            native = [
                frozenset(
                    pc for pc in range(len(function.code)) if self.runs_natively(f, pc, direct)
                )
                for f, function in enumerate(self.functions)
            ]
            keep = {
                f
                for f in direct
                if 0 in native[f] and self.starts_from_params(f, native[f], self.live(f))
            }
            if keep == direct:
                break
            direct = keep
        plans = {}
        for f, function in enumerate(self.functions):
            starts = block_starts(function)
            entries = {
                start: tuple(
                    (r, self.types[f][r])  # type: ignore[misc]
                    for r in sorted(self.live(f)[start])
                    if self.types[f][r] is not None
                )
                for start in starts
                if start in native[f]
            }
            if not entries:
                continue
            ends = [*starts[1:], len(function.code)]
            pure_calls = {e: c for e, c in self.pure_calls[f].items() if e in native[f]}
            plans[f] = NativePlan(
                function_index=f,
                reg_types=tuple(self.types[f]),  # type: ignore[arg-type]
                native=native[f],
                entries=entries,
                return_type=self.returns[f],  # type: ignore[arg-type]
                param_types=tuple(self.types[f][: function.nparams]),  # type: ignore[arg-type]
                direct=f in direct,
                direct_callees=frozenset(
                    function.code[pc][2] for pc in native[f] if function.code[pc][0] is Op.CALL
                ).union(call.callee for call in pure_calls.values()),
                blocks=tuple(zip(starts, ends, strict=True)),
                pure_calls=pure_calls,
            )
        return plans

    def starts_from_params(
        self, f: int, native: frozenset[int], live: list[frozenset[int]]
    ) -> bool:
        """Native code can run ``f`` from pc 0 given only its parameters: the first
        instruction is native and every other native register live there is a declared
        NAT/BOOL one, whose initial value (0, false) native code reproduces."""
        function = self.functions[f]
        return 0 in native and all(
            r < function.nparams or function.reg_types[r] in NATIVE_TYPES
            for r in live[0]
            if self.types[f][r] is not None
        )


def plan_program(program: Program) -> dict[int, NativePlan]:
    """A plan for every function native code can enter somewhere (at least one entry)."""
    return _Analysis(program).plans()


def pure_bindings(plans: dict[int, NativePlan], functions: list[int]) -> tuple[PureCall, ...]:
    """One `PureCall` per binding the native call_pures of ``functions`` test, by bit."""
    calls = {c.binding: c for f in functions for c in plans[f].pure_calls.values()}
    return tuple(calls[bit] for bit in sorted(calls))
