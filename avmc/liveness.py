"""Liveness of virtual registers, with the failure edges of TRY regions.

Register sets are Python sets: sparse, so memory follows what is actually live (a bitset
per block grows with the function's register count: quadratic in a long behavior). A TRY
pushes a handler until its ENDTRY; any op in between may fail and jump to the handler, so
every register live into the handler is live throughout the protected ops. Lowering opens
and closes TRY regions in a structured way, so the stack of open handlers at the start of
each block is the same along every path that reaches it; it is found by one forward walk.
"""

from __future__ import annotations

from dataclasses import dataclass

from avm_vm.format.opcodes import Op
from avmc.ir import BasicBlock, IrFunction, IrInstr, op_of

_JUMPS = (Op.JMP, Op.JMPT, Op.JMPF)
_HANDLER_OPS = frozenset((Op.TRY, Op.ENDTRY))


class Segment:
    """Ops ``lo..hi`` (indices in their block) run under one innermost handler (or none)."""

    __slots__ = ("gen", "handler", "hi", "kill", "lo")

    def __init__(self, lo: int, hi: int, handler: int | None) -> None:
        self.lo = lo
        self.hi = hi
        self.handler = handler
        self.gen: set[int] = set()  # registers read before any write here
        self.kill: set[int] = set()  # registers written in the segment


@dataclass
class Liveness:
    live_in: dict[int, set[int]]  # block label -> registers live at its start
    live_out: dict[int, set[int]]  # block label -> registers live at its end
    segments: dict[int, list[Segment]]  # block label -> its segments, in order


def segments(function: IrFunction, successors: dict[int, list[int]]) -> dict[int, list[Segment]]:
    """Split each block where the innermost handler changes (after TRY, after ENDTRY);
    ``successors`` are each block's jump targets, in order."""
    ops = map(op_of, function.ops())
    if _HANDLER_OPS.isdisjoint(ops):  # no handler anywhere: a block is one segment
        return {block.label: _whole_block(block.instrs) for block in function.blocks}
    by_label = {block.label: block for block in function.blocks}
    entry = function.blocks[0].label
    stacks: dict[int, tuple[int, ...]] = {entry: ()}
    work = [entry]
    result: dict[int, list[Segment]] = {}
    while work:
        label = work.pop()
        result[label] = _split(by_label[label], stacks[label], stacks, work, successors[label])
    for block in function.blocks:  # unreachable blocks: no handler
        if block.label not in result:
            result[block.label] = _split(block, (), {}, [], successors[block.label])
    return result


def _split(
    block: BasicBlock,
    stack: tuple[int, ...],
    stacks: dict[int, tuple[int, ...]],
    work: list[int],
    targets: list[int],
) -> list[Segment]:
    def reach(label: int, at: tuple[int, ...]) -> None:
        known = stacks.get(label)
        if known is None:
            stacks[label] = at
            work.append(label)
        elif known != at:
            raise AssertionError(f"block L{label} is reached with different TRY handlers")

    instrs = block.instrs
    parts: list[Segment] = []
    lo = 0
    if _HANDLER_OPS.isdisjoint(map(op_of, instrs)):  # one handler throughout: no walk
        for target in targets:
            reach(target, stack)
    else:
        for index, instr in enumerate(instrs):
            op = instr.op
            if op is Op.TRY:
                reach(instr.operands[1], stack)  # the handler runs with this TRY popped
                parts.append(Segment(lo, index, stack[-1] if stack else None))
                stack = (*stack, instr.operands[1])
                lo = index + 1
            elif op is Op.ENDTRY:
                parts.append(Segment(lo, index, stack[-1] if stack else None))
                stack = stack[:-1]
                lo = index + 1
            elif op in _JUMPS:
                reach(instr.operands[-1], stack)
    if lo < len(instrs):
        parts.append(Segment(lo, len(instrs) - 1, stack[-1] if stack else None))
    for part in parts:
        _gen_kill(part, instrs[part.lo : part.hi + 1])
    return parts


def _whole_block(instrs: list[IrInstr]) -> list[Segment]:
    """The segments of a block in a function without handlers: the block, if not empty."""
    if not instrs:
        return []
    part = Segment(0, len(instrs) - 1, None)
    _gen_kill(part, instrs)
    return [part]


def _gen_kill(part: Segment, instrs: list[IrInstr]) -> None:
    """Fill in what the segment of ``instrs`` reads before writing, and what it writes."""
    # Backwards: a register read before any write is one still read once the writes after
    # its reads are undone.
    gen, kill = part.gen, part.kill
    for instr in reversed(instrs):
        dst = instr.dst
        if dst is not None:
            gen.discard(dst)
            kill.add(dst)
        gen.update(instr.reads)


def liveness(function: IrFunction) -> Liveness:
    successors = {
        block.label: [i.operands[-1] for i in block.instrs if i.op in _JUMPS]
        for block in function.blocks
    }
    parts = segments(function, successors)
    # Whose live-in set to work out again when a block's changes: the blocks jumping to it,
    # and those with a part running under it as a handler.
    readers: dict[int, list[int]] = {label: [] for label in successors}
    for label, targets in successors.items():
        for target in targets:
            readers[target].append(label)
    for label, block_parts in parts.items():
        for part in block_parts:
            if part.handler is not None:
                readers[part.handler].append(label)
    live_in: dict[int, set[int]] = {label: set() for label in successors}
    live_out: dict[int, set[int]] = {label: set() for label in successors}
    # A worklist to the fixed point (it is unique, so the order only changes how soon it
    # is reached): the last block first, as lowering's order mostly runs forwards.
    work = [block.label for block in function.blocks]
    queued = set(work)
    while work:
        label = work.pop()
        queued.discard(label)
        out: set[int] = set()
        for successor in successors[label]:
            out |= live_in[successor]
        live = out
        for part in reversed(parts[label]):
            live = part.gen | (live - part.kill)
            if part.handler is not None:
                live |= live_in[part.handler]
        live_out[label] = out
        if live != live_in[label]:
            live_in[label] = live
            for reader in readers[label]:
                if reader not in queued:
                    queued.add(reader)
                    work.append(reader)
    return Liveness(live_in, live_out, parts)
