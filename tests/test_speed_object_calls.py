"""Object calls and the introspection instructions performed in place (vm_translate).

Translated code has the runtime perform `get_state`, `set_state`, `self`, `input`, `sender`
and `current_machine` without suspending its frame, and runs a local callee of `call` or
`call!` one level deep (`Runtime.perform_call`), instead of a `Vis` round trip through the
runtime's loop. With `Interpreter.host` set to None every instruction takes the round trip,
so each program here runs both ways, and everything observable must agree: the answer or
the failure (with its location), the fuel used, the trace, and the store. Speed itself is
measured by bench/vm_bench.py.
"""

from __future__ import annotations

import pytest
from run_observations import observe, run_sliced

from avm_vm.runtime.core import Runtime, RuntimeOptions
from avm_vm.values import WALK_STEPS, Just, Pair, Value, parts_within
from avm_vm.vm.interpreter import RETRY
from avmc.compiler import compile_source

COUNTER = """
behavior Counter {
  field count = 0
  on ["inc"] { count += 1; return count }
  on ["who"] { return [self, input, sender, current_machine()] }
  on ["bad"] { count += 1; set_state(5) }
  on ["boom"] { count += 100; fail "boom" }
  on ["loop"] { let i = 0 while i < 1000 { count += 1; i += 1 } return count }
}
"""

PROGRAMS = {
    "counter": COUNTER
    + """
    main {
      let c = create Counter
      let i = 0
      while i < 30 { call(c, ["inc"]); i += 1 }
      return [call!(c, ["inc"]), call(c, ["who"])]
    }""",
    "failures": COUNTER
    + """
    main {
      let c = create Counter
      let a = call(c, ["bad"])
      let b = call(c, ["boom"])
      let r = 0
      atomic { call!(c, ["inc"]); call!(c, ["boom"]) } else (err, kind) { r = [kind, err] }
      return [a, b, r, call!(c, ["inc"])]
    }""",
    "strict failure": COUNTER
    + """
    main {
      let c = create Counter
      call!(c, ["inc"])
      return call!(c, ["bad"])
    }""",
    "transactions": COUNTER
    + """
    main {
      let c = create Counter
      let d = create Counter
      atomic { call(c, ["inc"]); call(c, ["inc"]); call(d, ["inc"]) }
      let t = begin()
      call(c, ["inc"])
      abort(t)
      atomic { call(d, ["inc"]); require(false) } else (err, kind) { call(c, ["inc"]) }
      return [call!(c, ["inc"]), call!(d, ["inc"])]
    }""",
    "nested": (
        "behavior ping {\n"
        '  on [_, count, max, _] if count >= max { return ["done", count] }\n'
        '  on [_, count, max, p] { return call(p, ["Pong", count + 1, max, p]) }\n'
        "}\n"
        "behavior pong {\n"
        '  on [_, count, max, _] if count >= max { return ["done", count] }\n'
        '  on [_, count, max, _] { return call(unwrap(sender), ["Ping", count + 1, max, self]) }\n'
        "}\n"
        "main { let p = create ping\n let q = create pong\n"
        ' return call(p, ["Ping", 0, 25, q]) }'
    ),
    "loop in a callee": COUNTER
    + """
    main {
      let c = create Counter
      return [call!(c, ["loop"]), call!(c, ["loop"])]
    }""",
}


def run_both(source: str, **options: object) -> tuple[tuple[object, ...], tuple[object, ...]]:
    """The observations of ``source`` run in place and with a round trip per instruction."""
    program = compile_source(source, "calls.avm")
    observed = []
    for in_place in (True, False):
        runtime = Runtime(program, RuntimeOptions(**options))  # type: ignore[arg-type]
        if not in_place:
            for interpreter in runtime.interpreters:
                interpreter.host = None
        observed.append(observe(runtime))
    return observed[0], observed[1]


