"""The object store (spec §3.3) and the journal that makes every change to it undoable.

The store holds one `ObjectRecord` per object (behavior name, code hash, metadata) and the
state lists; the state map is separate because top-level `setState` writes the sentinel
id's slot, which is no object (spec §6.2).

Every mutation of the world (store, transaction overlay, constraint store, pure registry,
the runtime's transaction slot) goes through a `Journal`, which records the inverse
operation when someone may need it:

* while an object call is running (`active`), every inverse goes to `entries`, so a failed
  callee is undone by unwinding to the mark taken at its entry (DESIGN.md §12). `entries` is
  the executing run's own list (the runtime swaps it in): runs parked on a node keep theirs
  apart, so each unwinds only its own changes, in whatever order they resume;
* while a transaction is open, inverses of direct world changes (``world=True``: store
  records and states, constraint domains) also go to the transaction's `world` log, so an
  abort restores the store as it was at begin without ever copying it (spec §8.7).

Inverses restore old values rather than apply deltas, so replaying a log in reverse is
correct even when it holds entries that were already undone.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from avm_vm.values import Value, render

MISSING: Any = object()  # "the key was absent": its inverse deletes the key


def _restore_item(d: dict, key: object, old: object) -> None:
    if old is MISSING:
        d.pop(key, None)
    else:
        d[key] = old


def _restore_state(store: Store, object_id: int, old: tuple[object, object]) -> None:
    """Undo `Store.set_state`: ``old`` is the state and version it replaced."""
    _restore_item(store.states, object_id, old[0])
    _restore_item(store.versions, object_id, old[1])


def _discard(s: set, item: object, _unused: object) -> None:
    s.discard(item)


def _truncate(items: list, length: int, _unused: object) -> None:
    del items[length:]


class Journal:
    """Inverse operations of the world's mutations, unwound when a callee fails."""

    __slots__ = ("active", "entries", "world")

    def __init__(self) -> None:
        self.entries: list[tuple] = []
        self.active = False  # an object call is running: its changes may have to be undone
        self.world: list[tuple[dict, object, object]] | None = None  # the open tx's log

    def put(self, d: dict, key: object, value: object, world: bool = False) -> None:
        """``d[key] = value``, undoably."""
        if self.active:
            self.entries.append((_restore_item, d, key, d.get(key, MISSING)))
        if world and self.world is not None:
            self.world.append((d, key, d.get(key, MISSING)))
        d[key] = value

    def remove(self, d: dict, key: object, world: bool = False) -> None:
        """``del d[key]`` if present, undoably."""
        if key not in d:
            return
        if self.active:
            self.entries.append((_restore_item, d, key, d[key]))
        if world and self.world is not None:
            self.world.append((d, key, d[key]))
        del d[key]

    def add(self, s: set, item: object) -> None:
        if self.active and item not in s:
            self.entries.append((_discard, s, item, None))
        s.add(item)

    def append(self, items: list, item: object) -> None:
        if self.active:
            self.entries.append((_truncate, items, len(items), None))
        items.append(item)

    def set_attr(self, obj: object, name: str, value: object) -> None:
        if self.active:
            self.entries.append((setattr, obj, name, getattr(obj, name)))
        setattr(obj, name, value)

    def mark(self) -> int:
        return len(self.entries)

    def unwind(self, mark: int) -> None:
        """Undo everything recorded since ``mark``, newest first."""
        entries = self.entries
        while len(entries) > mark:
            undo, a, b, c = entries.pop()
            undo(a, b, c)

    def restore_world(self, log: list[tuple[dict, object, object]]) -> None:
        """Put back the values a transaction's world log saved (an abort), itself undoably."""
        for d, key, old in reversed(log):
            if old is MISSING:
                self.remove(d, key)
            else:
                self.put(d, key, old)


class ObjectRecord(NamedTuple):
    """An object's behavior and metadata (spec §3.4); replaced whole on every change."""

    behavior: str
    code_hash: bytes | None  # hash of the behavior's code at creation; None if unregistered
    machine: str
    creating: str | None  # creating controller
    current: str | None  # current controller


class _TrackedDict(dict):
    """A dict that notes every key written or deleted, however (undo included)."""

    __slots__ = ("changed",)

    def __init__(self, items: dict) -> None:
        super().__init__(items)
        self.changed: set = set(items)

    def __setitem__(self, key: object, value: object) -> None:
        self.changed.add(key)
        super().__setitem__(key, value)

    def __delitem__(self, key: object) -> None:
        self.changed.add(key)
        super().__delitem__(key)

    def pop(self, key: object, *default: object) -> object:
        self.changed.add(key)
        return super().pop(key, *default)


