"""Error kinds the runtime raises (spec §9.2) that other sections do not already cover, and
the profile-R propagation rules (§9.3)."""

from __future__ import annotations

import pytest

from avm_vm.trace import CallFailure
from avm_vm.values import NO_OBJECT_ID


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("call(5, 1)", "TypeMismatch: call: expected an object reference, found a nat"),
        ("commit(1)", "TypeMismatch: commit: expected a transaction reference, found a nat"),
        ("teleport(1)", "TypeMismatch: teleport: expected a string, found a nat"),
        (
            "begin([obj:1][0])",
            "TypeMismatch: begin: a controller is a name (a string), found an object "
            "reference; atomic under and begin take a controller name, such as 'bank'",
        ),
        ('call_pure("f", 1)', "TypeMismatch: call_pure: expected a list, found a nat"),
        ("new_var(1)", "TypeMismatch: a domain is a list, found a nat"),
        ("narrow(3, [1])", "TypeMismatch: unknown constraint variable: 3"),
    ],
)
def test_9_2_argument_kinds_are_checked(run, body, error):
    """Handlers reject arguments of the wrong kind with TypeMismatch naming the instruction."""
    assert run(f"main {{ return {body} }}").error == error


def test_9_3_callee_error_becomes_nothing_one_level_up(run):
    """§9.3 rule 2: a callee whose own call setup fails answers nothing to its caller."""
    out = run("""
    behavior Relay { on t { return call(t, 0) } }
    main { return call(create Relay, obj:42) }""")
    assert out.text == "nothing"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("1 - 2", "ArithmeticError: nat underflow: 1 - 2"),
        ("18446744073709551615 + 1", "ArithmeticError: nat overflow: 18446744073709551615 + 1"),
        ("7 % 0", "ArithmeticError: division by zero: 7 % 0"),
        ("[1, 2][5]", "IndexOutOfRange: index 5 out of range for a list of length 2"),
        ('"ab"[2]', "IndexOutOfRange: index 2 out of range for a string of length 2"),
        ("[1, 2, 3][2:1]", "IndexOutOfRange: slice [2:1] out of range for a list of length 3"),
        ("unwrap(nothing)", "UnwrapNothing: expected just a value, found nothing"),
        ("unwrap(3)", "TypeMismatch: expected just a value, found a nat"),
        ('1 + "a"', "TypeMismatch: '+' expects two nats, found a nat and a string"),
    ],
)
def test_9_vm_errors_of_checked_operations(run, body, error):
    """docs/language.md: nat arithmetic, indexing and unwrapping are checked; the VM's own
    kinds (not in the §9.2 catalogue) fail the activation."""
    assert run(f"main {{ return {body} }}").error == error


def test_9_call_bang_of_a_failed_callee_fails_as_the_callee_did(run):
    """`call!` of a callee that failed (§7.4: `call` answers nothing) fails the caller with
    the callee's own kind and message, and keeps where the callee failed; a message no
    clause matches fails the callee (docs/language.md)."""
    source = 'behavior B { on ["x"] { return 1 } } main { return [CALL(create B, "y")] }'
    assert run(source.replace("CALL", "call")).text == "[nothing]"
    out = run(source.replace("CALL", "call!"))
    assert out.error == "Failed: no clause of behavior B matches the message y"
    assert out.failure.origin == CallFailure(
        "Failed", "no clause of behavior B matches the message y", "test.avm:1:1"
    )


def test_9_no_match_arm_is_failed(run):
    """docs/language.md: a match no arm matches is a runtime error of the VM's Failed kind
    (the compiler lowers it to `fail` with a message naming the value)."""
    out = run("main { match [3] { [1] => { return 1 } } }")
    assert out.error == "Failed: no match arm matches the value [3]"


def test_9_pure_recursion_beyond_the_frame_limit_is_depth_exceeded(run):
    """docs/semantics.md Limits: the VM's frame limit bounds pure-function frames."""
    out = run("fn down(n) { return down(n + 1) } main { return down(0) }", max_frames=50)
    assert out.error == "DepthExceeded: call depth limit of 50 exceeded"
    assert out.failure.function == "down"


def test_9_building_past_the_value_budget_is_memory_exhausted(run):
    """docs/semantics.md Resource limits: values built count against --max-value-bytes; past
    it the run stops (no try catches it), at the instruction that built too much."""
    source = 'main { let s = "ab" atomic { while true { s = s ++ s } } else (e) { return e } }'
    out = run(source, max_value_bytes=1 << 16)
    assert out.error == (
        f"MemoryExhausted: out of memory: the run built more than {1 << 16} bytes of values"
        " (--max-value-bytes)"
    )
    assert out.failure.line == 1


def test_9_3_failed_top_level_program_keeps_its_effects_and_trace(run, run_on):
    """§9.3 rule 1: state changes made before the error remain. Our runtime also keeps the
    partial trace (R loses it, docs/semantics.md "The trace"), and the next run on the same
    state continues the timestamps (§10.2)."""
    out = run('behavior B { on _ { return 0 } } main { create B; set_state([7]); fail "x" }')
    assert out.error == "Failed: x"
    assert 0 in out.runtime.store and out.runtime.store.state(NO_OBJECT_ID) == (7,)
    assert out.lines == [
        "[0] created obj:0 (behavior: B)",
        f"[1] state updated: obj:{NO_OBJECT_ID} = [7]",
    ]
    again = run_on(out.runtime)
    assert again.error == "Failed: x"
    assert again.lines[2:] == [
        "[2] created obj:1 (behavior: B)",
        f"[3] state updated: obj:{NO_OBJECT_ID} = [7]",
    ]
