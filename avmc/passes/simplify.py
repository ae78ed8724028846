"""Control-flow clean-up: unreachable blocks, jumps to jumps, and straight-line block chains."""

from __future__ import annotations

from avm_vm.format.opcodes import Op
from avmc.ir import JMP, LOADK, BasicBlock, IrFunction
from avmc.passes.analysis import JUMPS, def_counts, map_targets, predecessor_counts


def remove_unreachable(function: IrFunction) -> bool:
    """Drop the blocks no path from the entry reaches (a TRY's handler counts as reached)."""
    return unreachable_telling(function)[0]


def unreachable_telling(function: IrFunction) -> tuple[bool, bool]:
    """`remove_unreachable`, and whether a dropped block held more than a bare jump (an op
    that reads or writes a register)."""
    by_label = {block.label: block for block in function.blocks}
    seen = {function.blocks[0].label}
    stack = [function.blocks[0].label]
    while stack:
        for instr in by_label[stack.pop()].instrs:
            if instr.op in JUMPS:
                target = instr.operands[-1]  # an op's one jump target (`jump_targets`)
                if target not in seen:
                    seen.add(target)
                    stack.append(target)
    if len(seen) == len(function.blocks):
        return False, False
    kept, dropped = [], []
    for block in function.blocks:
        (kept if block.label in seen else dropped).append(block)
    function.blocks = kept
    return True, not all(_bare_jump(block) for block in dropped)


def _bare_jump(block: BasicBlock) -> bool:
    return len(block.instrs) == 1 and block.instrs[0].op is JMP


def thread_jumps(function: IrFunction) -> bool:
    """Retarget every jump to a block that only jumps on, to where that block goes."""
    forward = {
        block.label: block.instrs[0].operands[0]
        for block in function.blocks
        if len(block.instrs) == 1 and block.instrs[0].op is JMP
    }
    if not forward:
        return False
    final: dict[int, int] = {}
    for label in forward:
        seen = {label}
        target = forward[label]
        while target in forward and target not in seen:  # stop on a loop of bare jumps
            seen.add(target)
            target = forward[target]
        if target != label:
            final[label] = target
    if not final:
        return False
    changed = False
    for block in function.blocks:
        for index, instr in enumerate(block.instrs):
            if instr.op in JUMPS and instr.operands[-1] in final:  # its one jump target
                block.instrs[index] = map_targets(instr, final)
                changed = True
    return changed


def merge_blocks(function: IrFunction) -> bool:
    """Append to a block ending in ``JMP B`` the block B when nothing else reaches B."""
    return merge_telling(function)[0]


def merge_telling(function: IrFunction) -> tuple[bool, bool]:
    """`merge_blocks`, and whether a block that took others in has a LOADK of a register
    written more than once (what constant folding may now know at the start of the part
    appended after it; of a register written once it knew already)."""
    preds = predecessor_counts(function)
    by_label = {block.label: block for block in function.blocks}
    entry = function.blocks[0].label
    merged: set[int] = set()
    grown: list[BasicBlock] = []
    for block in function.blocks:
        if block.label in merged:
            continue
        size = len(merged)
        while True:
            instrs = block.instrs
            last = instrs[-1]
            if last.op is not JMP or (len(instrs) > 1 and instrs[-2].op in _BRANCHES):
                break
            target = last.operands[0]
            if target in (block.label, entry) or preds[target] != 1:
                break
            instrs.pop()
            instrs.extend(by_label[target].instrs)  # in place: long chains stay linear
            merged.add(target)
        if len(merged) > size:
            grown.append(block)
    if not merged:
        return False, False
    function.blocks = [block for block in function.blocks if block.label not in merged]
    loaded = {instr.dst for block in grown for instr in block.instrs if instr.op is LOADK}
    if not loaded:
        return True, False
    counts = def_counts(function)  # folding knows a register written once already
    return True, any(counts[register] > 1 for register in loaded)


_BRANCHES = (Op.JMPT, Op.JMPF)
