"""A node's state as text (`StateTexts`): the checkpoints' hashes and the snapshots' bytes
must be exactly those of the whole state printed at once (`capture` and `encode_event`),
which logs and snapshots written before recorded and replay compares, however the store
changed since the texts were last printed."""

from __future__ import annotations

import base64

from hypothesis import given, settings
from hypothesis import strategies as st
from value_strategies import values

from avm_vm.format.bytecode import encode
from avm_vm.node.directory import Directory
from avm_vm.node.durable import Meta, Recorder
from avm_vm.node.engine import Engine
from avm_vm.node.eventlog import encode_event
from avm_vm.node.state import StateTexts, capture, full_hash, state_hash
from avm_vm.runtime.store import ObjectRecord
from avm_vm.values import Value
from avmc.compiler import compile_source

TALLY = 'behavior tally { field total = 0  on ["add", n] { total += n; return total } }'


def tallies(count: int) -> tuple[Recorder, list[int]]:
    meta = Meta("a", 7, 10_000_000)
    recorder = Recorder(Engine(meta.options(), Directory(meta.name, meta.prefix)))
    tape = base64.b64encode(encode(compile_source(TALLY, "tally.avm"))).decode()
    recorder.record({"k": "load", "tape": tape, "upgrade": False})
    made = [
        recorder.record({"k": "client_create", "behavior": "tally", "controller": None})
        for _ in range(count)
    ]
    return recorder, [step.outcome.value.id for step in made]  # type: ignore[union-attr]


def assert_same(texts: StateTexts, engine: Engine) -> None:
    printed = texts.capture(engine)
    whole = capture(engine)
    assert printed.text().encode() == encode_event(whole)
    assert printed.full_hash() == full_hash(whole)
    assert printed.state_hash() == state_hash(whole)


@settings(deadline=None, max_examples=60)
@given(st.lists(st.tuples(st.integers(0, 5), values(), st.booleans()), min_size=1, max_size=12))
def test_the_texts_print_what_the_whole_state_prints(
    changes: list[tuple[int, Value, bool]],
) -> None:
    recorder, ids = tallies(6)
    engine, texts = recorder.engine, StateTexts()
    store = engine.runtime.store
    assert_same(texts, engine)  # every text printed afresh
    for which, value, new_record in changes:
        object_id = ids[which]
        store.set_state(object_id, (value,))  # a new state: printed again
        if new_record:  # a record replaced whole, as a controller change does
            record = store.objects[object_id]
            store.objects[object_id] = ObjectRecord(*record[:4], f"controller {which}")
        assert_same(texts, engine)
    assert_same(texts, engine)  # nothing changed: every text kept


def test_objects_that_leave_or_arrive_out_of_order_are_printed_in_order() -> None:
    recorder, ids = tallies(3)
    engine, texts = recorder.engine, StateTexts()
    store = engine.runtime.store
    assert_same(texts, engine)
    del store.objects[ids[1]], store.states[ids[1]]
    assert_same(texts, engine)
    assert ids[1] not in texts.objects.ids and ids[1] not in texts.states.ids
    arrived = min(ids) - 1  # one that moved here from a node with a lower id range
    store.objects[arrived] = ObjectRecord("tally", None, "b", None, None)
    store.set_state(arrived, (5,))
    store.set_state(ids[0], (99,))  # changed meanwhile: printed again, found by id
    assert list(store.objects)[-1] == arrived
    assert_same(texts, engine)
    assert texts.objects.ids == sorted(store.objects)
    recorder.record(
        {"k": "client_call", "target": ids[0], "input": {"List": [{"Str": "add"}, {"Nat": 4}]}}
    )
    assert_same(texts, engine)
