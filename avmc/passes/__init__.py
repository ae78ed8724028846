"""The optimisation passes over Tape IR, run together to a fixed point.

No pass removes, reorders or merges effects (spec §4.6): folding and dead-code elimination
only touch pure ops, and an op that would fail at run time stays so its error is kept.
"""

from __future__ import annotations

from collections.abc import Callable

from avmc.ir import BasicBlock, IrFunction, IrProgram
from avmc.passes.copyprop import coalesce_copies, propagate_copies
from avmc.passes.dce import eliminate_dead_code
from avmc.passes.fold import fold_constants
from avmc.passes.simplify import simplify_cfg

MAX_ROUNDS = 10

PASSES: tuple[Callable[[IrFunction], bool], ...] = (
    fold_constants,
    coalesce_copies,  # before propagation, which would give the temporary a second read
    propagate_copies,
    eliminate_dead_code,
    simplify_cfg,
)


def optimize(program: IrProgram) -> IrProgram:
    """An optimised copy of ``program`` (the input is left unchanged)."""
    return IrProgram(
        program.source_name,
        [optimize_function(_copy(function)) for function in program.functions],
        program.behaviors,
        program.main,
    )


def optimize_function(function: IrFunction) -> IrFunction:
    """Run the passes over ``function`` in place until none changes anything (bounded)."""
    # A pass is a function of the IR alone, so once every pass in a row has found nothing
    # to change, a further round would find nothing either: stop there, mid-round.
    unchanged = 0
    for _ in range(MAX_ROUNDS):
        for run in PASSES:
            if run(function):
                unchanged = 0
            else:
                unchanged += 1
                if unchanged == len(PASSES):
                    return function
    return function


def _copy(function: IrFunction) -> IrFunction:
    blocks = [BasicBlock(block.label, list(block.instrs)) for block in function.blocks]
    return IrFunction(
        function.name,
        function.kind,
        function.nparams,
        blocks,
        dict(function.reg_types),
        function.span,
    )
