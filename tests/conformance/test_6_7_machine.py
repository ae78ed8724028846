"""Machine layer (spec §6.7)."""

from __future__ import annotations

from avm_vm.trace import ExecutionMoved, ObjectFetched, ObjectMoved

B = "behavior B { on _ { return current_machine() } }\n"


def test_6_7_get_machine(run):
    """§6.7 [R]: just the store's machine; nothing for unknown objects."""
    out = run(B + "main { return [get_machine(create B), get_machine(obj:9)] }")
    assert out.text == '[just "local", nothing]'


def test_6_7_teleport_moves_the_execution(run):
    """§6.7 [R]: ExecutionMoved(from, to), true; objects created afterwards live there."""
    out = run(
        B
        + """
        main {
          let ok = teleport("far")
          let b = create B
          return [ok, current_machine(), get_machine(b), call(b, 0)]
        }"""
    )
    assert out.text == '[true, "far", just "far", just "far"]'
    assert out.events(ExecutionMoved) == [ExecutionMoved("local", "far")]
    assert out.lines[0] == "[0] execution moved from machine:local to machine:far"


def test_6_7_teleport_in_tx_is_forbidden(run):
    """§6.7 [R], §9.2: MachineTeleportDuringTx."""
    out = run('main { begin(); teleport("x") }')
    assert out.error == "MachineTeleportDuringTx: teleport forbidden during active transaction"


def test_6_7_callee_machine_is_restored_after_teleport(run):
    """§7.1 step 8: the caller's machine is its own after the call."""
    out = run(
        'behavior T { on _ { teleport("away"); return current_machine() } }'
        "main { let r = call(create T, 0); return [r, current_machine()] }"
    )
    assert out.text == '[just "away", "local"]'


def test_6_7_move_object(run):
    """§6.7 [R]: ObjectMoved(id, from, to), true; unknown answers false without event."""
    out = run(
        B
        + """
        main {
          let b = create B
          return [move_object(b, "m2"), move_object(obj:7, "m2"), get_machine(b)]
        }"""
    )
    assert out.text == '[true, false, just "m2"]'
    assert out.events(ObjectMoved) == [ObjectMoved(0, "local", "m2")]
    assert out.lines[1] == "[1] moved obj:0 from machine:local to machine:m2"


def test_6_7_fetch_brings_the_object_here(run):
    """§6.7 [A] (intended): the object's machine becomes the executing one; unknown → false."""
    out = run(
        B
        + """
        main {
          let b = create B
          move_object(b, "far")
          return [fetch(b), get_machine(b), fetch(obj:5)]
        }"""
    )
    assert out.text == '[true, just "local", false]'
    assert out.events(ObjectFetched) == [ObjectFetched(0, "local")]
    assert out.lines[2] == "[2] fetched obj:0 to machine:local"


def test_6_7_fetch_in_profile_r_is_the_stub(run):
    out = run("main { return fetch(obj:5) }", profile="r")
    assert out.text == "true"
    assert out.lines == ["[0] fetched obj:5 to machine:local"]
