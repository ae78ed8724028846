"""The optimiser's shortcuts change nothing it produces.

`optimize_function` skips a pass that could find nothing: one whose last run found nothing,
or one in `IDEMPOTENT` whose last run left its own fixed point, when no pass has changed the
IR since. The reference is the plain loop, every pass in turn until all of them in a row find
nothing; and each pass called idempotent must find nothing when run again straight away.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from program_corpus import programs

import avmc.passes as passes
from avm_vm.diagnostics import DiagnosticError, Severity
from avmc.checks import check
from avmc.ir import BasicBlock, IrFunction, IrProgram, format_program
from avmc.lower import lower
from avmc.parser import parse

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


def _blocks(function: IrFunction) -> list[tuple[int, list]]:
    return [(block.label, list(block.instrs)) for block in function.blocks]


def test_idempotent_passes_find_nothing_straight_after_themselves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    again: dict[str, list[bool]] = {run.__name__: [] for run in passes.IDEMPOTENT}

    def checked(run: Pass) -> Pass:
        def wrapper(function: IrFunction) -> bool:
            changed = run(function)
            after = _blocks(function)
            again[run.__name__].append(run(function))
            function.blocks = [BasicBlock(label, instrs) for label, instrs in after]
            return changed

        return wrapper

    wrapped = tuple(checked(run) if run in passes.IDEMPOTENT else run for run in passes.PASSES)
    monkeypatch.setattr(passes, "PASSES", wrapped)
    monkeypatch.setattr(passes, "IDEMPOTENT", frozenset())  # every pass runs: all are seen
    for _, program in lowered():
        passes.optimize(program)
    for name, results in again.items():
        assert len(results) > 100, name
        assert not any(results), name
