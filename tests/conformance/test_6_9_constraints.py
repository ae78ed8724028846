"""Finite-domain layer (spec §6.9) and nondeterminism (spec §6.10)."""

from __future__ import annotations

from avm_vm.trace import TransactionAborted


def test_6_9_new_var_narrow_label(run):
    """§6.9: newVar answers the var's number; narrow intersects; label picks the first
    value of the domain order."""
    out = run("""
    main {
      let x = new_var([3, 1, 2])
      let ok = narrow(x, [1, 2])
      let bad = narrow(x, [9])
      return [x, ok, bad, label(x)]
    }""")
    assert out.text == "[0, true, false, 1]"


def test_6_9_post_propagates_and_refuses_inconsistency(run):
    """§6.9: post answers false on inconsistency and changes nothing."""
    out = run("""
    main {
      let x = new_var([1, 2, 3])
      let y = new_var([1, 2, 3])
      let a = post(["lt", x, y])
      let b = post(["val_geq", x, 3])
      let c = post(["val_eq", y, 3])
      return [a, b, c, label(x), unsafe reify_constraints()]
    }""")
    assert out.text == (
        '[true, false, true, 1, [[[0, [1]], [1, [3]]], [["lt", 0, 1], ["val_eq", 1, 3]]]]'
    )


def test_6_9_label_without_a_consistent_value_fails(run):
    out = run("""
    main {
      let x = new_var([1, 2]); let y = new_var([1, 2]); let z = new_var([1, 2])
      post(["alldiff", [x, y]])
      post(["neq", y, z]); post(["neq", x, z])
      return label(x)
    }""")
    assert out.error == "Failed: label: no value of variable 0 fits"


def test_6_9_variables_made_in_an_aborted_tx_vanish(run):
    """§6.9: variables of a tx belong to it; the abort restores the domains too."""
    out = run("""
    main {
      let x = new_var([1, 2, 3])
      let t = begin()
      let y = new_var([5])
      label(x)
      abort(t)
      return unsafe reify_constraints()
    }""")
    assert out.text == "[[[0, [1, 2, 3]]], []]"


def test_6_9_bad_constraint_is_a_type_mismatch(run):
    out = run('main { return post(["nonsense", 1]) }')
    assert out.error == "TypeMismatch: unknown constraint: nonsense/1"


def test_6_9_fd_in_profile_r_is_not_implemented(run):
    """§6.9 [R]: FdNotImplemented(name)."""
    out = run("main { return new_var([1]) }", profile="r")
    assert out.error == "FdNotImplemented: FD constraint solver not implemented: newVar"


def test_6_10_choose_answers_the_first_value(run):
    """§6.10 (our choice): a deterministic choice, the first value."""
    assert run('main { return choose(["a", "b"]) }').text == '"a"'
    assert run("main { return choose([]) }").error == "Failed: choose: no values to choose from"


def test_6_10_require_is_checked_at_commit(run):
    """§6.10: a false requirement fails the commit like a validation failure (rollback,
    TxConflict); a true one lets it commit."""
    out = run("""
    behavior C { on v { set_state([v]); return v } }
    main {
      let c = create C
      let t = begin()
      call(c, 5)
      require(false)
      return commit(t)
    }""")
    assert out.error == "TxConflict: transaction conflict: tx:0"
    assert out.runtime.store.state(0) == () and out.runtime.tx is None
    out = run("main { let t = begin(); require(true); return commit(t) }")
    assert out.text == "true"


def test_6_10_require_of_a_constraint_posts_it_at_commit(run):
    out = run("""
    main {
      let x = new_var([1, 2])
      let t = begin()
      require(["val_eq", x, 2])
      commit(t)
      return label(x)
    }""")
    assert out.text == "2"


def test_6_10_require_outside_tx_is_checked_at_once(run):
    assert run("main { require(true); return 1 }").text == "1"
    assert run("main { return require(false) }").error == "Failed: requirement failed: false"


def test_6_10_nondet_in_profile_r_is_not_implemented(run):
    """§6.10 [R]: NondetNotImplemented(name)."""
    out = run("main { return choose([1]) }", profile="r")
    assert out.error == "NondetNotImplemented: nondeterminism not implemented: choose"
    out = run("main { return require(true) }", profile="r")
    assert out.error == "NondetNotImplemented: nondeterminism not implemented: require"


def test_6_10_no_abort_event_for_a_true_requirement(run):
    out = run("main { let t = begin(); require(true); commit(t); return 0 }")
    assert out.events(TransactionAborted) == []
