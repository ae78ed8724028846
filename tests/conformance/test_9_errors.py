"""Error kinds the runtime raises (spec §9.2) that other sections do not already cover, and
the profile-R propagation rules (§9.3)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("call(5, 1)", "TypeMismatch: call: expected an object reference, found a nat"),
        ("commit(1)", "TypeMismatch: commit: expected a transaction reference, found a nat"),
        ("teleport(1)", "TypeMismatch: teleport: expected a string, found a nat"),
        ("begin(obj:1)", "TypeMismatch: begin: expected a string, found an object reference"),
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
