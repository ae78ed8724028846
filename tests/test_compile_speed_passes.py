"""The optimiser's shortcuts change nothing it produces.

`optimize_function` skips a pass that could find nothing: one whose last run found nothing,
or one in `IDEMPOTENT` whose last run left its own fixed point, when no change since may
have given it new work (`WAKES`, refined by what some passes tell of their change). The
reference is the plain loop, every pass in turn until all of them in a row find nothing;
each pass called idempotent must find nothing when run again straight away; and a pass a
change does not wake must find nothing after it if it found nothing before.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from program_corpus import programs

import avmc.passes as passes
from avm_vm.diagnostics import DiagnosticError, Severity
from avm_vm.format.opcodes import OPCODES, Op
from avm_vm.format.program import FunctionKind
from avmc.checks import check
from avmc.ir import BasicBlock, IrFunction, IrInstr, IrProgram, format_program
from avmc.lower import lower
from avmc.parser import parse
from avmc.passes.analysis import JUMPS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from genprog import generate, long_behavior

Pass = Callable[[IrFunction], bool]


def lowered() -> Iterator[tuple[str, IrProgram]]:
    sources = {**programs(), "generated": generate(400), "long behavior": long_behavior(60)}
    for name, source in sources.items():
        try:
            module = parse(source, name)
        except DiagnosticError:
            continue
        if not any(d.severity is Severity.ERROR for d in check(module)):
            yield name, lower(module, name)
            yield name, lower(module, name, tests=True)


def plain_fixed_point(function: IrFunction) -> IrFunction:
    unchanged = 0
    for _ in range(passes.MAX_ROUNDS):
        for run in passes.PASSES:
            unchanged = 0 if run(function) else unchanged + 1
            if unchanged == len(passes.PASSES):
                return function
    return function


def test_same_ir_as_the_plain_loop() -> None:
    compared = 0
    for name, program in lowered():
        reference = IrProgram(
            program.source_name,
            [plain_fixed_point(passes._copy(f)) for f in program.functions],
            program.behaviors,
            program.main,
        )
        assert format_program(passes.optimize(program)) == format_program(reference), name
        compared += 1
    assert compared > 50


def _plain_loops(step: Callable[[Pass, IrFunction, bool], bool]) -> None:
    """The plain loop over every lowered function of the corpus, ``step`` running each pass
    (told whether the function had a copy to begin with) and saying whether it changed."""
    for _, program in lowered():
        for function in program.functions:
            copies = passes.has_moves(function)
            unchanged = 0
            for number in range(passes.MAX_ROUNDS * len(passes.PASSES)):
                run = passes.PASSES[number % len(passes.PASSES)]
                unchanged = 0 if step(run, function, copies) else unchanged + 1
                assert copies or not passes.has_moves(function)  # no pass makes a copy
                if unchanged == len(passes.PASSES):
                    break


def _finds_something(run: Pass, function: IrFunction) -> bool:
    return run(passes._copy(function))


def test_idempotent_passes_find_nothing_straight_after_themselves() -> None:
    again: dict[str, list[bool]] = {run.__name__: [] for run in passes.IDEMPOTENT}

    def step(run: Pass, function: IrFunction, copies: bool) -> bool:
        changed = run(function)
        if changed and run in passes.IDEMPOTENT:
            again[run.__name__].append(_finds_something(run, function))
        return changed

    _plain_loops(step)
    for name, results in again.items():
        assert len(results) > 50, name
        assert not any(results), name


def test_a_change_gives_new_work_only_to_the_passes_it_names() -> None:
    """`run_pass` says which passes a change may give new work; every other pass that found
    nothing before the change, and the pass itself, must find nothing after it (the
    optimiser skips them)."""
    spared: Counter[tuple[str, str]] = Counter()

    def step(run: Pass, function: IrFunction, copies: bool) -> bool:
        idle = [other for other in passes.PASSES if not _finds_something(other, function)]
        woken = passes.run_pass(run, function, copies)
        if woken is None:
            return False
        for other in [*idle, run]:  # the pass itself: unless named, nothing more straight after
            if other not in woken:
                assert not _finds_something(other, function), (run.__name__, other.__name__)
                spared[run.__name__, other.__name__] += 1
        return True

    _plain_loops(step)
    # Each promise is put to the test, the conditional ones included.
    fold, dce = passes.fold_constants.__name__, passes.eliminate_dead_code.__name__
    for changed, spared_pass in [
        (fold, fold),
        (dce, fold),
        ("thread_jumps", dce),
        ("remove_unreachable", fold),
        ("merge_blocks", fold),
        ("merge_blocks", "thread_jumps"),
    ]:
        assert spared[changed, spared_pass] > 20, (changed, spared_pass)


def _function(*blocks: list[IrInstr]) -> IrFunction:
    labelled = [BasicBlock(label, list(instrs)) for label, instrs in enumerate(blocks)]
    return IrFunction("f", FunctionKind.PURE, 1, labelled)


def test_merging_tells_when_folding_may_know_more() -> None:
    """Block 1, reached from block 0 alone, reads r1, which block 0 loads and block 2 writes
    again: only once they are one block does folding know r1 there."""
    loaded = 2

    def function(second_write: int) -> IrFunction:
        return _function(
            [IrInstr(Op.LOADK, (1, loaded)), IrInstr(Op.JMP, (1,))],
            [IrInstr(Op.ADD, (2, 1, 1)), IrInstr(Op.JMPF, (0, 2)), IrInstr(Op.JMP, (3,))],
            [IrInstr(Op.LOADK, (second_write, 7)), IrInstr(Op.JMP, (3,))],
            [IrInstr(Op.RET, (2,))],
        )

    twice = function(1)
    assert not _finds_something(passes.fold_constants, twice)
    assert passes.merge_telling(twice) == (True, True)
    assert passes.fold_constants(twice)
    assert (Op.LOADK, (2, loaded + loaded)) in [(i.op, i.operands) for i in twice.blocks[0].instrs]
    assert passes.run_pass(passes.merge_blocks, function(1), False) == {passes.fold_constants}

    # r1 loaded once: folding knew it everywhere already.
    assert passes.merge_telling(function(3)) == (True, False)
    assert passes.run_pass(passes.merge_blocks, function(3), False) == frozenset()


def test_dropping_blocks_tells_whether_they_held_more_than_a_jump() -> None:
    bare = _function([IrInstr(Op.RET, (0,))], [IrInstr(Op.JMP, (0,))])
    assert passes.unreachable_telling(bare) == (True, False)
    assert len(bare.blocks) == 1
    full = _function([IrInstr(Op.RET, (0,))], [IrInstr(Op.NOT, (1, 0)), IrInstr(Op.JMP, (0,))])
    assert passes.unreachable_telling(full) == (True, True)
    assert passes.unreachable_telling(full) == (False, False)


def test_a_jumps_target_is_its_last_operand() -> None:
    """Reachability and predecessor counts read an op's jump target as its last operand:
    every op with one has exactly one, last, as its own `targets` says."""
    for op in JUMPS:
        letters = OPCODES[op].operands
        assert letters.count("J") == 1 and letters.endswith("J"), op
    jumps = 0
    for _, program in lowered():
        for function in program.functions:
            for instr in (i for block in function.blocks for i in block.instrs):
                if instr.op in JUMPS:
                    assert instr.targets() == (instr.operands[-1],)
                    jumps += 1
    assert jumps > 1000
