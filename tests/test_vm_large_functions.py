"""A function past `LARGE_FUNCTION` instructions (a behavior with a thousand clauses) runs
block by block, each block translated when first reached: the first call costs in
proportion to the blocks it runs, not to the whole function (issue: a 10,000-clause
behavior's first call took 21 s and 3.9 GB translating it whole). Results, traces and fuel
are those of the whole translation."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from avm_vm.runtime.core import Runtime, RuntimeOptions
from avm_vm.values import render
from avm_vm.vm import interpreter
from avmc.compiler import compile_source

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from genprog import long_behavior

CLAUSES = 1_000


def _run(source: str) -> tuple[str, int, list[str], Runtime]:
    runtime = Runtime(compile_source(source, "big.avm"), RuntimeOptions(record_trace=True))
    value = render(runtime.run_main())
    trace = [type(entry).__name__ for entry in runtime.trace.entries]
    return value, runtime.fuel.used, trace, runtime


@pytest.mark.parametrize("clause", [1, CLAUSES - 1])
def test_a_large_behavior_runs_by_blocks_as_it_would_whole(
    clause: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = long_behavior(CLAUSES).replace('["m1", 3]', f'["m{clause}", 30]')
    by_blocks = _run(source)
    big = next(p for p in by_blocks[3].interpreters[0].procs if p.name == "Big")
    assert len(big.function.code) > interpreter.LARGE_FUNCTION
    if clause == 1:  # the first clause matches at once: few blocks were translated
        assert 0 < len(big.careful_blocks) < len(big.starts) // 10
    monkeypatch.setattr(interpreter, "LARGE_FUNCTION", 10**9)
    whole = _run(source)
    assert by_blocks[:3] == whole[:3]
