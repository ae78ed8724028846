"""Register allocation: virtual registers onto as few frame registers as possible.

Each virtual register gets a live interval over the function's ops in block order: the
span from the first to the last point where it is live (op k reads at 2k and writes at
2k+1, so a register last read by an op may be reused for that op's result). Intervals are
coloured by linear scan, one pool per register type: only registers of the same type share
a frame register, so each frame register keeps an exact type for the verifier. Parameters
keep registers 0..nparams-1 (typed ANY) until their intervals end.
"""

from __future__ import annotations

import heapq
from itertools import islice

from avm_vm.format.opcodes import OPCODES, RegType
from avmc.ir import MOVE, Allocation, BasicBlock, IrFunction, IrInstr, IrProgram
from avmc.liveness import liveness


def live_intervals(function: IrFunction) -> dict[int, tuple[int, int]]:
    """Register -> (first, last) point where it is live or written."""
    first, last = _live_points(function)
    return {reg: (start, last[reg]) for reg, start in first.items()}


def _live_points(function: IrFunction) -> tuple[dict[int, int], dict[int, int]]:
    """Per register, the first and the last point where it is live or written; the
    parameters come first in the first."""
    live = liveness(function)
    # Points are visited in increasing order (except a handler's ranges, compared), so a
    # register's first visit is its first point and its latest visit its last.
    first = dict.fromkeys(range(function.nparams), -1)  # parameters arrive before any op
    last = dict(first)
    setdefault = first.setdefault
    base = 0
    for block in function.blocks:
        end = base + len(block.instrs) - 1
        point = 2 * base
        for reg in live.live_in[block.label]:
            setdefault(reg, point)
            last[reg] = point
        for instr in block.instrs:
            for reg in instr.reads:
                setdefault(reg, point)
                last[reg] = point
            dst = instr.dst
            if dst is not None:
                setdefault(dst, point + 1)
                last[dst] = point + 1
            point += 2
        point = 2 * end + 1
        for reg in live.live_out[block.label]:
            setdefault(reg, point)
            last[reg] = point
        for part in live.segments[block.label]:
            if part.handler is not None:  # live into the handler: live across the region
                lo, hi = 2 * (base + part.lo), 2 * (base + part.hi) + 1
                for reg in live.live_in[part.handler]:
                    if setdefault(reg, lo) > lo:
                        first[reg] = lo
                    if last.get(reg, hi) <= hi:
                        last[reg] = hi
        base = end + 1
    return first, last


def assign_registers(function: IrFunction) -> Allocation:
    """Virtual register -> frame register, and the type of each frame register."""
    first, last = _live_points(function)
    nparams = function.nparams
    kinds: list[RegType] = [RegType.ANY] * nparams
    mapping = {param: param for param in range(nparams)}
    active = [(last[param], param) for param in range(nparams)]
    heapq.heapify(active)
    free: dict[RegType, list[int]] = {kind: [] for kind in RegType}
    # By start, then register (distinct: the ends, carried along, never decide the order);
    # the registers past the parameters, which `first` holds first (made in C).
    registers = list(islice(first, nparams, None))
    others = sorted(
        zip(
            map(first.__getitem__, registers),
            registers,
            map(last.__getitem__, registers),
            strict=True,
        )
    )
    reg_types, push, pop, untyped = function.reg_types, heapq.heappush, heapq.heappop, RegType.ANY
    for start, reg, end in others:
        while active and active[0][0] < start:
            physical = pop(active)[1]
            free[kinds[physical]].append(physical)
        kind = reg_types.get(reg, untyped)
        pool = free[kind]
        if pool:
            physical = pool.pop()
        else:
            physical = len(kinds)
            kinds.append(kind)
        mapping[reg] = physical
        push(active, (end, physical))
    return mapping, kinds


def allocate(function: IrFunction) -> IrFunction:
    """A copy of ``function`` over frame registers (run type inference first), by its
    allocation if it has one."""
    mapping, kinds = function.allocation or assign_registers(function)
    blocks = []
    for block in function.blocks:
        instrs = [rename_registers(instr, mapping) for instr in block.instrs]
        # A copy between two registers that now share a frame register does nothing.
        instrs = [i for i in instrs if not (i.op is MOVE and i.operands[0] == i.operands[1])]
        blocks.append(BasicBlock(block.label, instrs))
    return IrFunction(
        function.name,
        function.kind,
        function.nparams,
        blocks,
        dict(enumerate(kinds)),
        function.span,
    )


def allocate_program(program: IrProgram) -> IrProgram:
    return IrProgram(
        program.source_name,
        [allocate(function) for function in program.functions],
        program.behaviors,
        program.main,
    )


# Per op, the positions of its register operands, each flagged True for a register list.
_REGISTER_PLACES = {
    op: tuple((i, letter == "L") for i, letter in enumerate(info.operands) if letter in "RL")
    for op, info in OPCODES.items()
}


# The ops whose operands are all single registers (most of them), and those whose only
# register is the first operand (LOADK, the branches, RET, FAIL, TRY).
ALL_REGISTERS = frozenset(op for op, info in OPCODES.items() if set(info.operands) == {"R"})
_FIRST_REGISTER = frozenset(
    op for op, places in _REGISTER_PLACES.items() if places == ((0, False),)
)


def rename_registers(instr: IrInstr, mapping: dict[int, int]) -> IrInstr:
    """``instr`` with every register operand, written or read, renamed through ``mapping``
    (itself when it has none: instructions are never changed in place)."""
    op = instr.op
    operands = instr.operands
    if op in ALL_REGISTERS:
        return IrInstr(op, tuple(map(mapping.__getitem__, operands)), instr.span)
    if op in _FIRST_REGISTER:
        return IrInstr(op, (mapping[operands[0]], *operands[1:]), instr.span)
    places = _REGISTER_PLACES[op]
    if not places:
        return instr
    renamed = list(operands)
    for i, is_list in places:
        operand = operands[i]
        renamed[i] = tuple([mapping[reg] for reg in operand]) if is_list else mapping[operand]
    return IrInstr(op, tuple(renamed), instr.span)
