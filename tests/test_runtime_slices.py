"""Fuel slices (`Runtime.slice`): a server runs a run in slices so it can serve others in
between. A sliced run is preempted at block starts, or before an op whose charge exceeds
what its slice has left, and goes on with `Runtime.proceed`; the answer, the fuel used and
the trace are those of the same run made in one go."""

from __future__ import annotations

import pytest

from avm_vm.format.opcodes import Op
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


# One op costing far more than a slice: `str` (8 steps per item), `==` (8 per pair of items
# compared) or `++` (1 per 16 items) of a list of 8 * 2^14 items, built in 14 cheap steps.
BIG = """
main {
  let xs = [1, 2, 3, 4, 5, 6, 7, 8]
  let ys = [1, 2, 3, 4, 5, 6, 7, 8]
  let i = 0
  while i < 14 { xs = xs ++ xs; ys = ys ++ ys; i += 1 }
  let r = OP
  return [len(xs), r]
}
"""
BIG_OPS = {"str": ("len(str(xs))", Op.TOSTR), "eq": ("xs == ys", Op.EQ)}
BIG_OPS["concat"] = ("len(xs ++ ys ++ xs ++ ys ++ xs ++ ys)", Op.CONCAT)


@pytest.mark.parametrize("jit", ["off", "on"])
@pytest.mark.parametrize("op", sorted(BIG_OPS))
@pytest.mark.parametrize("sliced", [True, False], ids=["resumed-sliced", "resumed-whole"])
def test_an_op_costing_more_than_its_slice_is_preempted_before_it(
    op: str, jit: str, sliced: bool
) -> None:
    """The run stops at the op itself, its charge unpaid (so a server goes on with it
    where a run may take its time), and goes on through it exactly once: the answer and
    the fuel are those of the run made in one go."""
    expression, opcode = BIG_OPS[op]
    program = compile_source(BIG.replace("OP", expression), "big.avm")
    whole, whole_fuel, _ = _run(BIG.replace("OP", expression), jit, None)
    main = program.functions[program.main]  # type: ignore[index]
    # The op of the expression (the last of its kind), and every op that may be stopped:
    # `++` in the loop costs more than a slice too, from the 10th round on.
    target = max(pc for pc, instr in enumerate(main.code) if instr[0] is opcode)
    heavy = {pc for pc, instr in enumerate(main.code) if instr[0] in (opcode, Op.CONCAT)}
    runtime = Runtime(program, RuntimeOptions(jit=jit, record_trace=True))
    runtime.slice = 2_000
    outcome = runtime.start(runtime.interpreters[0], program.main)  # type: ignore[arg-type]
    ahead: list[int] = []  # the pcs of the stops before an op
    while type(outcome) is Preempted:
        pc = runtime.act.frames[-1].pc
        if runtime.fuel.ahead:
            ahead.append(pc)
            assert pc in heavy
            # Not paid yet: what is left to pay includes the op's charge, far above a slice.
            assert whole_fuel - runtime.fuel.used > 20 * runtime.slice
        # In slices up to the op, then as the parameter says (a node: unsliced).
        outcome = runtime.proceed(sliced=sliced or target not in ahead)
        assert len(ahead) < 100, "an op was preempted again and again"
    assert ahead.count(target) == 1  # stopped before it once, then it ran
    assert type(outcome) is Done
    assert (render(outcome.value), [type(e).__name__ for e in runtime.trace.entries]) == whole
    assert outcome.run.fuel.used == whole_fuel
