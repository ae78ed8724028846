"""Which registers and instructions of a Tape function native code handles.

Native code keeps NAT and BOOL values unboxed in 64-bit registers. A register declared NAT
or BOOL is native. The compiler types parameters and CALL results ANY, so an ANY register is
*speculated* NAT (or BOOL) when every instruction writing it produces that type; parameters
are taken on trust from how the function uses them (the VM checks the live registers before
it enters native code, so a wrong guess only means native code is not entered). Return types
come from a fixpoint over the call graph, recursion included: a function returns NAT when
every RET returns a NAT register, which may itself be the result of a recursive CALL.

An instruction runs natively when its registers are native and of the types the op needs;
every other instruction is an *exit*: native code stops before it and the VM runs it. A CALL
runs natively (a *direct* call, native to native) when the callee can start natively from
its parameters alone and the argument, parameter and result types agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from avm_vm.format.opcodes import OPCODES, Op, RegType, const_type
from avm_vm.format.program import Function, Program
from avm_vm.vm.translate import block_starts

NATIVE_TYPES = (RegType.NAT, RegType.BOOL)
_ARITH = frozenset({Op.ADD, Op.SUB, Op.MUL, Op.DIV, Op.MOD})
_ORDER = frozenset({Op.LT, Op.LE, Op.GT, Op.GE})
_CONDITIONS = frozenset({Op.NOT, Op.JMPT, Op.JMPF})


class _Top:
    """The optimistic start of the type fixpoint: no write seen yet."""

    def __repr__(self) -> str:
        return "TOP"


TOP = _Top()
# A speculated type during the fixpoint: TOP, NAT, BOOL or None (not native).
_Spec = RegType | _Top | None


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
    direct_callees: frozenset[int]  # functions its native CALLs call
    blocks: tuple[tuple[int, int], ...]  # (start, end) of every block, as the VM cuts them

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
        # Per function and register: the instructions writing it, and (parameters only)
        # the instructions reading it.
        self.writers: list[list[list[tuple]]] = []
        self.param_uses: list[list[list[tuple]]] = []
        for function in self.functions:
            writers: list[list[tuple]] = [[] for _ in range(function.nregs)]
            uses: list[list[tuple]] = [[] for _ in range(function.nparams)]
            for instr in function.code:
                written = writes(instr)
                if written is not None:
                    writers[written].append(instr)
                for register in set(reads(instr)):
                    if register < function.nparams:
                        uses[register].append(instr)
            self.writers.append(writers)
            self.param_uses.append(uses)

    # -- types

    def produced(self, f: int, instr: tuple) -> _Spec:
        """The type of the value an instruction writes, as far as is known yet."""
        op = instr[0]
        if op is Op.MOVE:
            return self.types[f][instr[2]]
        if op is Op.LOADK:
            kind = const_type(self.program.constants[instr[2]])
            return kind if kind in NATIVE_TYPES else None
        if op is Op.CALL:
            return self.returns[instr[2]]
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
                    for instr in self.writers[f][register]:
                        spec = _meet(spec, self.produced(f, instr))
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

    def runs_natively(self, f: int, instr: tuple, direct: set[int]) -> bool:
        types = self.types[f]
        op = instr[0]
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
            return types[instr[1]] is not None and types[instr[1]] == self.produced(f, instr)
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
        lives: dict[int, list[frozenset[int]]] = {}  # computed where needed: it is the cost

        def live(f: int) -> list[frozenset[int]]:
            if f not in lives:
                lives[f] = liveness(self.functions[f])
            return lives[f]

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
                    pc
                    for pc, instr in enumerate(function.code)
                    if self.runs_natively(f, instr, direct)
                )
                for f, function in enumerate(self.functions)
            ]
            keep = {
                f
                for f in direct
                if 0 in native[f] and self.starts_from_params(f, native[f], live(f))
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
                    for r in sorted(live(f)[start])
                    if self.types[f][r] is not None
                )
                for start in starts
                if start in native[f]
            }
            if not entries:
                continue
            ends = [*starts[1:], len(function.code)]
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
                ),
                blocks=tuple(zip(starts, ends, strict=True)),
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
