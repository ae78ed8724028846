"""Constant folding: an op whose operands are known constants becomes a LOADK of its result,
and a JMPT/JMPF on a known bool becomes a JMP. Ops that would fail are left alone.

A register is a known constant inside a block after a LOADK into it, and everywhere when
that LOADK is its only write (every read of a register is preceded by a write of it).
"""

from __future__ import annotations

from avm_vm.format.opcodes import OPCODES, Op
from avmc.ir import IrFunction, IrInstr
from avmc.passes.analysis import WRITES, def_counts
from avmc.passes.evaluate import FOLDABLE, evaluate

_UNKNOWN = object()


def fold_constants(function: IrFunction) -> bool:
    counts = def_counts(function)
    known_everywhere = {
        instr.operands[0]: instr.operands[1]
        for block in function.blocks
        for instr in block.instrs
        if instr.op is Op.LOADK and counts[instr.operands[0]] == 1
    }
    changed = False
    for block in function.blocks:
        known = _Known(known_everywhere)
        out: list[IrInstr] = []
        for instr in block.instrs:
            if instr.op in (Op.JMPT, Op.JMPF):
                value = known.get(instr.operands[0])
                if type(value) is bool:
                    changed = True
                    if value is (instr.op is Op.JMPT):  # taken: it replaces the final JMP
                        out.append(IrInstr(Op.JMP, (instr.operands[1],), instr.span))
                        break
                    continue  # never taken: the final JMP remains
            folded = _fold(instr, known) if instr.op in FOLDABLE else None
            if folded is not None:
                instr = folded
                changed = True
            out.append(instr)
            if instr.op in WRITES:
                known.local[instr.operands[0]] = (
                    instr.operands[1] if instr.op is Op.LOADK else _UNKNOWN
                )
        block.instrs = out
    return changed


class _Known:
    """Constants known at a point of a block: the block's own loads over the global ones."""

    __slots__ = ("everywhere", "local")

    def __init__(self, everywhere: dict[int, object]) -> None:
        self.everywhere = everywhere
        self.local: dict[int, object] = {}

    def get(self, reg: int) -> object:
        value = self.local.get(reg, _UNKNOWN)
        return self.everywhere.get(reg, _UNKNOWN) if value is _UNKNOWN else value


def _fold(instr: IrInstr, known: _Known) -> IrInstr | None:
    args = []
    for letter, operand in zip(OPCODES[instr.op].operands[1:], instr.operands[1:], strict=True):
        if letter == "R":
            value = known.get(operand)
            if value is _UNKNOWN:
                return None
            args.append(value)
        elif letter == "L":
            values = tuple(known.get(r) for r in operand)
            if any(v is _UNKNOWN for v in values):
                return None
            args.append(values)
        else:
            args.append(operand)
    result = evaluate(instr.op, args)
    if result is None:
        return None
    return IrInstr(Op.LOADK, (instr.operands[0], result), instr.span)
