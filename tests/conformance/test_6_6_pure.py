"""Pure-function layer (spec §6.6)."""

from __future__ import annotations

from avm_vm.trace import FunctionUpdated

FNS = """
fn double(x) { return x * 2 }
fn triple(x) { return x * 3 }
fn fragile(x) { return x - 1 }
"""


def test_6_6_call_pure_answers_the_raw_result(run):
    """§6.6 [R]: the result unwrapped; no event."""
    out = run(FNS + 'main { return call_pure("double", [21]) }')
    assert out.text == "42"
    assert out.lines == []


def test_6_6_call_pure_declines_with_nothing(run):
    """§6.6 [R]: wrong arity or a failure inside answers nothing."""
    out = run(FNS + 'main { return [call_pure("double", [1, 2]), call_pure("fragile", [0])] }')
    assert out.text == "[nothing, nothing]"


def test_6_6_call_pure_unknown_is_pure_not_found(run):
    """§6.6 [R], §9.2: PureNotFound."""
    out = run('main { return call_pure("nope", []) }')
    assert out.error == "PureNotFound: function not found: nope"


def test_6_6_register_pure(run):
    """§6.6 (intended): registers version 0 under a new name, answers true, no event."""
    out = run(
        FNS
        + """
    main {
      let ok = unsafe register_pure("times2", double)
      return [ok, call_pure("times2", [5])]
    }"""
    )
    assert out.text == "[true, 10]"
    assert out.runtime.registry.pure("times2").version == 0
    assert out.lines == []


def test_6_6_register_pure_twice_is_already_registered(run):
    """§6.6: PureAlreadyRegistered (always, in profile R)."""
    out = run(FNS + 'main { return unsafe register_pure("double", triple) }')
    assert out.error == "PureAlreadyRegistered: function already registered: double"
    out = run(FNS + 'main { return unsafe register_pure("fresh", triple) }', profile="r")
    assert out.error == "PureAlreadyRegistered: function already registered: fresh"


def test_6_6_update_pure_replaces_and_bumps_version(run):
    """§6.6 (intended): new code, version + 1, FunctionUpdated, true."""
    out = run(
        FNS
        + 'main { let ok = update_pure("double", triple); return [ok, call_pure("double", [5])] }'
    )
    assert out.text == "[true, 15]"
    assert out.runtime.registry.pure("double").version == 1
    assert out.lines == ["[0] updated function double"]
    assert out.events(FunctionUpdated) == [FunctionUpdated("double")]


def test_6_6_update_pure_unknown_is_pure_not_found(run):
    out = run(FNS + 'main { return update_pure("ghost", triple) }')
    assert out.error == "PureNotFound: function not found: ghost"


def test_6_6_update_pure_in_profile_r_is_a_no_op(run):
    """§6.6 [R]: true and the event, nothing changed, even for unknown names."""
    out = run(
        FNS
        + """
        main {
          update_pure("double", triple)
          return [update_pure("ghost", triple), call_pure("double", [5])]
        }""",
        profile="r",
    )
    assert out.text == "[true, 10]"


def test_6_6_failed_callee_registration_is_undone(run):
    """docs/semantics.md: a failed callee's registrations are undone with it."""
    out = run(
        FNS
        + """
    behavior Reg { on _ { unsafe register_pure("temp", double); fail "no" } }
    main { call(create Reg, 0); return unsafe register_pure("temp", triple) }"""
    )
    assert out.text == "true"
    assert out.runtime.registry.pure("temp").function == 1
