"""Constant folding: an op whose operands are known constants becomes a LOADK of its result,
and a JMPT/JMPF on a known bool becomes a JMP. Ops that would fail are left alone.

A register is a known constant inside a block after a LOADK into it, and everywhere when
that LOADK is its only write (every read of a register is preceded by a write of it).
"""

from __future__ import annotations

from itertools import chain, compress

from avm_vm.format.opcodes import OPCODES
from avmc.ir import JMP, JMPF, JMPT, LOADK, IrFunction, IrInstr, op_of, reads_of
from avmc.passes.analysis import def_counts
from avmc.passes.evaluate import FOLDABLE, evaluate

_UNKNOWN = object()
# The ops folding may replace, when what they read is known.
_CANDIDATES = FOLDABLE | {JMPT, JMPF}


def fold_constants(function: IrFunction) -> bool:
    return fold_telling(function)[0]


def fold_telling(function: IrFunction) -> tuple[bool, bool]:
    """Fold ``function``; whether anything changed, and whether a second run could find
    more: only when a register this run made a constant everywhere (its one write folded)
    is read by an op that may fold. (Any other register is known at each point exactly as
    this run knew it: a second run would find nothing.)"""
    counts = def_counts(function)
    everywhere = {
        instr.operands[0]: instr.operands[1]
        for block in function.blocks
        for instr in block.instrs
        if instr.op is LOADK and counts[instr.operands[0]] == 1
    }
    changed = False
    made: set[int] = set()  # registers whose one write was folded
    for block in function.blocks:
        # The block's own loads so far, over `everywhere` (a register written otherwise
        # since is dropped: only its single LOADK, if any, is known).
        local: dict[int, object] = {}
        out: list[IrInstr] = []
        for instr in block.instrs:
            op = instr.op
            if op is LOADK:
                local[instr.dst] = instr.operands[1]  # type: ignore[index]
                out.append(instr)
                continue
            if op in FOLDABLE:
                for reg in instr.reads:
                    if reg not in local and reg not in everywhere:
                        break
                else:
                    folded = _fold(instr, local, everywhere)
                    if folded is not None:
                        local[folded.dst] = folded.operands[1]  # type: ignore[index]
                        out.append(folded)
                        changed = True
                        if counts[folded.dst] == 1:
                            made.add(folded.dst)  # type: ignore[arg-type]
                        continue
            elif op is JMPT or op is JMPF:
                value = _value(instr.operands[0], local, everywhere)
                if type(value) is bool:
                    changed = True
                    if value is (op is JMPT):  # taken: it replaces the final JMP
                        out.append(IrInstr(JMP, (instr.operands[1],), instr.span))
                        break
                    continue  # never taken: the final JMP remains
            out.append(instr)
            if instr.dst in local:  # written again: no longer the loaded constant
                del local[instr.dst]
        block.instrs = out
    if not made:
        return changed, False
    ops = list(function.ops())
    candidates = compress(ops, map(_CANDIDATES.__contains__, map(op_of, ops)))
    return changed, not made.isdisjoint(chain.from_iterable(map(reads_of, candidates)))


def _value(reg: int, local: dict[int, object], everywhere: dict[int, object]) -> object:
    value = local.get(reg, _UNKNOWN)
    return everywhere.get(reg, _UNKNOWN) if value is _UNKNOWN else value


def _fold(
    instr: IrInstr, local: dict[int, object], everywhere: dict[int, object]
) -> IrInstr | None:
    """``instr`` as a LOADK of its result, its register operands all being known."""
    args = []
    for letter, operand in zip(OPCODES[instr.op].operands[1:], instr.operands[1:], strict=True):
        if letter == "R":
            args.append(_value(operand, local, everywhere))
        elif letter == "L":
            args.append(tuple(_value(r, local, everywhere) for r in operand))
        else:
            args.append(operand)
    result = evaluate(instr.op, args)
    if result is None:
        return None
    return IrInstr(LOADK, (instr.operands[0], result), instr.span)
