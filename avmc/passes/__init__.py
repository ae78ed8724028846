"""The optimisation passes over Tape IR, run together to a fixed point.

No pass removes, reorders or merges effects (spec §4.6): folding and dead-code elimination
only touch pure ops, and an op that would fail at run time stays so its error is kept.
"""

from __future__ import annotations

from collections.abc import Callable

from avmc.ir import BasicBlock, IrFunction, IrProgram
from avmc.passes.analysis import has_moves
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

# The passes that leave no work for a second run straight after them. Dead-code elimination
# repeats until it finds nothing more to remove. The control-flow clean-up: once jumps are
# threaded, each goes to a block that is not a bare jump or to one in a loop of bare jumps
# (which stays as it is); dropping unreachable blocks and merging a block into its only
# predecessor leave every block reachable and make no new bare jump, except a loop of
# bare jumps into a bare jump to itself; and one merging pass follows each chain to its end.
IDEMPOTENT = frozenset((eliminate_dead_code, simplify_cfg))

# The passes with nothing to do in a function without a copy (MOVE). No pass makes a copy
# (folding turns one into a LOADK, coalescing two into one, the others only remove ops or
# retarget jumps), so in a function without one they stay idle: not run at all.
COPY_PASSES = frozenset((coalesce_copies, propagate_copies))


def optimize(program: IrProgram, *, in_place: bool = False) -> IrProgram:
    """An optimised copy of ``program`` (the input is left unchanged), or with ``in_place``
    the program over its own functions, optimised where they are (for a caller that has no
    further use for the input)."""
    functions = program.functions if in_place else [_copy(f) for f in program.functions]
    return IrProgram(
        program.source_name,
        [optimize_function(function) for function in functions],
        program.behaviors,
        program.main,
    )


def optimize_function(function: IrFunction) -> IrFunction:
    """Run the passes over ``function`` in place until none changes anything (bounded)."""
    # A pass is a function of the IR alone, and one that finds nothing changes nothing: so a
    # pass would find nothing again while the IR is as its last run left it, if that run
    # found nothing or the pass is idempotent. Such a pass is skipped, and once every pass
    # is, a further round could change nothing: stop there, mid-round.
    idle = frozenset() if has_moves(function) else COPY_PASSES
    settled: set[Callable[[IrFunction], bool]] = set(idle)
    for _ in range(MAX_ROUNDS):
        for run in PASSES:
            if run in settled:
                continue
            if run(function):
                settled = {run, *idle} if run in IDEMPOTENT else set(idle)
            else:
                settled.add(run)
                if len(settled) == len(PASSES):
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
