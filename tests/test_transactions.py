"""The transaction overlay (spec §8): commit order, validation, abort by the world log."""

from __future__ import annotations

from avm_vm.runtime.store import Journal, ObjectRecord, Store
from avm_vm.runtime.transactions import PendingCreate, Transaction

REC = ObjectRecord("B", None, "local", None, None)


def _world() -> tuple[Journal, Store]:
    journal = Journal()
    store = Store(journal)
    store.install(0, REC)
    store.install(1, REC)
    return journal, store


def _begin(journal: Journal, tx_id: int = 0, controller: str | None = None) -> Transaction:
    tx = Transaction(tx_id, controller)
    journal.world = tx.world
    return tx


def test_8_6_commit_order_creates_transfers_states_destroys():
    """§8.6: creates, then transfers, then states, then destroys (a destroyed object's
    pending state does not come back)."""
    journal, store = _world()
    tx = _begin(journal)
    tx.create(journal, 5, PendingCreate("B", None, "alice"))
    tx.transfer(journal, 5, "bob")  # applies to the object created just before
    tx.write(journal, 5, (1,))
    tx.write(journal, 0, ("a",))
    tx.write(journal, 0, ("b",))  # last write wins
    tx.write(journal, 1, ("gone",))
    tx.destroy(journal, 1)
    journal.world = None
    tx.apply(store, "here")
    assert store.get(5) == ObjectRecord("B", None, "here", "alice", "bob")
    assert store.state(5) == (1,)
    assert store.state(0) == ("b",)
    assert 1 not in store and 1 not in store.states


def test_8_6_transfer_of_vanished_object_is_skipped():
    journal, store = _world()
    tx = _begin(journal)
    tx.transfer(journal, 42, "c")
    tx.apply(store, "local")
    assert 42 not in store


def test_8_5_validation_passes_for_observed_objects_that_exist():
    journal, store = _world()
    tx = _begin(journal)
    tx.called(journal, store, 0, "msg")
    tx.create(journal, 7, PendingCreate("B", None, None))
    tx.called(journal, store, 7, "msg")
    tx.destroy(journal, 1)
    tx.called(journal, store, 1, "msg")
    assert not tx.conflicts(store)
    assert tx.log == [(0, "msg"), (7, "msg"), (1, "msg")]
    assert tx.counts() == (3, 1, 1, 3)


def test_8_5_out_of_band_removal_is_a_conflict():
    """§8.5: an observed object removed behind the transaction's back fails validation."""
    journal, store = _world()
    tx = _begin(journal)
    tx.called(journal, store, 0, "msg")
    journal.world = None
    store.remove(0)  # another execution on the same store
    assert tx.conflicts(store)


def test_8_7_abort_restores_direct_changes_exactly():
    """§8.7: the store is as at begin, without copying it at begin."""
    journal, store = _world()
    store.set_state(0, (1, 2))
    before = store.dump()
    tx = _begin(journal)
    store.replace(0, REC._replace(machine="elsewhere"))  # moveObject acts directly
    store.replace(0, REC._replace(machine="further"))
    store.set_state(1, ("direct",))
    journal.world = None
    journal.restore_world(tx.world)
    assert store.dump() == before


def test_begin_cost_is_independent_of_store_size():
    journal = Journal()
    store = Store(journal)
    for i in range(10_000):
        store.install(i, REC)
    tx = _begin(journal)
    assert tx.world == []  # nothing copied


def test_overlay_changes_undo_with_a_failed_callee():
    journal, store = _world()
    tx = _begin(journal)
    tx.write(journal, 0, ("kept",))
    journal.active = True
    mark = journal.mark()
    tx.write(journal, 0, ("callee",))
    tx.create(journal, 9, PendingCreate("B", None, None))
    tx.called(journal, store, 0, "m")
    tx.destroy(journal, 1)
    tx.transfer(journal, 0, "x")
    tx.require(journal, True)
    journal.unwind(mark)
    assert tx.states == {0: ("kept",)}
    assert not tx.creates and not tx.log and not tx.observed and not tx.destroys
    assert not tx.transfers and not tx.requirements