@pytest.mark.parametrize("jit", ["off", "on"])
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_in_place_runs_show_what_round_trips_show(name: str, jit: str) -> None:
    in_place, round_trips = run_both(PROGRAMS[name], jit=jit)
    assert in_place == round_trips


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_profile_r_agrees_too(name: str) -> None:
    in_place, round_trips = run_both(PROGRAMS[name], profile="r", jit="off")
    assert in_place == round_trips


def test_fuel_running_out_anywhere_fails_the_same_way() -> None:
    """Fuel limits that run out at every kind of point of a call (its charges, a state
    write's walk, the callee's body, the caller after it) fail alike, with the same fuel."""
    source = PROGRAMS["failures"]
    full = run_both(source, jit="off")[0][1]
    assert isinstance(full, int) and full > 500
    seen = set()
    for limit in range(40, full + 2, 7):
        in_place, round_trips = run_both(source, jit="off", fuel=limit)
        assert in_place == round_trips, limit
        seen.add(str(in_place[0])[:40])
    assert len(seen) > 2  # the limits did stop the run at different points


def test_the_value_budget_running_out_fails_the_same_way() -> None:
    source = PROGRAMS["counter"]
    for limit in range(200, 6000, 350):
        in_place, round_trips = run_both(source, jit="off", max_value_bytes=limit)
        assert in_place == round_trips, limit


def test_depth_limit_fails_the_same_way() -> None:
    in_place, round_trips = run_both(PROGRAMS["nested"], jit="off", max_depth=7)
    assert "DepthExceeded" in str(in_place[0])
    assert in_place == round_trips


def test_sliced_runs_agree() -> None:
    """A server's fuel slices stop a run anywhere, a callee running in place included."""
    program = compile_source(PROGRAMS["transactions"], "calls.avm")
    observed = []
    for in_place in (True, False):
        runtime = Runtime(program, RuntimeOptions(jit="off"))
        if not in_place:
            runtime.interpreters[0].host = None
        observed.append(run_sliced(runtime, program, 37))
        assert observed[-1][1] > 10
    assert observed[0] == observed[1]


def test_a_call_and_its_state_effects_leave_the_runner_once() -> None:
    """The point of performing them in place: the caller's code runs on after each call,
    and the callee's body runs through, so the interpreter is entered about once per call
    instead of once per instruction (it fails when the round trips come back)."""
    calls = 200
    source = COUNTER + (
        "main { let c = create Counter\n let i = 0\n"
        f' while i < {calls} {{ call(c, ["inc"]); i += 1 }}\n return 0 }}'
    )
    program = compile_source(source, "calls.avm")
    entered = {}
    for in_place in (True, False):
        runtime = Runtime(program, RuntimeOptions(jit="off"))
        interpreter = runtime.interpreters[0]
        if not in_place:
            interpreter.host = None
            # Nor as a leaf call (test_leaf_calls.py), which never enters the interpreter.
            runtime.call_leaf = lambda *args: RETRY  # type: ignore[method-assign]
        count = [0]
        run = interpreter.run

        def counted(*args: object, run=run, count=count) -> object:
            count[0] += 1
            return run(*args)

        interpreter.run = counted  # type: ignore[method-assign]
        runtime.run_main()
        entered[in_place] = count[0]
    assert entered[True] <= calls + 5
    assert entered[False] >= 5 * calls


@pytest.mark.parametrize(
    "value",
    [(), (1, "a", True), tuple(range(40)), ((1, 2), 3), (Just(1),), (Pair(1, 2), 5), "text", 7],
)
def test_a_state_write_walk_costs_what_parts_within_counts(value: Value) -> None:
    """`Runtime.pay_walk` counts a flat list without walking it: the same charge."""
    runtime = Runtime(compile_source("main { return 0 }", "walk.avm"))
    before = runtime.fuel.remaining
    runtime.pay_walk(value)
    assert before - runtime.fuel.remaining == WALK_STEPS * (parts_within(value, 1 << 30) - 1)
