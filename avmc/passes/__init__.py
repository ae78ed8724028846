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
from avmc.passes.fold import fold_constants, fold_telling
from avmc.passes.simplify import (
    merge_blocks,
    merge_telling,
    remove_unreachable,
    thread_jumps,
    unreachable_telling,
)

MAX_ROUNDS = 10

Pass = Callable[[IrFunction], bool]

PASSES: tuple[Pass, ...] = (
    fold_constants,
    coalesce_copies,  # before propagation, which would give the temporary a second read
    propagate_copies,
    eliminate_dead_code,
    # The control-flow clean-up, one step at a time.
    thread_jumps,
    remove_unreachable,
    merge_blocks,
)

# The passes that leave no work for a second run straight after them. Dead-code elimination
# repeats until it finds nothing more to remove. Once jumps are threaded, each goes to a
# block that is not a bare jump or to one in a loop of bare jumps (which stays as it is);
# unreachable blocks, once dropped, leave every block reachable; and one merging pass
# follows each chain to its end.
IDEMPOTENT = frozenset((eliminate_dead_code, thread_jumps, remove_unreachable, merge_blocks))

# The passes with nothing to do in a function without a copy (MOVE). No pass makes a copy
# (folding turns one into a LOADK, coalescing two into one, the others only remove ops or
# retarget jumps), so in a function without one they stay idle: not run at all.
COPY_PASSES = frozenset((coalesce_copies, propagate_copies))

# In a function without copies, the passes a change by each pass may give new work (a pass
# not named finds nothing after that change if it found nothing before; a pass names
# itself unless it is idempotent):
# - Dead-code elimination then removes only writes of registers nothing reads any more (a
#   copy to itself is the other thing it removes): every register still read keeps its
#   writes in their order, which is all folding looks at, and removing pure ops changes no
#   jump, so no path and no block's last ops; a block may be left a bare jump to thread.
# - Threading changes only jump targets: folding and dead-code elimination never look at
#   them (a branch folds on its condition's value).
# - Merging blocks changes what is known at the start of a block (for folding); it drops
#   jumps, which read no register (nothing for dead-code elimination), reaches nothing new
#   (nothing becomes unreachable) and leaves no jump to a bare jump to thread (a block it
#   takes in had one predecessor, the block that jumped to it, and once threaded no jump
#   goes to a bare jump but in a loop of them).
# Any other change may give any pass new work. Copies make no such promise: with a copy in
# the function, every change may give every pass but an idempotent one new work.
_EVERY = frozenset(PASSES)
_ANY_CHANGE = {run: _EVERY - {run} if run in IDEMPOTENT else _EVERY for run in PASSES}
WAKES: dict[Pass, frozenset[Pass]] = {
    **_ANY_CHANGE,
    eliminate_dead_code: frozenset((thread_jumps,)),
    thread_jumps: frozenset((remove_unreachable, merge_blocks)),
    merge_blocks: frozenset((fold_constants,)),
}

# Passes that also tell, when they change something, whether the change may give some of
# the passes `WAKES` names new work: their variant returning (changed, may), and those
# passes. Folding only finds more when a register it made a constant is read by an op that
# may fold; dropping blocks that are bare jumps changes only how many jumps reach a block
# (which merging counts); merging gives folding nothing new unless a merged block loads a
# constant into a register written elsewhere too (`fold`, `simplify` say why).
_TELLING: dict[Pass, tuple[Callable[[IrFunction], tuple[bool, bool]], frozenset[Pass]]] = {
    fold_constants: (fold_telling, frozenset((fold_constants,))),
    remove_unreachable: (unreachable_telling, WAKES[remove_unreachable] - {merge_blocks}),
    merge_blocks: (merge_telling, frozenset((fold_constants,))),
}


def run_pass(run: Pass, function: IrFunction, copies: bool) -> frozenset[Pass] | None:
    """Run ``run`` over ``function`` (which has a copy, or none since no pass makes one):
    None if it changed nothing, else the passes its change may have given new work."""
    if copies:
        return _ANY_CHANGE[run] if run(function) else None
    telling = _TELLING.get(run)
    if telling is None:
        return WAKES[run] if run(function) else None
    variant, conditional = telling
    changed, may = variant(function)
    if not changed:
        return None
    return WAKES[run] if may else WAKES[run] - conditional


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
    # found nothing or the pass is idempotent, and after changes that give it no new work
    # (`WAKES`). Such a pass is skipped, and once every pass is, a further round could
    # change nothing: stop there, mid-round.
    copies = has_moves(function)
    idle = frozenset() if copies else COPY_PASSES
    settled: set[Pass] = set(idle)
    for _ in range(MAX_ROUNDS):
        for run in PASSES:
            if run in settled:
                continue
            woken = run_pass(run, function, copies)
            if woken is None:
                settled.add(run)
                if len(settled) == len(PASSES):
                    return function
            else:
                settled -= woken
                settled |= idle
                if run not in woken:
                    settled.add(run)
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
