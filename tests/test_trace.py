"""Trace entries and their renderings (spec §10.6, DESIGN.md §7)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from avm_vm.cli import main as avm_main
from avm_vm.trace import (
    CallFailure,
    DuctLink,
    ExecutionMoved,
    FunctionUpdated,
    LogRecorded,
    MessageReceived,
    ObjectCalled,
    ObjectCreated,
    ObjectDestroyed,
    ObjectFetched,
    ObjectFrozen,
    ObjectMoved,
    ObjectTransferred,
    StateUpdated,
    Trace,
    TransactionAborted,
    TransactionCommitted,
    TransactionStarted,
    duct_text,
    entry_json,
    render_json_lines,
    render_mermaid,
    render_text,
    value_json,
)
from avm_vm.trace.mermaid import ABORTED_FILL, COMMITTED_FILL
from avm_vm.value_text import elide
from avm_vm.values import NO_OBJECT_ID, NOTHING, Just, ObjectRef, Pair, TxRef, render

PINGPONG_3 = """\
[0] tx started: tx:0
[1] created obj:0 (behavior: ping)
[2] created obj:1 (behavior: pong)
[3] tx committed: tx:0
[4] called obj:1 with ["Pong", 3, 3, obj:1] -> ["done", 3]
[5] called obj:0 with ["Ping", 2, 3, obj:1] -> just ["done", 3]
[6] called obj:1 with ["Pong", 1, 3, obj:1] -> just just ["done", 3]
[7] called obj:0 with ["Ping", 0, 3, obj:1] -> just just just ["done", 3]"""


def _pingpong_trace() -> Trace:
    """The §14.1 run for max = 3, emitted the way the runtime does (post-order calls)."""
    trace = Trace()
    trace.emit(TransactionStarted(0), None, None)
    trace.emit(ObjectCreated(0, "ping"), None, None)
    trace.emit(ObjectCreated(1, "pong"), None, None)
    trace.emit(TransactionCommitted(0), None, None)
    links, parent = [], None
    for call_id in range(4):
        obj = call_id % 2
        parent = DuctLink(obj, ("ping", "pong")[obj], call_id, parent)
        links.append(parent)
    answer = ("done", 3)
    for count in (3, 2, 1, 0):
        obj = count % 2
        tag = ("Ping", "Pong")[obj]
        trace.emit(ObjectCalled(obj, (tag, count, 3, ObjectRef(1)), answer), None, links[count])
        answer = Just(answer)
    return trace


def test_14_1_pingpong_trace_text():
    """§14.1: the eight lines of the reference trace, exactly."""
    assert render_text(_pingpong_trace().entries) == PINGPONG_3


def test_10_6_every_event_text():
    """§10.6: the reference text of every event."""
    texts = [
        (ObjectCreated(0, "ping"), "created obj:0 (behavior: ping)"),
        (ObjectDestroyed(0), "destroyed obj:0"),
        (ObjectCalled(0, 1, None), "called obj:0 with 1"),
        (ObjectCalled(0, 1, NOTHING), "called obj:0 with 1 -> nothing"),
        (MessageReceived(0, NOTHING), "obj:0 received nothing"),
        (ObjectMoved(0, "a", "b"), "moved obj:0 from machine:a to machine:b"),
        (ExecutionMoved("a", "b"), "execution moved from machine:a to machine:b"),
        (ObjectFetched(0, "a"), "fetched obj:0 to machine:a"),
        (ObjectTransferred(0, "a", "b"), "transferred obj:0 from ctrl:a to ctrl:b"),
        (ObjectFrozen(0, "a"), "froze obj:0 via ctrl:a"),
        (FunctionUpdated("f"), "updated function f"),
        (TransactionStarted(0), "tx started: tx:0"),
        (TransactionCommitted(0), "tx committed: tx:0"),
        (TransactionAborted(0), "tx aborted: tx:0"),
        (StateUpdated(0, (1, "a")), 'state updated: obj:0 = [1, "a"]'),
    ]
    for event, text in texts:
        assert event.text() == text


def test_10_3_controller_reverted_and_duct_in_text():
    trace = Trace()
    link = DuctLink(4, "pong", 7, DuctLink(3, "ping", 6, None))
    trace.emit(StateUpdated(4, ()), "alice", link)
    trace.revert_from(0)
    line = render_text(trace.entries, duct=True)
    assert line == (
        "[0] state updated: obj:4 = [] @ctrl:alice (reverted)"
        "  {main > #6 obj:3 ping > #7 obj:4 pong}"
    )


def test_duct_text_elides_long_chains():
    chain = tuple((i, "b", i) for i in range(10))
    assert (
        duct_text(chain) == "main > #0 obj:0 b > #1 obj:1 b > ..6 more.. > #8 obj:8 b > #9 obj:9 b"
    )


def test_trace_clock_survives_dropped_entries():
    """§10.2: dropped entries leave timestamp gaps."""
    trace = Trace()
    trace.emit(StateUpdated(0, ()), None, None)
    mark = trace.mark()
    trace.emit(StateUpdated(0, ()), None, None)
    trace.drop_from(mark)
    trace.emit(StateUpdated(1, ()), None, None)
    assert [e.timestamp for e in trace.entries] == [0, 2]


def test_recorded_events_read_as_emitted_ones():
    """An event recorded as its fields (`Trace.record`, the runtime's object calls) reads
    back as the event itself, with its stamp, controller, duct and run, in the order of
    emission, whether the entries were read in between or not; a reader's clear empties
    the trace; a revert reaches entries not yet read."""
    link = DuctLink(7, "counter", 3, None)
    trace = Trace()
    trace.run = 2
    trace.emit(ObjectCreated(7, "counter"), "ctrl", None)
    trace.record(None, link, StateUpdated, 7, (1,))
    assert [e.event for e in trace.entries] == [ObjectCreated(7, "counter"), StateUpdated(7, (1,))]
    trace.record("ctrl", link, ObjectCalled, 7, ("inc",), 1)
    trace.run = 3
    trace.emit(TransactionStarted(4), None, link)
    seen = [(e.timestamp, e.event, e.controller, e.duct_link, e.run) for e in trace.entries]
    assert seen == [
        (0, ObjectCreated(7, "counter"), "ctrl", None, 2),
        (1, StateUpdated(7, (1,)), None, link, 2),
        (2, ObjectCalled(7, ("inc",), 1, None), "ctrl", link, 2),
        (3, TransactionStarted(4), None, link, 3),
    ]
    trace.entries.clear()
    trace.record(None, link, ObjectCalled, 7, ("inc",), 2)
    trace.run = 2
    trace.record(None, link, ObjectCalled, 7, ("inc",), 3)
    trace.revert_from(5)
    assert [(e.timestamp, e.reverted) for e in trace.entries] == [(4, False), (5, True)]
    quiet = Trace(recording=False)
    quiet.record(None, link, StateUpdated, 7, (1,))
    assert (quiet.entries, quiet.clock) == ([], 1)


def test_2_6_value_json():
    """§2.6: externally tagged JSON."""
    value = (5, True, "x", Pair(1, NOTHING), Just(ObjectRef(7)), TxRef(3))
    assert value_json(value) == (
        '{"List":[{"Nat":5},{"Bool":true},{"Str":"x"},{"Pair":[{"Nat":1},"Nothing"]},'
        '{"Just":{"ObjectRef":7}},{"TxRef":3}]}'
    )


def test_value_json_of_deep_value_does_not_recurse():
    value = 0
    for _ in range(200_000):
        value = Just(value)
    assert value_json(value).count("Just") == 200_000


def test_10_6_entry_json_shape():
    """§10.6: the reference JSON, plus duct and reverted."""
    trace = Trace()
    trace.emit(ObjectCreated(0, "ping"), None, None)
    trace.emit(ObjectDestroyed(5), "c", DuctLink(2, "b", 0, None))
    first, second = (json.loads(line) for line in render_json_lines(trace.entries).splitlines())
    assert entry_json(trace.entries[0]).startswith(
        '{"timestamp":0,"event_type":{"ObjectCreated":{"id":0,"behavior_name":"ping"}},'
        '"executing_controller":null'
    )
    assert first["duct"] == [] and first["reverted"] is False
    assert second["event_type"] == {"ObjectDestroyed": 5}
    assert second["executing_controller"] == "c"
    assert second["duct"] == [[2, "b", 0]]


def _mermaid_lines(trace: Trace) -> list[str]:
    return [line.strip() for line in render_mermaid(trace.entries).splitlines()]


def _balanced_activations(lines: list[str]) -> bool:
    """Every activation bar (``->>+``) is closed by an answer (``-``), never below zero."""
    depth = 0
    for line in lines:
        depth += "->>+" in line
        depth -= "-->>-" in line or "--x-" in line
        if depth < 0:
            return False
    return depth == 0


def test_mermaid_sequence_of_pingpong():
    lines = _mermaid_lines(_pingpong_trace())
    assert lines[:2] == ["sequenceDiagram", "participant main"]
    # Objects appear where they are created, inside the committed transaction's box.
    box = lines.index(f"rect {COMMITTED_FILL}")
    assert lines[box + 1] == "Note over main: tx:0 started"
    assert lines[box + 2 : box + 4] == ["create participant o0 as obj:0 (ping)", "main-)o0: create"]
    assert lines[box + 6 : box + 8] == ["Note over main: tx:0 committed", "end"]
    arrows = [line for line in lines if ">>" in line]
    assert arrows[0] == "main->>+o0: [#quot;Ping#quot;, 0, 3, obj:1]"
    assert arrows[1].startswith("o0->>+o1:")
    assert arrows[4] == "o1-->>-o0: [#quot;done#quot;, 3]"  # innermost answer first back
    assert arrows[-1] == "o0-->>-main: just just just [#quot;done#quot;, 3]"
    assert len(arrows) == 8 and _balanced_activations(lines)


def test_mermaid_of_a_40_hop_pingpong_stays_short():
    """Each answer is one short line: the chain of `just`s is counted, not spelled out."""
    trace, parent, links = Trace(), None, []
    for call_id in range(40):
        parent = DuctLink(call_id % 2, ("ping", "pong")[call_id % 2], call_id, parent)
        links.append(parent)
    answer: object = ("done", 40)
    for count in reversed(range(40)):
        trace.emit(
            ObjectCalled(count % 2, ("Ping", count, 40, ObjectRef(1)), answer), None, links[count]
        )
        answer = Just(answer)
    lines = _mermaid_lines(trace)
    assert "o0-->>-main: just\u00d739 [#quot;done#quot;, 40]" in lines
    assert max(len(line) for line in lines) < 60
    assert _balanced_activations(lines)


def test_mermaid_failed_call_shows_its_reason():
    trace = Trace()
    failure = CallFailure("Failed", "insufficient funds", "bank.avm:9:28")
    trace.emit(ObjectCalled(0, 'a;"b"', None, failure), None, DuctLink(0, "x", 0, None))
    lines = _mermaid_lines(trace)
    assert "main->>+o0: #quot;a#59;#quot;b#quot;#quot;" in lines
    assert "o0--x-main: failed: Failed: insufficient funds (bank.avm:9:28)" in lines
    trace = Trace()
    trace.emit(ObjectCalled(0, 1, None), None, DuctLink(0, "x", 0, None))
    assert "o0--x-main: failed" in _mermaid_lines(trace)


def test_mermaid_aborted_and_rolled_back_transactions_are_red_boxes():
    """An aborted tx and one a failed call left open are red, with a note saying which."""
    trace = Trace()
    trace.emit(TransactionStarted(0), None, None)
    trace.emit(TransactionAborted(0), None, None)
    callee = DuctLink(1, "b", 0, None)
    trace.emit(TransactionStarted(1), None, callee)
    trace.emit(StateUpdated(1, (7,)), None, callee)
    trace.emit(ObjectCalled(1, 0, None), None, callee)
    lines = _mermaid_lines(trace)
    assert lines.count(f"rect {ABORTED_FILL}") == 2 and f"rect {COMMITTED_FILL}" not in lines
    assert "Note over main: tx:0 aborted" in lines
    # The callee's box closes before its failed answer, even though no event ended its tx.
    closing = lines.index("Note over o1: tx:1 rolled back (its call ended)")
    assert lines[closing + 1 : closing + 3] == ["end", "o1--x-main: failed"]
    assert "Note over o1: state = [7]" in lines
    assert lines.count("end") == lines.count(f"rect {ABORTED_FILL}")


def test_mermaid_notes_for_logs_state_and_other_events():
    trace = Trace()
    link = DuctLink(2, "b", 0, None)
    trace.emit(LogRecorded("x" * 200), None, link)
    trace.emit(StateUpdated(2, tuple(range(100))), None, link)
    trace.emit(ObjectFrozen(2, "c"), "c", link)
    trace.emit(ObjectCalled(2, 0, NOTHING), None, link)
    lines = _mermaid_lines(trace)
    assert f"Note over o2: log: #quot;{'x' * 48}…(+152 chars)#quot;" in lines
    assert "Note over o2: state = [0, 1, 2, 3, 4, 5, …(+94 items)]" in lines
    assert "Note over o2: froze obj:2 via ctrl:c" in lines
    assert lines[-1] == "o2-->>-main: nothing"


def test_mermaid_escapes_what_would_end_a_label():
    trace = Trace()
    trace.emit(LogRecorded('%%{init} <b>#1;\n"'), None, None)
    (note,) = [line for line in _mermaid_lines(trace) if line.startswith("Note")]
    assert note == "Note over main: log: #quot;#37;#37;{init} #lt;b#gt;#35;1#59; #quot;#quot;"


def test_a_call_without_an_answer_is_closed():
    """A run that failed inside a call leaves the call open: it ends with `no answer`."""
    trace = Trace()
    trace.emit(StateUpdated(3, ()), None, DuctLink(3, "b", 0, None))
    lines = _mermaid_lines(trace)
    assert lines[-2:] == ["Note over o3: state = []", "o3--x-main: no answer"]
    assert "participant o3 as obj:3 (b)" in lines and _balanced_activations(lines)


def test_elide_keeps_short_values_and_cuts_long_ones():
    for value in (0, "hi", (1, (2, "x")), Pair(1, NOTHING), Just(Just(TxRef(3))), ()):
        assert elide(value) == render(value)
    assert elide("a" * 50, chars=10) == '"aaaaaaaaaa…(+40 chars)"'
    assert elide(tuple(range(9)), items=4) == "[0, 1, 2, 3, …(+5 items)]"
    chain: object = 5
    for _ in range(40):
        chain = Just(chain)
    assert elide(chain) == "just\u00d740 5"
    wide = elide(tuple("x" * 40 for _ in range(6)))
    assert wide.endswith(", …]") and len(wide) < 140


def test_elide_of_a_huge_or_deep_value_is_quick_and_short():
    deep: object = ()
    for _ in range(200_000):
        deep = (deep,)
    text = elide(deep)
    assert text == "[" * 81 + "…" + "]" * 81
    assert len(elide(tuple(range(10**6)))) < 40


def test_text_trace_elides_the_state_and_json_keeps_it(tmp_path):
    """Through `avm run`: the set_state emit site records the new state itself."""
    source = tmp_path / "s.avm"
    source.write_text('main { set_state(["x", "' + "y" * 100 + '"]); return 0 }')
    text_out, json_out = tmp_path / "t.txt", tmp_path / "t.json"
    runner = CliRunner()
    for fmt, out in (("text", text_out), ("json", json_out)):
        result = runner.invoke(
            avm_main, ["run", str(source), "--trace-format", fmt, "--trace-out", str(out)]
        )
        assert result.exit_code == 0, result.output
    line = text_out.read_text().splitlines()[0]
    assert line == f'[0] state updated: obj:{NO_OBJECT_ID} = ["x", "{"y" * 48}…(+52 chars)"]'
    event = json.loads(json_out.read_text().splitlines()[0])["event_type"]["StateUpdated"]
    assert event["state"] == {"List": [{"Str": "x"}, {"Str": "y" * 100}]}


def test_mermaid_of_a_deep_call_chain_walks_each_duct_once():
    """20,000 nested calls, each logging inside: every arrow drawn once, bars balanced (a
    renderer walking each entry's whole duct would take minutes here)."""
    trace, links, parent = Trace(), [], None
    for call_id in range(20_000):
        parent = DuctLink(call_id % 2, "b", call_id, parent)
        links.append(parent)
        trace.emit(StateUpdated(call_id % 2, (call_id,)), None, parent)
    for call_id in reversed(range(20_000)):
        trace.emit(ObjectCalled(call_id % 2, call_id, call_id), None, links[call_id])
    lines = _mermaid_lines(trace)
    assert sum("->>+" in line for line in lines) == 20_000 and _balanced_activations(lines)
    assert lines[-1] == "o0-->>-main: 0"


def test_mermaid_creates_a_participant_once():
    """An object already drawn (called before a creation entry, as on a node) gets a note."""
    trace = Trace()
    trace.emit(ObjectCalled(4, 0, 0), None, DuctLink(4, "b", 0, None))
    trace.emit(ObjectCreated(4, "b"), None, None)
    lines = _mermaid_lines(trace)
    assert lines[-1] == "Note over main: created obj:4 (behavior: b)"
    assert not any(line.startswith("create participant") for line in lines)
