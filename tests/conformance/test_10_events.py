"""Every trace event kind (spec §10.4) from a compiled program, and the event instructions
entropy/now (DESIGN.md §9)."""

from __future__ import annotations

from avm_vm import trace
from avm_vm.trace import render_json_lines

EVERYTHING = """
behavior B { on _ { return receive() } }
fn f(x) { return x }
main {
  let t = begin("c")
  let a = create B
  commit(t)
  call(a, 1)
  set_state([1])
  move_object(a, "m")
  fetch(a)
  transfer(a, "d")
  freeze(a)
  update_pure("f", f)
  let u = begin()
  destroy(a)
  abort(u)
  teleport("elsewhere")
  log(["done", 1])
  atomic { require(choose([1, 2]) == 2) }
  return 0
}
"""


def test_10_4_every_event_kind_is_emitted(run):
    """§10.4: each event of the catalogue (ErrorOccurred is declared only)."""
    out = run(EVERYTHING)
    kinds = {type(e.event).__name__ for e in out.runtime.trace.entries}
    assert kinds == {cls.__name__ for cls in trace.Event.__args__}


def test_10_6_text_of_every_event(run):
    """§10.6 [R] texts, with §10.3's executing controller (docs/semantics.md "The trace")."""
    assert run(EVERYTHING).lines == [
        "[0] tx started: tx:0 @ctrl:c",
        "[1] created obj:0 (behavior: B) @ctrl:c",
        "[2] tx committed: tx:0",
        "[3] obj:0 received just 1",
        "[4] called obj:0 with 1 -> just 1",
        "[5] state updated: obj:18446744073709551615 = [1]",
        "[6] moved obj:0 from machine:local to machine:m",
        "[7] fetched obj:0 to machine:local",
        "[8] transferred obj:0 from ctrl:none to ctrl:d",
        "[9] froze obj:0 via ctrl:d",
        "[10] updated function f",
        "[11] tx started: tx:1",
        "[12] destroyed obj:0",
        "[13] tx aborted: tx:1",
        "[14] execution moved from machine:local to machine:elsewhere",
        '[15] log: ["done", 1]',
        "[16] tx started: tx:2",
        "[17] search of tx:2 solved: 2 combinations tried, 1 solutions, choices [2]",
        "[18] tx committed: tx:2",
    ]


def test_10_6_json_lines(run):
    """§10.6 [R] JSON shape (single-field events bare, values per §2.6) plus our duct and
    reverted fields."""
    lines = render_json_lines(run(EVERYTHING).runtime.trace.entries).splitlines()
    assert lines[0] == (
        '{"timestamp":0,"event_type":{"TransactionStarted":0},"executing_controller":"c",'
        '"duct":[],"reverted":false}'
    )
    assert lines[1] == (
        '{"timestamp":1,"event_type":{"ObjectCreated":{"id":0,"behavior_name":"B"}},'
        '"executing_controller":"c","duct":[],"reverted":false}'
    )
    assert lines[4] == (
        '{"timestamp":4,"event_type":{"ObjectCalled":{"id":0,"input":{"Nat":1},'
        '"output":{"Just":{"Nat":1}}}},"executing_controller":null,"duct":[[0,"B",0]],'
        '"reverted":false}'
    )
    assert lines[12] == (
        '{"timestamp":12,"event_type":{"ObjectDestroyed":0},"executing_controller":null,'
        '"duct":[],"reverted":false}'
    )


def test_10_6_json_of_a_failed_call(run):
    """An ObjectCalled without output has ``"output":null`` and says why (``failure``: kind,
    message, location); undone entries are reverted."""
    out = run('behavior F { on _ { set_state([1]); fail "no" } } main { return call(create F, 2) }')
    assert render_json_lines(out.runtime.trace.entries).splitlines()[1:] == [
        '{"timestamp":1,"event_type":{"StateUpdated":{"id":0,"state":{"List":[{"Nat":1}]}}},'
        '"executing_controller":null,'
        '"duct":[[0,"F",0]],"reverted":true}',
        '{"timestamp":2,"event_type":{"ObjectCalled":{"id":0,"input":{"Nat":2},"output":null,'
        '"failure":{"kind":"Failed","message":"no","location":"test.avm:1:37"}}},'
        '"executing_controller":null,"duct":[[0,"F",0]],"reverted":false}',
    ]


def test_entropy_is_seeded_and_deterministic(run):
    source = "main { return [entropy(), entropy()] }"
    first, again, other = run(source).text, run(source).text, run(source, seed=7).text
    assert first == again and first != other
    a, b = run(source).value
    assert a != b and 0 <= a < 2**64


def test_now_can_be_fixed(run):
    assert run("main { return now() }", now=1234).text == "1234"
    assert run("main { return now() }").value > 1_600_000_000_000
    assert run("main { return now() }", now=5).lines == []
