"""Trace entries and their renderings (spec §10.6, DESIGN.md §7)."""

from __future__ import annotations

import json

from avm_vm.trace import (
    DuctLink,
    ExecutionMoved,
    FunctionUpdated,
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
from avm_vm.values import NOTHING, Just, ObjectRef, Pair, TxRef

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
        (StateUpdated(0), "state updated: obj:0"),
    ]
    for event, text in texts:
        assert event.text() == text


def test_10_3_controller_reverted_and_duct_in_text():
    trace = Trace()
    link = DuctLink(4, "pong", 7, DuctLink(3, "ping", 6, None))
    trace.emit(StateUpdated(4), "alice", link)
    trace.revert_from(0)
    line = render_text(trace.entries, duct=True)
    assert (
        line
        == "[0] state updated: obj:4 @ctrl:alice (reverted)  {main > #6 obj:3 ping > #7 obj:4 pong}"
    )


def test_duct_text_elides_long_chains():
    chain = tuple((i, "b", i) for i in range(10))
    assert (
        duct_text(chain) == "main > #0 obj:0 b > #1 obj:1 b > ..6 more.. > #8 obj:8 b > #9 obj:9 b"
    )


def test_trace_clock_survives_dropped_entries():
    """§10.2: dropped entries leave timestamp gaps."""
    trace = Trace()
    trace.emit(StateUpdated(0), None, None)
    mark = trace.mark()
    trace.emit(StateUpdated(0), None, None)
    trace.drop_from(mark)
    trace.emit(StateUpdated(1), None, None)
    assert [e.timestamp for e in trace.entries] == [0, 2]


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


def test_mermaid_sequence_of_pingpong():
    text = render_mermaid(_pingpong_trace().entries)
    lines = text.splitlines()
    assert lines[0] == "sequenceDiagram"
    assert "    participant o0 as obj:0 (ping)" in lines
    arrows = [line.strip() for line in lines if ">>" in line]
    assert arrows[0] == "main->>o0: [#quot;Ping#quot;, 0, 3, obj:1]"
    assert arrows[1].startswith("o0->>o1:")
    assert arrows[4] == "o1-->>o0: [#quot;done#quot;, 3]"  # innermost answer first back
    assert arrows[-1].startswith("o0-->>main: just just just")
    assert len(arrows) == 8


def test_mermaid_failed_call_is_a_crossed_return():
    trace = Trace()
    trace.emit(ObjectCalled(0, 'a;"b"', None), None, DuctLink(0, "x", 0, None))
    assert "o0--xmain: failed" in render_mermaid(trace.entries)
    assert "a#59;#quot;b#quot;" in render_mermaid(trace.entries)
