"""Calls (spec §7), the activation stack (§4.5), fuel and depth, and the duct."""

from __future__ import annotations

import pytest

from avm_vm.runtime.core import Runtime
from avm_vm.trace import CallFailure, ObjectCalled, StateUpdated
from avm_vm.values import ObjectRef

FAILING = """
behavior Inner { on _ { set_state(["inner"]); return 1 } }
behavior Outer {
  on [i] { set_state(["outer"]); call(i, 0); create Inner; fail "late" }
}
main {
  let i = create Inner
  let o = create Outer
  let r = call(o, [i])
  return [r, 0]
}
"""


def test_7_3_ducts_chain_the_calls(run, pingpong):
    """DESIGN.md §7: each entry's duct is the chain of calls leading to it."""
    out = run(pingpong(3))
    innermost = out.runtime.trace.entries[4]
    assert innermost.duct == ((0, "ping", 0), (1, "pong", 1), (0, "ping", 2), (1, "pong", 3))
    assert out.runtime.trace.entries[7].duct == ((0, "ping", 0),)
    assert out.runtime.trace.entries[0].duct == ()


def test_4_5_deep_pingpong_runs_without_python_recursion(run, pingpong):
    """§4.5: 100,000 rounds of nested calls with the default settings."""
    out = run(pingpong(100_000), record_trace=False)
    text = out.text
    assert text.startswith("just " * 100_001) and text.endswith('["done", 100000]')


def test_7_depth_limit_is_fatal(run, pingpong):
    """--max-depth: DepthExceeded stops the run; it is not a failed call."""
    out = run(pingpong(50), max_depth=10)
    assert out.error == "DepthExceeded: call depth limit of 10 exceeded"
    assert out.failure.behavior in ("ping", "pong")


def test_fuel_exhaustion_is_fatal_and_aborts_the_open_tx(run):
    """Fuel: exhaustion is fatal, names the running object and behavior, aborts the tx."""
    out = run(
        """
    behavior Spin { on _ { set_state([1]); while true { } } }
    main { let s = create Spin; let t = begin(); return call(s, 0) }""",
        fuel=500,
    )
    assert out.error == "FuelExhausted: out of fuel after 500 steps"
    assert (out.failure.object_id, out.failure.behavior) == (0, "Spin")
    assert out.failure.duct == ((0, "Spin", 0),)
    assert out.runtime.tx is None
    assert out.lines[-1] == "[3] tx aborted: tx:0"
    assert out.runtime.store.state(0) == ()


def test_7_1_failed_callee_is_undone_and_its_trace_marked_reverted(run):
    """§7.1 step 9 as amended (docs/semantics.md "A failed callee is undone"): store writes,
    nested calls and creations of a failed callee are undone (ids stay used); its entries
    stay, marked reverted; one ObjectCalled without output; the caller goes on."""
    out = run(FAILING)
    assert out.text == "[nothing, 0]"
    store = out.runtime.store
    assert store.state(0) == () and store.state(1) == ()
    assert 2 not in store
    assert out.lines == [
        "[0] created obj:0 (behavior: Inner)",
        "[1] created obj:1 (behavior: Outer)",
        '[2] state updated: obj:1 = ["outer"] (reverted)',
        '[3] state updated: obj:0 = ["inner"] (reverted)',
        "[4] called obj:0 with 0 -> 1 (reverted)",
        "[5] created obj:2 (behavior: Inner) (reverted)",
        "[6] called obj:1 with [obj:0] -> failed: Failed: late (test.avm:4:60)",
    ]
    late = CallFailure("Failed", "late", "test.avm:4:60")  # where Outer fails
    assert out.events(ObjectCalled)[-1] == ObjectCalled(1, (ObjectRef(0),), None, late)


def test_7_1_step_9_profile_r_keeps_a_failed_callees_effects_and_drops_its_trace(run):
    """§7.1 step 9 [R] (--profile r): nothing is undone, the callee's entries (its nested
    call's too) are dropped and their timestamps not reused."""
    out = run(FAILING, profile="r")
    assert out.text == "[nothing, 0]"
    store = out.runtime.store
    assert store.state(0) == ("inner",) and store.state(1) == ("outer",) and 2 in store
    assert out.lines == [
        "[0] created obj:0 (behavior: Inner)",
        "[1] created obj:1 (behavior: Outer)",
        "[6] called obj:1 with [obj:0] -> failed: Failed: late (test.avm:4:60)",
    ]


def test_7_5_call_to_object_on_another_machine_without_transport(run):
    """§7.5: the remote path; with no transport, MachineUnreachable fails the caller."""
    out = run("""
    behavior B { on _ { return 1 } }
    main { let b = create B; move_object(b, "far"); return call(b, 0) }""")
    assert out.error == "MachineUnreachable: machine unreachable: machine:far"


def test_7_5_remote_call_through_a_transport(compile, run_on):
    """§7.5: the transport's answer comes back wrapped in just, with an ObjectCalled entry."""

    class Echo:
        def call(self, machine, target, message, sender):
            assert (target, sender) == (0, 18446744073709551615)
            return (machine, message)

    program = compile("""
    behavior B { on _ { return 1 } }
    main { let b = create B; move_object(b, "far"); return call(b, 7) }""")
    runtime = Runtime(program, transport=Echo())
    out = run_on(runtime)
    assert out.text == 'just ["far", 7]'
    assert out.lines[-1] == '[2] called obj:0 with 7 -> ["far", 7]'


def test_7_post_order_and_sibling_order(run):
    """§10.5: a call's entries precede its ObjectCalled; siblings in execution order."""
    out = run("""
    behavior Leaf { on n { set_state([n]); return n } }
    behavior Node { on [a, b] { call(a, 1); call(b, 2); return 0 } }
    main { let a = create Leaf; let b = create Leaf; return call(create Node, [a, b]) }""")
    assert out.text == "just 0"
    assert out.lines[3:] == [
        "[3] state updated: obj:0 = [1]",
        "[4] called obj:0 with 1 -> 1",
        "[5] state updated: obj:1 = [2]",
        "[6] called obj:1 with 2 -> 2",
        "[7] called obj:2 with [obj:0, obj:1] -> 0",
    ]
    assert len(out.events(StateUpdated)) == 2


@pytest.mark.slow
def test_4_5_million_round_pingpong_with_raised_depth_limit(run, pingpong):
    """§4.5: 1,000,000 nested calls fit in memory when --max-depth allows them."""
    out = run(pingpong(1_000_000), max_depth=1_100_000, record_trace=False)
    assert out.text.endswith('just ["done", 1000000]')
