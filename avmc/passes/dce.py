"""Dead-code elimination: drop ops that cannot fail, have no effect, and whose result is
never read. Effects, calls, failures and ops that may fail at run time always stay.
"""

from __future__ import annotations

from avm_vm.format.opcodes import OPCODES, Op
from avmc.ir import MOVE, IrFunction
from avmc.passes.analysis import use_counts

_REMOVABLE = frozenset(
    op for op, info in OPCODES.items() if info.pure and not info.may_fail and info.writes
)
assert Op.MOVE in _REMOVABLE  # a copy to itself is dropped below as a removable op


def eliminate_dead_code(function: IrFunction) -> bool:
    uses = use_counts(function)
    changed = False
    progress = True
    while progress:  # removing an op can leave its operands unread
        progress = False
        for block in reversed(function.blocks):
            kept = []
            for instr in reversed(block.instrs):
                op = instr.op
                if op in _REMOVABLE:  # a MOVE among them
                    dst = instr.dst
                    if uses[dst] == 0 or (op is MOVE and instr.operands[1] == dst):
                        for reg in instr.reads:
                            uses[reg] -= 1
                        progress = True
                        continue
                kept.append(instr)
            if len(kept) != len(block.instrs):
                kept.reverse()
                block.instrs = kept
        changed |= progress
    return changed
