"""The store (spec §3.3), its journal (DESIGN.md §12 undo) and id generation (spec §2.5)."""

from __future__ import annotations

import pytest

from avm_vm.runtime.store import IdGenerator, Journal, ObjectRecord, Store

REC = ObjectRecord("Counter", None, "local", None, None)


def test_install_creates_record_and_empty_state():
    store = Store(Journal())
    store.install(3, REC)
    assert 3 in store and store.get(3) == REC
    assert store.state(3) == ()
    assert store.state(99) == ()  # unknown ids read as the empty state


def test_remove_drops_record_and_state():
    store = Store(Journal())
    store.install(1, REC)
    store.set_state(1, (5,))
    store.remove(1)
    assert 1 not in store and 1 not in store.states
    store.remove(1)  # removing twice is harmless


def test_ids_are_sorted():
    store = Store(Journal())
    for i in (5, 1, 3):
        store.install(i, REC)
    assert store.ids() == [1, 3, 5]


def test_journal_records_nothing_while_inactive():
    journal = Journal()
    Store(journal).install(1, REC)
    assert journal.entries == []


def test_unwind_restores_every_kind_of_change():
    journal = Journal()
    store = Store(journal)
    store.install(1, REC)
    items: list[int] = [1]
    members = {1}

    class Box:
        value = "old"

    box = Box()
    before = store.dump()
    journal.active = True
    mark = journal.mark()
    store.set_state(1, (7,))
    store.replace(1, REC._replace(machine="far"))
    store.install(2, REC)
    store.remove(1)
    journal.append(items, 2)
    journal.add(members, 2)
    journal.add(members, 1)  # already there: nothing to undo
    journal.set_attr(box, "value", "new")
    journal.unwind(mark)
    assert store.dump() == before
    assert items == [1] and members == {1} and box.value == "old"
    assert journal.entries == []


def test_world_log_restores_store_and_is_itself_undoable():
    journal = Journal()
    store = Store(journal)
    store.install(1, REC)
    at_begin = store.dump()
    journal.world = log = []
    store.replace(1, REC._replace(machine="m2"))
    store.install(2, REC)
    store.set_state(2, ("x",))
    journal.world = None
    before_abort = store.dump()
    journal.active = True
    mark = journal.mark()
    journal.restore_world(log)
    assert store.dump() == at_begin
    journal.unwind(mark)  # a failed callee that aborted: its abort is undone too
    assert store.dump() == before_abort


def test_dump_is_canonical():
    a, b = Store(Journal()), Store(Journal())
    a.install(1, REC)
    a.install(2, REC)
    b.install(2, REC)
    b.install(1, REC)
    assert a.dump() == b.dump()
    b.set_state(1, (True,))
    a.set_state(1, (1,))
    assert a.dump() != b.dump()  # 1 and true differ (spec §2.1)


def test_ids_start_at_zero_and_are_independent():
    ids = IdGenerator()
    assert [ids.object_id(), ids.tx_id(), ids.object_id()] == [0, 0, 1]


@pytest.mark.parametrize(("prefix", "first"), [(1, 281474976710656), (9001, 2533556265372614656)])
def test_node_prefix_2_5(prefix, first):
    """§2.5: prefix p starts both counters at p << 48."""
    ids = IdGenerator(prefix)
    assert ids.object_id() == first and ids.tx_id() == first
    assert ids.object_id() == first + 1


def test_prefix_must_fit_16_bits():
    with pytest.raises(ValueError):
        IdGenerator(1 << 16)
