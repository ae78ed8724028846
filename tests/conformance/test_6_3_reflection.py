"""Reflection and reification layers (spec §6.3, §6.4)."""

from __future__ import annotations

OBJS = """
behavior Thing { on _ { return 0 } }
fn owned(meta) { return meta[3] != nothing }
fn things(name, meta) { return name == "Thing" }
fn broken(meta) { return meta[9] }
fn not_bool(meta) { return 1 }
"""


def test_6_3_reflect_answers_metadata(run):
    """§6.3 [R]: just [obj, machine, creating, current]."""
    out = run(OBJS + 'main { let a = create Thing under "c1"; return unsafe reflect(a) }')
    assert out.text == 'just [obj:0, "local", just "c1", just "c1"]'


def test_6_3_reflect_of_unknown_object_fails(run):
    """§6.3 [R]: ReflectMetadataNotFound, also for a pending creation."""
    out = run(OBJS + "main { begin(); return unsafe reflect(create Thing) }")
    assert out.error == "ReflectMetadataNotFound: metadata not found for obj:0"


def test_6_3_scry_meta_keeps_matching_objects_in_id_order(run):
    """§6.3 (intended semantics): (id, meta) pairs whose metadata satisfy the predicate."""
    out = run(
        OBJS
        + """
    main {
      create Thing under "c"
      create Thing
      create Thing under "d"
      return unsafe scry_meta(owned)
    }"""
    )
    assert out.text == (
        '[(obj:0, [obj:0, "local", just "c", just "c"]), '
        '(obj:2, [obj:2, "local", just "d", just "d"])]'
    )


def test_6_3_scry_deep_sees_behaviors(run):
    """§6.3: [id, behavior, meta] for objects whose behavior and metadata match."""
    out = run(
        OBJS
        + """
    behavior Other { on _ { return 1 } }
    main { create Other; create Thing; return unsafe scry_deep(things) }"""
    )
    assert out.text == '[[obj:1, "Thing", [obj:1, "local", nothing, nothing]]]'


def test_6_3_scry_predicate_failure(run):
    """§6.3, §9.2: a predicate that fails or answers a non-bool is ScryPredicateFailed."""
    for predicate in ("broken", "not_bool"):
        out = run(OBJS + f"main {{ create Thing; return unsafe scry_meta({predicate}) }}")
        assert out.error == "ReflectScryPredicateFailed: scry predicate failed"


def test_6_3_scry_in_profile_r_always_fails(run):
    out = run(OBJS + "main { return unsafe scry_meta(owned) }", profile="r")
    assert out.error == "ReflectScryPredicateFailed: scry predicate failed"


def test_6_4_reify_context(run):
    """§6.4 [R]: [self, input, sender, machine, controller]."""
    out = run(OBJS + 'main { begin("boss"); return reify_context() }')
    assert out.text == '[obj:18446744073709551615, nothing, nothing, "local", just "boss"]'


def test_6_4_reify_tx_state_counts(run):
    """§6.4 [R]: just [tx, #writes, #creates, #destroys, #observed]."""
    out = run(
        OBJS
        + """
    main {
      let old = create Thing
      let t = begin()
      let a = create Thing
      call(a, 1)
      call(a, 2)
      destroy(old)
      return unsafe reify_tx_state()
    }"""
    )
    assert out.text == "just [tx:0, 2, 1, 1, 1]"


def test_6_4_reify_tx_state_outside_tx_fails(run):
    """§6.4 [R]: ReifyNoTransaction."""
    out = run("main { return unsafe reify_tx_state() }")
    assert out.error == "ReifyNoTransaction: no active transaction to reify"


def test_6_4_reify_constraints_is_the_fd_store(run):
    """§6.4 (intended): the FD store as data: [[[var, domain]...], [constraints...]]."""
    out = run("""
    main {
      let x = new_var([1, 2, 3])
      let y = new_var([1, 2, 3])
      post(["lt", x, y])
      return unsafe reify_constraints()
    }""")
    assert out.text == '[[[0, [1, 2]], [1, [2, 3]]], [["lt", 0, 1]]]'


def test_6_4_reify_constraints_in_profile_r_fails(run):
    out = run("main { return unsafe reify_constraints() }", profile="r")
    assert out.error == "ReifyConstraintStoreUnavailable: constraint store unavailable"
