"""Leaf calls (`Runtime.call_leaf`): a local callee outside any transaction whose clause
calls nothing and catches nothing runs to its end without an activation, through its
direct translation (`translate_direct`), which reads and writes its own state and keeps
its writes until it returns. When it does not simply return (a failure, another
instruction, fuel or the value budget running out, a fuel slice ending) the fuel is put
back and the call is made again on a frame.

Every program here runs twice, with leaf calls and with `call_leaf` always declining, and
everything observable must agree: the answer or failure (with its location and duct), the
fuel used, the trace, the store with its versions, and the counters a node saves (the
store and trace clocks, the call ids). Speed is measured by bench/vm_bench.py.
"""

from __future__ import annotations

import pytest
from run_observations import observe, run_sliced

from avm_vm.runtime.core import Runtime, RuntimeOptions
from avm_vm.vm.interpreter import RETRY
from avmc.compiler import compile_source

LEAVES = """
behavior Counter {
  field count = 0
  field name = "c"
  on ["inc"] { count += 1; return count }
  on ["add", n] { count += n; return count }
  on ["who"] { return [self, count] }
  on ["grow", s] { name = name ++ s; return name }
  on ["bad"] { count += 1; set_state(5) }
  on ["boom"] { count += 100; fail "boom" }
  on ["loop", n] { let i = 0 while i < n { count += 1; i += 1 } return count }
  on ["over"] { count += 18446744073709551615; count += 18446744073709551615; return count }
}
behavior Relay {
  on [c, m] { return call(c, m) }
}
"""

PROGRAMS = {
    "counter": """
    main {
      let c = create Counter
      let i = 0
      while i < 30 { call(c, ["inc"]); i += 1 }
      return [call!(c, ["inc"]), call(c, ["who"]), call(c, ["add", 5])]
    }""",
    "failures after a write": """
    main {
      let c = create Counter
      let i = 0
      while i < 10 { call(c, ["inc"]); i += 1 }
      let a = call(c, ["bad"])
      let b = call(c, ["boom"])
      let d = call(c, ["over"])
      let e = call(c, ["nope"])
      return [a, b, d, e, call!(c, ["inc"])]
    }""",
    "strict failure": """
    main {
      let c = create Counter
      call!(c, ["inc"])
      return call!(c, ["boom"])
    }""",
    "transactions around leaves": """
    main {
      let c = create Counter
      let d = create Counter
      call(c, ["inc"])
      atomic { call(d, ["add", 2]); call(c, ["inc"]) }
      let t = begin()
      call(d, ["inc"])
      abort(t)
      call(d, ["inc"])
      atomic { require(false) } else (err, kind) { call(c, ["add", 3]) }
      return [call!(c, ["inc"]), call!(d, ["who"])]
    }""",
    "from a callee": """
    main {
      let c = create Counter
      let r = create Relay
      let i = 0
      while i < 10 { call(r, [c, ["inc"]]); i += 1 }
      return [call!(r, [c, ["boom"]]), call!(c, ["inc"])]
    }""",
    "loops and strings": """
    main {
      let c = create Counter
      let i = 0
      while i < 6 { call(c, ["grow", "abcdefghijklmnopqrstuvwxyz"]); i += 1 }
      return [call!(c, ["loop", 200]), call!(c, ["grow", "!"])]
    }""",
}


class Leaves:
    """Counts the leaf calls that completed; with ``enabled`` False, declines every one."""

    def __init__(self, runtime: Runtime, enabled: bool) -> None:
        self.done = 0
        call_leaf = runtime.call_leaf

        def counted(*args: object) -> object:
            if not enabled:
                return RETRY
            answer = call_leaf(*args)  # type: ignore[arg-type]
            self.done += answer is not RETRY
            return answer

        runtime.call_leaf = counted  # type: ignore[method-assign]


def run_both(source: str, **options: object) -> tuple[tuple[object, ...], tuple[object, ...], int]:
    """The observations of ``source`` with and without leaf calls, and how many ran."""
    program = compile_source(LEAVES + source, "leaves.avm")
    observed = []
    done = 0
    for enabled in (True, False):
        runtime = Runtime(program, RuntimeOptions(**options))  # type: ignore[arg-type]
        leaves = Leaves(runtime, enabled)
        observed.append(observe(runtime))
        done += leaves.done
    return observed[0], observed[1], done


