"""Helpers for the JIT tests: runs observed in comparable form, with jit off and on.

`observe` runs main through the runtime (value or error, trace as text and JSON, fuel);
`run_main` runs main on an interpreter directly (value or fault with its pc, fuel), so one
compiled interpreter serves several budgets.
"""

from __future__ import annotations

from avm_vm.format.program import Program
from avm_vm.runtime.core import RunError, Runtime, RuntimeOptions
from avm_vm.trace import render_json_lines, render_text
from avm_vm.values import render
from avm_vm.vm.interpreter import DEOPT, Fault, Fuel, Interpreter, Proc, Ret


def observe(program: Program, jit: str, **options: int) -> dict[str, object]:
    """Everything a run of main shows: its value or error, its trace and the fuel it used."""
    runtime = Runtime(program, RuntimeOptions(jit=jit, **options))  # type: ignore[arg-type]
    seen: dict[str, object] = {}
    try:
        seen["value"] = render(runtime.run_main())
    except RunError as failure:
        error = failure.error
        seen["error"] = (error.kind, error.message, failure.function, failure.line, failure.col)
        seen["where"] = (failure.object_id, failure.behavior, failure.duct)
    seen["trace"] = render_text(runtime.trace.entries, duct=True)
    seen["json"] = render_json_lines(runtime.trace.entries)
    seen["fuel"] = runtime.fuel.used
    return seen


def run_main(interpreter: Interpreter, fuel: int = 10**7, max_frames: int = 100_000) -> tuple:
    """main's outcome: ``("ret", value, fuel used)`` or ``("fault", kind, message, where,
    fuel used)``, values rendered (so ``true`` and ``1`` differ)."""
    budget = Fuel(fuel)
    main = interpreter.program.main
    assert main is not None
    outcome = interpreter.run([interpreter.frame(main, ())], budget, max_frames)
    if type(outcome) is Ret:
        return ("ret", render(outcome.value), budget.used)
    assert type(outcome) is Fault, outcome
    error = outcome.error
    where = (outcome.function, outcome.pc, outcome.line, outcome.col)
    return ("fault", error.kind, error.message, where, budget.used)


def native_functions(program: Program) -> list[str]:
    """The functions jit on runs natively."""
    interpreter = Interpreter(program, "on")
    return [proc.name for proc in interpreter.procs if proc.native is not None]


def count_deopts(proc: Proc) -> list[int]:
    """Wrap ``proc``'s runner; the list returned grows by one each time it deoptimises."""
    seen: list[int] = []
    runner = proc.fast

    def counting(*args: object) -> object:
        outcome = runner(*args)
        if outcome is DEOPT:
            seen.append(args[0].pc)  # type: ignore[attr-defined]
        return outcome

    proc.fast = counting
    return seen
