"""Introspection layer (spec §6.2)."""

from __future__ import annotations

from avm_vm.trace import StateUpdated

CTX = """
behavior Who { on _ { return [self, input, sender, current_machine()] } }
"""


def test_6_2_self_input_sender_machine_at_top_level(run):
    """§6.2, §5.2: top level runs as the sentinel, input nothing, no sender."""
    out = run(CTX + "main { return [self, input, sender, current_machine()] }")
    assert out.text == '[obj:18446744073709551615, nothing, nothing, "local"]'


def test_6_2_sender_inside_a_call_from_top_level_is_the_sentinel(run):
    """§6.2: inside a call made from top level, sender is just the sentinel."""
    out = run(CTX + 'main { return call!(create Who, ["hi"]) }', machine="node1")
    assert out.text == '[obj:0, ["hi"], just obj:18446744073709551615, "node1"]'


def test_6_2_set_state_and_get_state(run):
    """§6.2: setState replaces the state and emits StateUpdated (profile R); top level
    uses the sentinel's slot."""
    out = run("main { set_state([1, 2]); return get_state() }")
    assert out.text == "[1, 2]"
    assert out.events(StateUpdated) == [StateUpdated(18446744073709551615, (1, 2))]


def test_6_2_set_state_needs_a_list(run):
    """Handlers check their argument kinds: TypeMismatch naming the instruction."""
    out = run("main { return set_state(5) }")
    assert out.error == "TypeMismatch: set_state: expected a list, found a nat"