@pytest.mark.parametrize("jit", ["off", "on"])
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_leaf_calls_show_what_calls_on_frames_show(name: str, jit: str) -> None:
    leaves, frames, done = run_both(PROGRAMS[name], jit=jit)
    assert leaves == frames
    assert done > 0  # the leaf path did run


def test_failing_leaves_are_undone_and_retried() -> None:
    """A leaf that fails after setting its state: nothing of it is kept (no write, version,
    clock tick or trace entry), and the call on a frame fails as it must."""
    leaves, frames, done = run_both(PROGRAMS["failures after a write"], jit="off")
    assert leaves == frames
    assert leaves[0] == "[nothing, nothing, nothing, nothing, 11]"
    assert done == 11  # the failures went back to a frame


def test_fuel_running_out_anywhere_fails_the_same_way() -> None:
    source = PROGRAMS["counter"]
    full = run_both(source, jit="off")[0][1]
    assert isinstance(full, int) and full > 1000
    stopped = set()
    for limit in [*range(30, full, 41), full]:
        leaves, frames, _ = run_both(source, jit="off", fuel=limit)
        assert leaves == frames, limit
        stopped.add(str(leaves[0]))
    assert len(stopped) > 3  # stops in main and in the callee, and the run's answer


def test_the_value_budget_running_out_fails_the_same_way() -> None:
    source = PROGRAMS["loops and strings"]
    for limit in range(300, 9000, 211):
        leaves, frames, _ = run_both(source, jit="off", max_value_bytes=limit)
        assert leaves == frames, limit


def test_depth_limit_fails_the_same_way() -> None:
    leaves, frames, _ = run_both(PROGRAMS["from a callee"], jit="off", max_depth=1)
    assert "DepthExceeded" in str(leaves[0])
    assert leaves == frames


@pytest.mark.parametrize("slice_steps", [20, 37, 300])
def test_sliced_runs_agree(slice_steps: int) -> None:
    """A server's fuel slices end anywhere, inside a leaf's body too: the leaf is retried
    on a frame, which stops where the slice ends."""
    program = compile_source(LEAVES + PROGRAMS["loops and strings"], "leaves.avm")
    observed = []
    for enabled in (True, False):
        runtime = Runtime(program, RuntimeOptions(jit="off"))
        Leaves(runtime, enabled)
        observed.append(run_sliced(runtime, program, slice_steps))
    assert observed[0] == observed[1]
    assert observed[0][1] > 10  # it did stop


def test_only_leaves_take_the_leaf_path() -> None:
    """A clause that calls, catches, or performs any other instruction is not a leaf."""
    source = """
    fn twice(x) { return x * 2 }
    behavior Other {
      field n = 1
      on ["log"] { n += 1; log(n); return n }
      on ["catch"] { atomic { n += 1 } else { n += 2 } return n }
      on ["fn"] { n = twice(n); return n }
    }
    main {
      let o = create Other
      return [call!(o, ["log"]), call!(o, ["catch"]), call!(o, ["fn"])]
    }"""
    leaves, frames, done = run_both(source, jit="off")
    assert leaves == frames
    assert done == 0


def test_a_behavior_whose_calls_go_back_stops_being_tried() -> None:
    """A clause that performs another instruction gives up at it and runs on a frame; when
    that is most of a behavior's calls, its calls are no longer tried as leaves."""
    source = """
    behavior Mixed {
      field n = 0
      on ["inc"] { n += 1; return n }
      on ["log"] { n += 1; log(n); return n }
    }
    main {
      let m = create Mixed
      let i = 0
      while i < 20 { call(m, ["inc"]); i += 1 }
      while i < 30 { call(m, ["log"]); i += 1 }
      while i < 50 { call(m, ["inc"]); i += 1 }
      return call!(m, ["inc"])
    }"""
    leaves, frames, done = run_both(source, jit="off")
    assert leaves == frames
    assert leaves[0] == "51"
    assert done == 20  # the first twenty; after the logging calls, none


def test_a_trace_not_kept_still_counts_every_event() -> None:
    """Without a trace kept (``record_trace`` off, as a benchmark runs), a leaf call's events
    still take their stamps: the trace clock moves as it does on a frame."""
    leaves, frames, done = run_both(PROGRAMS["counter"], jit="off", record_trace=False)
    assert leaves == frames
    assert done > 0
    assert leaves[6][1] >= 2 * done  # nearly every call writes a state and returns
