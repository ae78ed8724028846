"""Counts and rewrites over a function's IR that several passes share.

Instructions are treated as immutable values: passes replace them, never mutate them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from itertools import chain

from avm_vm.format.opcodes import OPCODES
from avmc.ir import MOVE, IrFunction, IrInstr, dst_of, op_of, reads_of

WRITES = frozenset(op for op, info in OPCODES.items() if info.writes)
JUMPS = frozenset(op for op, info in OPCODES.items() if "J" in info.operands)


def def_counts(function: IrFunction) -> Counter[int]:
    """How many ops write each register (0 for one none writes); a parameter counts its
    arrival as one write. Counted in C: every pass asks."""
    counts = Counter(map(dst_of, function.ops()))
    counts.pop(None, None)  # type: ignore[call-overload]
    counts.update(range(function.nparams))
    return counts


def has_moves(function: IrFunction) -> bool:
    """Whether any op is a MOVE (the copy passes have nothing to do otherwise); the search
    runs in C, over every block's ops chained."""
    return MOVE in map(op_of, function.ops())


def use_counts(function: IrFunction) -> Counter[int]:
    """How many times ops read each register (0 for one none reads), counted in C."""
    return Counter(chain.from_iterable(map(reads_of, function.ops())))


def predecessor_counts(function: IrFunction) -> defaultdict[int, int]:
    """How many jump operands (TRY handlers included) name each block."""
    counts: defaultdict[int, int] = defaultdict(int)
    for block in function.blocks:
        for instr in block.instrs:
            if instr.op in JUMPS:
                counts[instr.operands[-1]] += 1  # an op's one jump target, its last operand
    return counts


def map_targets(instr: IrInstr, mapping: dict[int, int]) -> IrInstr:
    """A copy whose jump targets are renamed through ``mapping`` (others kept)."""
    fmt = OPCODES[instr.op].operands
    operands = tuple(
        mapping.get(operand, operand) if letter == "J" else operand
        for letter, operand in zip(fmt, instr.operands, strict=True)
    )
    return IrInstr(instr.op, operands, instr.span)


def with_dst(instr: IrInstr, dst: int) -> IrInstr:
    """A copy writing ``dst`` instead of its destination register."""
    return IrInstr(instr.op, (dst, *instr.operands[1:]), instr.span)
