"""Copy propagation: reads of a copy become reads of its source, and a value computed only
to be copied is computed straight into the copy's register.

A copy ``x = MOVE y`` where both x and y are written once (a parameter's arrival counts as
its write) makes x an alias of y everywhere: y's only write comes before x's, and every read
of x comes after x's write, so y cannot have changed in between. Other copies are followed
within their block until either register is written again.
"""

from __future__ import annotations

from collections import defaultdict

from avm_vm.format.opcodes import Op
from avmc.ir import IrFunction
from avmc.passes.analysis import WRITES, def_counts, has_moves, use_counts, with_dst


def propagate_copies(function: IrFunction) -> bool:
    if not has_moves(function):
        return False
    counts = def_counts(function)
    aliases = {
        instr.operands[0]: instr.operands[1]
        for block in function.blocks
        for instr in block.instrs
        if instr.op is Op.MOVE
        and counts[instr.operands[0]] == 1
        and counts[instr.operands[1]] == 1
        and instr.operands[0] != instr.operands[1]
    }
    changed = False
    for block in function.blocks:
        copies: dict[int, int] = {}  # register -> the register it copies, in this block
        copied_by: defaultdict[int, set[int]] = defaultdict(set)
        for index, instr in enumerate(block.instrs):
            if aliases or copies:  # else no read can be renamed
                rename = {}
                for reg in instr.reads:
                    source = _root(aliases, copies.get(reg, reg))
                    if source != reg:
                        rename[reg] = source
                if rename:
                    instr = instr.map_uses(rename)
                    block.instrs[index] = instr
                    changed = True
            dst = instr.dst
            if dst is None:
                continue
            copies.pop(dst, None)
            for copy in copied_by.pop(dst, ()):
                if copies.get(copy) == dst:
                    del copies[copy]
            if instr.op is Op.MOVE and instr.operands[1] != dst:
                copies[dst] = instr.operands[1]
                copied_by[instr.operands[1]].add(dst)
    return changed


def _root(aliases: dict[int, int], reg: int) -> int:
    """Follow single-write copies to the original register (compressing the path)."""
    path = []
    while reg in aliases and len(path) <= len(aliases):  # the bound guards a malformed cycle
        path.append(reg)
        reg = aliases[reg]
    for step in path:
        aliases[step] = reg
    return reg


def coalesce_copies(function: IrFunction) -> bool:
    """``t = op ...; x = MOVE t`` with t written and read only there becomes ``x = op ...``."""
    if not has_moves(function):
        return False
    counts = def_counts(function)
    uses = use_counts(function)
    changed = False
    for block in function.blocks:
        instrs = block.instrs
        out = [instrs[0]]
        for instr in instrs[1:]:
            previous = out[-1]
            if (
                instr.op is Op.MOVE
                and previous.op is not Op.TRY  # TRY writes its register later, on a failure
                and previous.op in WRITES
                and previous.operands[0] == instr.operands[1]
                and counts[instr.operands[1]] == 1
                and uses[instr.operands[1]] == 1
                and instr.operands[0] != instr.operands[1]
            ):
                out[-1] = with_dst(previous, instr.operands[0])
                changed = True
                continue
            out.append(instr)
        block.instrs = out
    return changed