class Store:
    """Objects and their states (spec §3.3), every change journaled.

    Each object's `version` changes whenever it appears, its state is written or it goes:
    a transaction notes the versions of the objects it reads and commits only if none has
    changed since (serializable validation, docs/transactions.md). Versions come from one
    counter that never goes back, so a version is never reused; an undone change restores
    the old version with the old state. `locks` holds the objects of transactions that are
    committing across nodes: nothing else may touch them until the decision.
    """

    __slots__ = ("clock", "journal", "locks", "objects", "states", "versions")

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.objects: dict[int, ObjectRecord] = {}
        self.states: dict[int, tuple[Value, ...]] = {}
        self.versions: dict[int, int] = {}
        self.clock = 0  # the last version handed out
        self.locks: dict[int, int] = {}  # object id -> the committing transaction's id

    def track_changes(self) -> None:
        """From now on, note which objects appear, change or vanish (`drain_changes`).

        A node announces its objects to its peers (spec §11.3); tracking the dict itself
        also catches a failed callee's undo, which bypasses the store's methods.
        """
        if type(self.objects) is not _TrackedDict:
            self.objects = _TrackedDict(self.objects)

    def drain_changes(self) -> set[int]:
        """The ids whose record changed since the last drain (empty unless tracking)."""
        objects = self.objects
        if type(objects) is not _TrackedDict:
            return set()
        changed, objects.changed = objects.changed, set()
        return changed

    def get(self, object_id: int) -> ObjectRecord | None:
        return self.objects.get(object_id)

    def __contains__(self, object_id: int) -> bool:
        return object_id in self.objects

    def __len__(self) -> int:
        return len(self.objects)

    def version(self, object_id: int) -> int:
        """The object's version: 0 for one never changed since this store began."""
        return self.versions.get(object_id, 0)

    def _changed(self, object_id: int) -> None:
        self.clock += 1
        self.journal.put(self.versions, object_id, self.clock)

    def locked_by(self, object_id: int) -> int | None:
        """The transaction committing ``object_id`` across nodes, if any."""
        return self.locks.get(object_id) if self.locks else None

    def lock(self, ids: set[int], tx_id: int) -> None:
        """Hold ``ids`` for the transaction ``tx_id`` until `unlock` (not journaled: the
        decision releases them, whatever happens to the run in between)."""
        for object_id in ids:
            self.locks[object_id] = tx_id

    def unlock(self, ids: set[int], tx_id: int) -> None:
        """Release those of ``ids`` that ``tx_id`` holds (another transaction's stay)."""
        for object_id in ids:
            if self.locks.get(object_id) == tx_id:
                del self.locks[object_id]

    def install(self, object_id: int, record: ObjectRecord) -> None:
        """Create an object with state ``[]`` (spec §3.3)."""
        self.journal.put(self.objects, object_id, record, world=True)
        self.journal.put(self.states, object_id, (), world=True)
        self._changed(object_id)

    def remove(self, object_id: int) -> None:
        """Destroy an object: its record and its state (profile R removes all three maps)."""
        self.journal.remove(self.objects, object_id, world=True)
        self.journal.remove(self.states, object_id, world=True)
        self._changed(object_id)

    def forget(self, object_id: int) -> None:
        """Drop an object that moved to another node: not journaled, since no undo can bring
        it back without duplicating it there."""
        self.objects.pop(object_id, None)
        self.states.pop(object_id, None)
        self.clock += 1
        self.versions[object_id] = self.clock

    def replace(self, object_id: int, record: ObjectRecord) -> None:
        """Change an existing object's metadata (move, transfer, fetch)."""
        self.journal.put(self.objects, object_id, record, world=True)

    def state(self, object_id: int) -> tuple[Value, ...]:
        return self.states.get(object_id, ())

    def set_state(self, object_id: int, state: tuple[Value, ...]) -> None:
        """As `Journal.put` of the state (``world``) and `_changed`, with one undo entry for
        both: every state write of a call does this."""
        journal = self.journal
        states, versions = self.states, self.versions
        if journal.active:
            old = (states.get(object_id, MISSING), versions.get(object_id, MISSING))
            journal.entries.append((_restore_state, self, object_id, old))
        if journal.world is not None:
            journal.world.append((states, object_id, states.get(object_id, MISSING)))
        states[object_id] = state
        self.clock += 1
        versions[object_id] = self.clock

    def ids(self) -> list[int]:
        """Every object id, in increasing order."""
        return sorted(self.objects)

    def dump(self) -> str:
        """A canonical text of the whole store (sorted), for comparing two stores exactly."""
        lines = [f"object {i} {self.objects[i]!r}" for i in sorted(self.objects)]
        lines += [f"state {i} {render(self.states[i])}" for i in sorted(self.states)]
        return "\n".join(lines)


class IdGenerator:
    """Fresh object and transaction ids (spec §2.5): two counters from ``prefix << 48``.

    Never rolled back: an aborted transaction or a failed callee still consumes its ids.
    """

    __slots__ = ("next_object", "next_tx")

    def __init__(self, prefix: int = 0) -> None:
        if not 0 <= prefix < 1 << 16:
            raise ValueError(f"a node prefix is 16 bits, not {prefix}")
        self.next_object = self.next_tx = prefix << 48

    def object_id(self) -> int:
        self.next_object += 1
        return self.next_object - 1

    def tx_id(self) -> int:
        self.next_tx += 1
        return self.next_tx - 1
