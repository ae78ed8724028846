"""A function past `LARGE_FUNCTION` instructions (a behavior with a thousand clauses) runs
block by block, each block translated when first reached: the first call costs in
proportion to the blocks it runs, not to the whole function (issue: a 10,000-clause
behavior's first call took 21 s and 3.9 GB translating it whole). Results, traces and fuel
are those of the whole translation. A function with many registers costs its caller in
proportion to them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from jit_support import native_functions, run_main
from vm_asm import Fn, assemble

from avm_vm.format.program import FunctionKind, Program
from avm_vm.runtime.core import Runtime, RuntimeOptions
from avm_vm.values import SIZE_UNIT, render
from avm_vm.vm import interpreter
from avm_vm.vm.interpreter import Interpreter
from avmc.compiler import compile_source

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from genprog import long_behavior

CLAUSES = 1_000


def _run(source: str) -> tuple[str, int, list[str], Runtime]:
    runtime = Runtime(compile_source(source, "big.avm"), RuntimeOptions(record_trace=True))
    value = render(runtime.run_main())
    trace = [type(entry).__name__ for entry in runtime.trace.entries]
    return value, runtime.fuel.used, trace, runtime


# The first clause in the default run, the last (found after the most blocks) in the slow.
@pytest.mark.parametrize("clause", [1, pytest.param(CLAUSES - 1, marks=pytest.mark.slow)])
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


# A CALL sets up every register of its callee: it costs WIDE // SIZE_UNIT steps more for a
# callee of WIDE registers, in the VM and in native code alike.
WIDE = 480
CALLS = 50


def _calls(registers: int) -> Program:
    """main calls a pure function of ``registers`` registers CALLS times."""
    callee = Fn("callee", [("ADD", 1, 0, 0), ("RET", 1)], params=1, regs="N" * registers)
    main = Fn(
        "main",
        [
            ("LOADK", 0, 0),
            ("LOADK", 1, CALLS),
            ("LOADK", 3, 1),
            "loop:",
            ("CALL", 2, "callee", (0,)),
            ("ADD", 0, 0, 3),
            ("LT", 4, 0, 1),
            ("JMPT", 4, "loop"),
            ("RET", 2),
        ],
        regs="NNNNB",
        kind=FunctionKind.MAIN,
    )
    return assemble(main, callee)


def test_a_call_pays_for_its_callee_registers() -> None:
    narrow = run_main(Interpreter(_calls(2)))
    wide = run_main(Interpreter(_calls(WIDE)))
    assert narrow[:2] == wide[:2] == ("ret", str(2 * (CALLS - 1)))
    assert wide[-1] - narrow[-1] == CALLS * (WIDE // SIZE_UNIT)


def test_native_calls_pay_as_the_vm_does(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVM_JIT_BUDGET", "120")  # a loaded machine still compiles it
    program = _calls(WIDE)
    assert native_functions(program) == ["main", "callee"]
    used = run_main(Interpreter(program))[-1]
    # Budgets that run out before, inside and after a call's charge.
    for fuel in sorted({used, used - 1, used // 2, used // 3 + 7, WIDE // SIZE_UNIT + 4, 4}):
        vm = run_main(Interpreter(program, "off"), fuel=fuel)
        assert run_main(Interpreter(program, "on"), fuel=fuel) == vm, fuel
