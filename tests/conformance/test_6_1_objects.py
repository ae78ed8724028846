"""Object layer (spec §6.1): createObj, destroyObj, call, receive."""

from __future__ import annotations

from avm_vm.trace import (
    CallFailure,
    MessageReceived,
    ObjectCalled,
    ObjectCreated,
    ObjectDestroyed,
)
from avm_vm.values import NOTHING, Just

CELL = """
behavior Cell {
  field value = 0
  on ["set", v] { value = v; return v }
  on ["get"] { return value }
  on ["boom", v] { value = v; fail "boom" }
}
"""


def test_6_1_1_create_obj_outside_tx_installs_object(run):
    """§6.1.1: fresh id, ObjectCreated, store entry with state [] (§3.3), controller as given."""
    out = run(
        CELL + 'main { let a = create Cell; let b = create Cell under "alice"; return [a, b] }'
    )
    assert out.text == "[obj:0, obj:1]"
    assert out.lines == ["[0] created obj:0 (behavior: Cell)", "[1] created obj:1 (behavior: Cell)"]
    store = out.runtime.store
    assert store.state(0) == () and store.get(0).current is None
    assert store.get(1).creating == store.get(1).current == "alice"
    assert store.get(0).machine == "local"
    assert store.get(0).code_hash == out.runtime.registry.code_hash("Cell")


def test_6_1_1_create_obj_in_tx_is_pending_until_commit(run):
    """§6.1.1: inside a tx the object is installed at commit; it is callable before, and
    getMachine does not see it yet (§6.7, profile R)."""
    out = run(
        CELL
        + """
    main {
      let t = begin()
      let c = create Cell
      let machine = get_machine(c)
      let r = call(c, ["set", 4])
      commit(t)
      return [machine, r, get_machine(c)]
    }"""
    )
    assert out.text == '[nothing, just 4, just "local"]'
    assert out.runtime.store.state(0) == (4,)


def test_6_1_1_create_obj_does_not_validate_the_name(run):
    """§3.2: an unknown behavior name is accepted by createObj."""
    out = run("extern behavior Ghost main { return create Ghost }")
    assert out.text == "obj:0"
    assert out.runtime.store.get(0).code_hash is None


def test_6_1_2_destroy_obj_outside_tx(run):
    """§6.1.2: removes all three entries at once, emits ObjectDestroyed, answers true."""
    out = run(CELL + 'main { let c = create Cell; call(c, ["set", 1]); return destroy(c) }')
    assert out.text == "true"
    assert out.events(ObjectDestroyed) == [ObjectDestroyed(0)]
    assert 0 not in out.runtime.store and 0 not in out.runtime.store.states


def test_6_1_2_destroy_obj_in_tx_is_buffered_and_object_stays_usable(run):
    """§6.1.2, §8.9: a pending-destroyed object can still be called; removed at commit."""
    out = run(
        CELL
        + """
    main {
      let c = create Cell
      let t = begin()
      destroy(c)
      let r = call!(c, ["set", 9])
      destroy(c)
      commit(t)
      return r
    }"""
    )
    assert out.text == "9"
    assert len(out.events(ObjectDestroyed)) == 2
    assert 0 not in out.runtime.store


def test_6_1_2_destroy_unknown_object_is_obj_not_found(run):
    """§6.1.2, §9.2: ObjNotFound."""
    out = run("main { return destroy(obj:5) }")
    assert out.error == "ObjNotFound: object not found: obj:5"


def test_6_1_3_call_answers_just_and_emits_object_called(run):
    """§6.1.3: `just out`; the callee's events precede ObjectCalled (post-order, §7.3)."""
    out = run(CELL + 'main { let c = create Cell; return call(c, ["set", 7]) }')
    assert out.text == "just 7"
    assert out.lines[-2:] == [
        "[1] state updated: obj:0 = [7]",
        '[2] called obj:0 with ["set", 7] -> 7',
    ]


def test_6_1_3_call_of_unknown_object_fails_the_caller(run):
    """§7.4: target unknown → the caller fails with ObjNotFound."""
    out = run('main { return call(obj:3, "hi") }')
    assert out.error == "ObjNotFound: object not found: obj:3"


def test_6_1_3_call_with_unregistered_behavior_is_behavior_not_found(run):
    """§7.1 step 5: BehaviorNotFound, after the txLog entry was recorded."""
    out = run("""
    behavior Maker { on _ { return create Nowhere } }
    extern behavior Nowhere
    main {
      let m = create Maker
      let ghost = call!(m, 0)
      let t = begin()
      let r = call(ghost, "hi")
      return r
    }""")
    assert out.error == 'BehaviorNotFound: behavior not found: "Nowhere"'
    tx = out.runtime.tx
    assert tx is not None and tx.log == [(1, "hi")] and tx.observed == {1}


def test_6_1_3_call_failure_answers_nothing(run):
    """§7.4: an error inside the callee: the caller's call answers nothing, one
    ObjectCalled without output, which keeps why the callee failed and where."""
    out = run(CELL + 'main { let c = create Cell; return call(c, ["boom", 3]) }')
    assert out.text == "nothing"
    failure = CallFailure("Failed", "boom", "test.avm:6:31")  # line 6: the `fail` of CELL
    assert out.events(ObjectCalled) == [ObjectCalled(0, ("boom", 3), None, failure)]
    assert out.lines[-1] == (
        '[2] called obj:0 with ["boom", 3] -> failed: Failed: boom (test.avm:6:31)'
    )


def test_6_1_4_receive_takes_the_message_once(run):
    """§6.1.4 (intended semantics): the first receive answers just the message, later ones
    nothing; each emits MessageReceived with its answer."""
    out = run("""
    behavior Box { on _ { return [receive(), receive(), input] } }
    main { let b = create Box; return [call!(b, "m"), receive()] }""")
    assert out.text == '[[just "m", nothing, "m"], nothing]'
    assert out.events(MessageReceived) == [
        MessageReceived(0, Just("m")),
        MessageReceived(0, NOTHING),
        MessageReceived(18446744073709551615, NOTHING),
    ]
    assert out.lines[1] == '[1] obj:0 received just "m"'


def test_6_1_4_receive_in_profile_r_is_the_stub(run):
    """§6.1.4 [R]: always nothing."""
    out = run(
        "behavior Box { on _ { return receive() } } main { return call(create Box, 1) }",
        profile="r",
    )
    assert out.text == "just nothing"
    assert out.lines[1] == "[1] obj:0 received nothing"


def test_created_event_names_behavior(run):
    out = run(CELL + "main { return create Cell }")
    assert out.events(ObjectCreated) == [ObjectCreated(0, "Cell")]
