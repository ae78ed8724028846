"""Liveness of virtual registers, with the failure edges of TRY regions.

Register sets are Python sets: sparse, so memory follows what is actually live (a bitset
per block grows with the function's register count: quadratic in a long behavior). A TRY
pushes a handler until its ENDTRY; any op in between may fail and jump to the handler, so
every register live into the handler is live throughout the protected ops. Lowering opens
and closes TRY regions in a structured way, so the stack of open handlers at the start of
each block is the same along every path that reaches it; it is found by one forward walk.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from avm_vm.format.opcodes import Op
from avmc.ir import BasicBlock, IrFunction

_JUMPS = (Op.JMP, Op.JMPT, Op.JMPF)


@dataclass
class Segment:
    """Ops ``lo..hi`` (indices in their block) run under one innermost handler (or none)."""

    lo: int
    hi: int
    handler: int | None
    gen: set[int] = field(default_factory=set)  # registers read before any write here
    kill: set[int] = field(default_factory=set)  # registers written in the segment


@dataclass
class Liveness:
    live_in: dict[int, set[int]]  # block label -> registers live at its start
    live_out: dict[int, set[int]]  # block label -> registers live at its end
    segments: dict[int, list[Segment]]  # block label -> its segments, in order


def segments(function: IrFunction) -> dict[int, list[Segment]]:
    """Split each block where the innermost handler changes (after TRY, after ENDTRY)."""
    by_label = {block.label: block for block in function.blocks}
    entry = function.blocks[0].label
    stacks: dict[int, tuple[int, ...]] = {entry: ()}
    work = [entry]
    result: dict[int, list[Segment]] = {}
    while work:
        label = work.pop()
        result[label] = _split(by_label[label], stacks[label], stacks, work)
    for block in function.blocks:  # unreachable blocks: no handler
        if block.label not in result:
            result[block.label] = _split(block, (), {}, [])
    return result


def _split(
    block: BasicBlock,
    stack: tuple[int, ...],
    stacks: dict[int, tuple[int, ...]],
    work: list[int],
) -> list[Segment]:
    def reach(label: int, at: tuple[int, ...]) -> None:
        known = stacks.get(label)
        if known is None:
            stacks[label] = at
            work.append(label)
        elif known != at:
            raise AssertionError(f"block L{label} is reached with different TRY handlers")

    parts: list[Segment] = []
    lo = 0
    for index, instr in enumerate(block.instrs):
        if instr.op is Op.TRY:
            reach(instr.operands[1], stack)  # the handler runs with this TRY popped
            parts.append(Segment(lo, index, stack[-1] if stack else None))
            stack = (*stack, instr.operands[1])
            lo = index + 1
        elif instr.op is Op.ENDTRY:
            parts.append(Segment(lo, index, stack[-1] if stack else None))
            stack = stack[:-1]
            lo = index + 1
        elif instr.op in _JUMPS:
            reach(instr.operands[-1], stack)
    if lo < len(block.instrs):
        parts.append(Segment(lo, len(block.instrs) - 1, stack[-1] if stack else None))
    for part in parts:
        for instr in block.instrs[part.lo : part.hi + 1]:
            for reg in instr.uses():
                if reg not in part.kill:
                    part.gen.add(reg)
            dst = instr.dst
            if dst is not None:
                part.kill.add(dst)
    return parts


def liveness(function: IrFunction) -> Liveness:
    parts = segments(function)
    successors = {
        block.label: [i.operands[-1] for i in block.instrs if i.op in _JUMPS]
        for block in function.blocks
    }
    live_in: dict[int, set[int]] = {label: set() for label in successors}
    live_out: dict[int, set[int]] = {label: set() for label in successors}
    changed = True
    while changed:
        changed = False
        for block in reversed(function.blocks):  # lowering's order: few rounds
            out: set[int] = set()
            for successor in successors[block.label]:
                out |= live_in[successor]
            live = out
            for part in reversed(parts[block.label]):
                live = part.gen | (live - part.kill)
                if part.handler is not None:
                    live |= live_in[part.handler]
            live_out[block.label] = out
            if live != live_in[block.label]:
                live_in[block.label] = live
                changed = True
    return Liveness(live_in, live_out, parts)
