"""Fuel slices (`Runtime.slice`): a server runs a run in slices so it can serve others in
between. A sliced run is preempted at block starts and goes on with `Runtime.proceed`; the
answer, the fuel used and the trace are those of the same run made in one go."""

from __future__ import annotations

import pytest

from avm_vm.runtime.core import Runtime, RuntimeOptions
from avm_vm.runtime.runs import Done, Failed, Preempted
from avm_vm.values import render
from avmc.compiler import compile_source

SOURCE = """
fn square(n) { return n * n }
behavior Acc {
  field total = 0
  on ["add", n] { total += n; return total }
}
main {
  let a = create Acc
  let i = 0
  let s = 0
  while i < 3000 {
    s += square(i)
    if i % 500 == 0 { call!(a, ["add", i]) }
    i += 1
  }
  return [s, call!(a, ["add", 0])]
}
"""

FAILING = """
main {
  let i = 0
  while i < 2000 { i += 1 }
  fail "done spinning"
}
"""


def _run(source: str, jit: str, slice_size: int | None) -> tuple[object, int, int]:
    """The outcome's rendering, the fuel used, and how many preemptions it took."""
    program = compile_source(source, "slices.avm")
    runtime = Runtime(program, RuntimeOptions(jit=jit, record_trace=True))
    runtime.slice = slice_size
    interpreter = runtime.interpreters[0]
    outcome = runtime.start(interpreter, program.main)  # type: ignore[arg-type]
    stops = 0
    while type(outcome) is Preempted:
        stops += 1
        outcome = runtime.proceed(sliced=stops % 3 != 0)  # some go on unsliced
        if stops > 100_000:
            raise AssertionError("the run never ended")
    used = outcome.run.fuel.used
    if type(outcome) is Done:
        shown = render(outcome.value)
    else:
        assert type(outcome) is Failed
        shown = str(outcome.failure)
    trace = [type(entry).__name__ for entry in runtime.trace.entries]
    return (shown, trace), used, stops


@pytest.mark.parametrize("jit", ["off", "on"])
@pytest.mark.parametrize("source", [SOURCE, FAILING], ids=["done", "failed"])
def test_a_sliced_run_answers_what_an_unsliced_run_answers(source: str, jit: str) -> None:
    whole, whole_fuel, whole_stops = _run(source, jit, None)
    assert whole_stops == 0
    for size in (1, 7, 100, 1000):
        sliced, sliced_fuel, stops = _run(source, jit, size)
        assert sliced == whole
        assert sliced_fuel == whole_fuel
        assert stops > 0  # it really was cut into slices


def test_proceed_without_a_preempted_run_is_refused() -> None:
    runtime = Runtime(compile_source(SOURCE, "slices.avm"), RuntimeOptions(jit="off"))
    with pytest.raises(RuntimeError, match="no preempted run"):
        runtime.proceed()
