"""Counts and rewrites over a function's IR that several passes share.

Instructions are treated as immutable values: passes replace them, never mutate them.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import chain
from operator import attrgetter

from avm_vm.format.opcodes import OPCODES
from avmc.ir import MOVE, IrFunction, IrInstr

WRITES = frozenset(op for op, info in OPCODES.items() if info.writes)
JUMPS = frozenset(op for op, info in OPCODES.items() if "J" in info.operands)


def def_counts(function: IrFunction) -> defaultdict[int, int]:
    """How many ops write each register; a parameter counts its arrival as one write."""
    counts: defaultdict[int, int] = defaultdict(int, dict.fromkeys(range(function.nparams), 1))
    for block in function.blocks:
        for instr in block.instrs:
            dst = instr.dst
            if dst is not None:
                counts[dst] += 1
    return counts


_op_of = attrgetter("op")
_instrs_of = attrgetter("instrs")


def has_moves(function: IrFunction) -> bool:
    """Whether any op is a MOVE (the copy passes have nothing to do otherwise); the search
    runs in C, over every block's ops chained."""
    return MOVE in map(_op_of, chain.from_iterable(map(_instrs_of, function.blocks)))


def use_counts(function: IrFunction) -> defaultdict[int, int]:
    counts: defaultdict[int, int] = defaultdict(int)
    for block in function.blocks:
        for instr in block.instrs:
            for reg in instr.reads:
                counts[reg] += 1
    return counts


def predecessor_counts(function: IrFunction) -> defaultdict[int, int]:
    """How many jump operands (TRY handlers included) name each block."""
    counts: defaultdict[int, int] = defaultdict(int)
    for block in function.blocks:
        for instr in block.instrs:
            if instr.op in JUMPS:
                for target in instr.targets():
                    counts[target] += 1
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
