"""`call_pure` performed inside the VM (its translation, vm_translate), its callee run by
its direct translation when it has one (`translate_direct`), against the runtime's handler
(handlers/pure.py) running the callee on a frame, as every call_pure ran before: the same
answers, failures (kind, message, function, line), fuel used, memory budget left and
trace, for every fuel and memory budget across a program's life and with the fuel in
slices."""

from __future__ import annotations

import pytest

from avm_vm.format.instructions import BY_NAME
from avm_vm.runtime.core import Runtime, RuntimeOptions
from avm_vm.runtime.runs import Done, Failed, Outcome, Preempted
from avm_vm.values import render
from avmc.compiler import compile_source

FUNCTIONS = """
fn double(x) { return x * 2 }
fn fragile(x) { return x - 1 }
fn deep(n) { if n == 0 { return 0 } return 1 + deep(n - 1) }
fn spin(n) { let i = 0 while i < n { i += 1 } return i }
fn build(n) { let xs = [] let i = 0 while i < n { xs = append(xs, i) ; i += 1 } return xs }
"""

PROGRAMS = {
    "answers": 'main { let s = 0 let i = 0 while i < 20 { s += call_pure("double", [i]); '
    "i += 1 } return s }",
    "declines": 'main { return [call_pure("double", [1, 2]), call_pure("fragile", [0]), '
    'call_pure("fragile", [5])] }',
    "nested calls": 'main { return [call_pure("deep", [30]), call_pure("spin", [50])] }',
    "builds": 'main { return call_pure("build", [12]) }',
    "unknown name": 'main { return call_pure("nope", []) }',
    "caught unknown": 'main { atomic { return call_pure("nope", []) } else (err, kind) '
    "{ return [err, kind] } }",
    "updated": 'main { let a = call_pure("double", [5]) update_pure("double", fragile) '
    'return [a, call_pure("double", [5])] }',
    "too deep": 'main { return call_pure("deep", [200]) }',
}


def _runtime(source: str, inline: bool, jit: str = "off", **options: int) -> Runtime:
    """With jit auto, functions count towards tiering up and use no direct translation
    (before the JIT decides about them): so "off" is the default here."""
    program = compile_source(FUNCTIONS + source, "pure.avm")
    runtime = Runtime(program, RuntimeOptions(jit=jit, **options))
    if not inline:  # every call_pure goes to the runtime, its callee on a frame, as before
        for interpreter in runtime.interpreters:
            interpreter.registry = None
            for proc in interpreter.procs:
                proc.direct = None
    return runtime


def _settle(runtime: Runtime, outcome: Outcome, tiny_slices: bool) -> tuple[object, ...]:
    """What a run came to: its answer or failure, fuel used, memory left and trace."""
    stops = 0
    while type(outcome) is Preempted:
        stops += 1
        # Some go on unsliced: a block longer than the slice runs only then.
        outcome = runtime.proceed(sliced=stops % 3 != 0)
        assert stops < 100_000, "the run never ended"
    # A slice overruns into the thousands of steps inside a pure call (SLICE_OVERRUN), and
    # a larger slice may hold a whole short run: only tiny slices are sure to stop one.
    assert stops > 0 or not tiny_slices
    fuel = outcome.run.fuel
    if type(outcome) is Done:
        shown: object = render(outcome.value)
    else:
        assert type(outcome) is Failed
        failure = outcome.failure
        shown = (str(failure), failure.function, failure.line, failure.col)
    trace = [str(entry.event) for entry in runtime.trace.entries]
    return shown, fuel.used, fuel.room, trace


def _run(
    source: str, inline: bool, slice_size: int | None = None, jit: str = "off", **options: int
) -> tuple:
    runtime = _runtime(source, inline, jit, **options)
    runtime.slice = slice_size
    interpreter = runtime.interpreters[0]
    outcome = runtime.start(interpreter, interpreter.program.main)  # type: ignore[arg-type]
    return _settle(runtime, outcome, slice_size is not None and slice_size <= 2)


# jit auto in the slow suite: tests/test_jit_call_pure.py covers the native path by default.
@pytest.mark.parametrize("jit", ["off", pytest.param("auto", marks=pytest.mark.slow)])
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_the_vm_answers_what_the_runtime_answers(name: str, jit: str) -> None:
    source = PROGRAMS[name]
    whole = _run(source, False, jit=jit, max_depth=64)
    assert _run(source, True, jit=jit, max_depth=64) == whole
    used = whole[1]
    # Every fuel budget up to what the run needs: it fails at the same instruction.
    for fuel in range(1, used + 2, max(1, used // 150)):
        assert _run(source, True, jit=jit, fuel=fuel) == _run(source, False, jit=jit, fuel=fuel)
    for size in (1, 2, 300):
        assert _run(source, True, size, jit) == _run(source, False, size, jit) == whole


@pytest.mark.slow  # every memory budget up to the program's need: about 8 s
@pytest.mark.parametrize("name", ["answers", "builds", "nested calls"])
def test_the_memory_budget_runs_out_at_the_same_place(name: str) -> None:
    source = PROGRAMS[name]
    whole = _run(source, inline=False)
    spent = whole[2]
    budget = RuntimeOptions().max_value_bytes - spent
    for limit in range(1, budget + 64, max(1, budget // 100)):
        inline = _run(source, True, max_value_bytes=limit)
        assert inline == _run(source, False, max_value_bytes=limit), limit


def test_the_vm_performs_call_pure_without_the_runtime() -> None:
    """The comparison above compares two paths: the handler runs only for the runtime's,
    and the callee's direct translation only for the VM's."""
    number = BY_NAME["call_pure"].number
    counts = {}
    for inline in (True, False):
        runtime = _runtime(PROGRAMS["answers"], inline)
        handler = runtime.handlers[number]
        calls = []
        runtime.handlers[number] = lambda rt, args, h=handler, c=calls: c.append(1) or h(rt, args)
        assert runtime.run_main() == 380
        counts[inline] = len(calls)
        double = runtime.interpreters[0].procs[0]
        assert double.name == "double"
        made = getattr(double.direct, "__name__", None) == "run"  # translate_direct's
        assert made is inline
    assert counts == {True: 0, False: 20}
