"""What a run shows, for tests that run one program two ways and compare: its answer or
failure (with location and duct), fuel, trace, store with versions, and the counters a
node saves (store and trace clocks, call ids)."""

from __future__ import annotations

from avm_vm.format.program import Program
from avm_vm.runtime.core import RunError, Runtime
from avm_vm.runtime.runs import Done, Failed, Preempted
from avm_vm.trace import render_text
from avm_vm.values import render


def observe(runtime: Runtime) -> tuple[object, ...]:
    """Run main and answer everything the run shows."""
    try:
        shown = render(runtime.run_main())
    except RunError as failure:
        shown = (str(failure), failure.function, failure.line, failure.col, failure.duct)
    return shown, *state_of(runtime)


def state_of(runtime: Runtime) -> tuple[object, ...]:
    """Fuel used, the trace (text and stamps), the store with its versions, the counters."""
    entries = runtime.trace.entries
    marks = [(e.timestamp, e.reverted, e.controller, e.duct) for e in entries]
    store = runtime.store
    counters = (store.clock, runtime.trace.clock, runtime.call_ids)
    versions = sorted(store.versions.items())
    return runtime.fuel.used, render_text(entries), marks, store.dump(), versions, counters


def run_sliced(runtime: Runtime, program: Program, steps: int) -> tuple[object, ...]:
    """Run main in fuel slices of ``steps`` as a server does, to its end: its value or
    failure, how many times it stopped, and `state_of`."""
    runtime.slice = steps
    outcome = runtime.start(runtime.interpreters[0], program.main)  # type: ignore[arg-type]
    stops = 0
    while type(outcome) is Preempted and stops < 100_000:
        stops += 1
        outcome = runtime.proceed(sliced=True)
    assert type(outcome) is Done or type(outcome) is Failed
    value = render(outcome.value) if type(outcome) is Done else str(outcome.failure)
    return value, stops, *state_of(runtime)
