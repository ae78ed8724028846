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

from avm_vm.format.opcodes import OPCODES, Op, RegType
from avmc.ir import BasicBlock, IrFunction, IrInstr, IrProgram
from avmc.liveness import liveness


def live_intervals(function: IrFunction) -> dict[int, tuple[int, int]]:
    """Register -> (first, last) point where it is live or written."""
    live = liveness(function)
    first: dict[int, int] = {}
    last: dict[int, int] = {}

    def touch(reg: int, point: int) -> None:
        if reg not in first:
            first[reg] = last[reg] = point
        elif point < first[reg]:
            first[reg] = point
        elif point > last[reg]:
            last[reg] = point

    for param in range(function.nparams):
        touch(param, -1)  # all parameters arrive together, before the first op
    base = 0
    for block in function.blocks:
        end = base + len(block.instrs) - 1
        for reg in live.live_in[block.label]:
            touch(reg, 2 * base)
        for reg in live.live_out[block.label]:
            touch(reg, 2 * end + 1)
        for offset, instr in enumerate(block.instrs):
            point = 2 * (base + offset)
            for reg in instr.uses():
                touch(reg, point)
            dst = instr.dst
            if dst is not None:
                touch(dst, point + 1)
        for part in live.segments[block.label]:
            if part.handler is not None:  # live into the handler: live across the region
                for reg in live.live_in[part.handler]:
                    touch(reg, 2 * (base + part.lo))
                    touch(reg, 2 * (base + part.hi) + 1)
        base = end + 1
    return {reg: (first[reg], last[reg]) for reg in first}


def assign_registers(function: IrFunction) -> tuple[dict[int, int], list[RegType]]:
    """Virtual register -> frame register, and the type of each frame register."""
    intervals = live_intervals(function)
    kinds: list[RegType] = [RegType.ANY] * function.nparams
    mapping = {param: param for param in range(function.nparams)}
    active = [(intervals[param][1], param) for param in range(function.nparams)]
    heapq.heapify(active)
    free: dict[RegType, list[int]] = {kind: [] for kind in RegType}
    others = sorted(
        (start, reg) for reg, (start, _) in intervals.items() if reg >= function.nparams
    )
    for start, reg in others:
        while active and active[0][0] < start:
            physical = heapq.heappop(active)[1]
            free[kinds[physical]].append(physical)
        kind = function.reg_types.get(reg, RegType.ANY)
        pool = free[kind]
        if pool:
            physical = pool.pop()
        else:
            physical = len(kinds)
            kinds.append(kind)
        mapping[reg] = physical
        heapq.heappush(active, (intervals[reg][1], physical))
    return mapping, kinds


def allocate(function: IrFunction) -> IrFunction:
    """A copy of ``function`` over frame registers (run type inference first)."""
    mapping, kinds = assign_registers(function)
    blocks = []
    for block in function.blocks:
        instrs = [rename_registers(instr, mapping) for instr in block.instrs]
        # A copy between two registers that now share a frame register does nothing.
        instrs = [i for i in instrs if not (i.op is Op.MOVE and i.operands[0] == i.operands[1])]
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


def rename_registers(instr: IrInstr, mapping: dict[int, int]) -> IrInstr:
    """A copy with every register operand, written or read, renamed through ``mapping``."""
    operands = list(instr.operands)
    for i, is_list in _REGISTER_PLACES[instr.op]:
        operand = operands[i]
        operands[i] = tuple(mapping[reg] for reg in operand) if is_list else mapping[operand]
    return IrInstr(instr.op, tuple(operands), instr.span)
