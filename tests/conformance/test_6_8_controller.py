"""Controller layer (spec §6.8)."""

from __future__ import annotations

from avm_vm.trace import ObjectFrozen, ObjectTransferred

B = "behavior B { on _ { return 0 } }\n"


def test_6_8_current_controller(run):
    """§6.8: the tx controller; nothing outside a tx."""
    out = run('main { let a = current_controller(); begin("c"); return [a, current_controller()] }')
    assert out.text == '[nothing, just "c"]'


def test_6_8_get_controller(run):
    """§6.8 [R]: committed metadata only."""
    out = run(
        B
        + """
        main {
          let a = create B under "x"
          return [get_controller(a), get_controller(create B), get_controller(obj:9)]
        }"""
    )
    assert out.text == '[just "x", nothing, nothing]'


def test_6_8_transfer_outside_tx(run):
    """§6.8 [R]: immediate; ObjectTransferred with from = none when absent."""
    out = run(
        B
        + """
        main {
          let a = create B
          let ok = transfer(a, "y")
          transfer(a, "z")
          return [ok, get_controller(a)]
        }"""
    )
    assert out.text == '[true, just "z"]'
    assert out.events(ObjectTransferred) == [
        ObjectTransferred(0, "none", "y"),
        ObjectTransferred(0, "y", "z"),
    ]
    assert out.lines[1] == "[1] transferred obj:0 from ctrl:none to ctrl:y"


def test_6_8_transfer_in_tx_is_buffered_without_event(run):
    """§6.8 [R]: buffered, no event, getController shows the old value until commit."""
    out = run(
        B
        + """
        main {
          let a = create B under "x"
          let t = begin()
          transfer(a, "y")
          let seen = get_controller(a)
          commit(t)
          return [seen, get_controller(a)]
        }"""
    )
    assert out.text == '[just "x", just "y"]'
    assert out.events(ObjectTransferred) == []


def test_6_8_transfer_of_unknown_or_pending_object_is_not_available(run):
    """§6.8 [R], §9.2: CtrlNotAvailable."""
    out = run(B + 'main { begin(); return transfer(create B, "y") }')
    assert out.error == "CtrlNotAvailable: object not available: obj:0"


def test_6_8_freeze_intended_answers(run):
    """§6.8 (intended): nothing = no controller, just true = synchronised, just false =
    no such object."""
    out = run(
        B
        + 'main { let a = create B under "k"; return [freeze(a), freeze(create B), freeze(obj:9)] }'
    )
    assert out.text == "[just true, nothing, just false]"
    assert out.events(ObjectFrozen) == [ObjectFrozen(0, "k")]
    assert out.lines[1] == "[1] froze obj:0 via ctrl:k"


def test_6_8_freeze_in_profile_r(run):
    out = run(B + "main { return freeze(obj:9) }", profile="r")
    assert out.text == "nothing"
