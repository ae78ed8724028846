"""Control-flow clean-up: unreachable blocks, jumps to jumps, and straight-line block chains."""

from __future__ import annotations

from avm_vm.format.opcodes import Op
from avmc.ir import IrFunction
from avmc.passes.analysis import JUMPS, map_targets, predecessor_counts


def remove_unreachable(function: IrFunction) -> bool:
    """Drop the blocks no path from the entry reaches (a TRY's handler counts as reached)."""
    by_label = {block.label: block for block in function.blocks}
    seen = {function.blocks[0].label}
    stack = [function.blocks[0].label]
    while stack:
        for instr in by_label[stack.pop()].instrs:
            if instr.op in JUMPS:
                for target in instr.targets():
                    if target not in seen:
                        seen.add(target)
                        stack.append(target)
    if len(seen) == len(function.blocks):
        return False
    function.blocks = [block for block in function.blocks if block.label in seen]
    return True


def thread_jumps(function: IrFunction) -> bool:
    """Retarget every jump to a block that only jumps on, to where that block goes."""
    forward = {
        block.label: block.instrs[0].operands[0]
        for block in function.blocks
        if len(block.instrs) == 1 and block.instrs[0].op is Op.JMP
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
            if instr.op in JUMPS and any(target in final for target in instr.targets()):
                block.instrs[index] = map_targets(instr, final)
                changed = True
    return changed


def merge_blocks(function: IrFunction) -> bool:
    """Append to a block ending in ``JMP B`` the block B when nothing else reaches B."""
    preds = predecessor_counts(function)
    by_label = {block.label: block for block in function.blocks}
    entry = function.blocks[0].label
    merged: set[int] = set()
    for block in function.blocks:
        if block.label in merged:
            continue
        while True:
            instrs = block.instrs
            last = instrs[-1]
            if last.op is not Op.JMP or (len(instrs) > 1 and instrs[-2].op in _BRANCHES):
                break
            target = last.operands[0]
            if target in (block.label, entry) or preds[target] != 1:
                break
            instrs.pop()
            instrs.extend(by_label[target].instrs)  # in place: long chains stay linear
            merged.add(target)
    if not merged:
        return False
    function.blocks = [block for block in function.blocks if block.label not in merged]
    return True


_BRANCHES = (Op.JMPT, Op.JMPF)


def simplify_cfg(function: IrFunction) -> bool:
    changed = thread_jumps(function)
    changed |= remove_unreachable(function)
    changed |= merge_blocks(function)
    return changed
