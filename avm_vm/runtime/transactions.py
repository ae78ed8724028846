"""A transaction's overlay (spec §8.2): pending changes, the read set, and commit's two steps.

Every change to the overlay goes through the journal, so a failed callee's buffered changes
disappear with it. The store itself is never copied: `world` is the log of direct world
changes made while the transaction was open (e.g. `moveObject`), which an abort or a failed
validation replays backwards (`Journal.restore_world`). Begin is O(1); commit and abort cost
what the transaction touched.
"""

from __future__ import annotations

from typing import NamedTuple

from avm_vm.runtime.store import Journal, ObjectRecord, Store
from avm_vm.values import Value


class PendingCreate(NamedTuple):
    behavior: str
    code_hash: bytes | None
    controller: str | None


class Transaction:
    """One open transaction: id, controller and overlay buffers (spec §5.1)."""

    __slots__ = (
        "changes",
        "checkpoint",
        "controller",
        "coordinator",
        "creates",
        "destroys",
        "doomed",
        "id",
        "log",
        "observed",
        "participants",
        "remote_kept",
        "remote_made",
        "requirements",
        "run",
        "search",
        "seen",
        "states",
        "transfers",
        "world",
    )

    def __init__(
        self,
        tx_id: int,
        controller: str | None,
        run: int | None = None,
        coordinator: str | None = None,
    ) -> None:
        self.id = tx_id
        self.controller = controller
        # The run that began it, the only one that may commit or abort it (None: this is a
        # node's part of a transaction begun on ``coordinator``, docs/transactions.md).
        self.run = run
        self.coordinator = coordinator
        # Across nodes: the peers its calls went to (they hold parts of it), never undone,
        # since what a call did there stays there until the decision.
        self.participants: set[str] = set()
        # Calls to peers that answered, counted twice: `remote_kept` is journaled, so a
        # failed caller's undo takes its calls back out of it, `remote_made` is not. When
        # they differ a failed call had changed another node, which cannot be undone apart
        # from the whole transaction: it cannot commit.
        self.remote_made = 0
        self.remote_kept = 0
        self.doomed: str | None = None  # why it can no longer commit (a call got no answer)
        self.changes = 0  # buffered changes made so far, undone or not (never goes back)
        self.creates: dict[int, PendingCreate] = {}
        self.transfers: list[tuple[int, str]] = []
        self.log: list[tuple[int, Value]] = []  # txLog: (target, message) per local call
        self.states: dict[int, tuple[Value, ...]] = {}  # latest pending state per object
        self.destroys: set[int] = set()
        self.observed: set[int] = set()  # the read set of the spec: objects called
        # Profile ours: every object whose state it read or wrote, or that it called, with
        # the version it saw first: what a commit validates (`stale`) and locks.
        self.seen: dict[int, int] = {}
        self.requirements: list[Value] = []  # `require` assertions, checked at commit
        self.world: list[tuple[dict, object, object]] = []  # undo log of direct world changes
        # Profile ours: where a re-run of the body starts (`Search`), taken at begin; the
        # search itself is made at the first choice point.
        self.checkpoint: tuple | None = None
        self.search: Search | None = None

    # Buffering (spec §8.4); each change is journaled so a failed callee's part is undone.

    def create(self, journal: Journal, object_id: int, pending: PendingCreate) -> None:
        self.changes += 1
        journal.put(self.creates, object_id, pending)

    def destroy(self, journal: Journal, object_id: int) -> None:
        self.changes += 1
        journal.add(self.destroys, object_id)

    def transfer(self, journal: Journal, object_id: int, controller: str) -> None:
        self.changes += 1
        journal.append(self.transfers, (object_id, controller))

    def write(self, journal: Journal, object_id: int, state: tuple[Value, ...]) -> None:
        self.changes += 1
        journal.put(self.states, object_id, state)

    def progress(self) -> tuple[int, int]:
        """A mark that moves whenever it changes something (compare two to tell)."""
        return self.changes, len(self.world)

    def called(self, journal: Journal, store: Store, target: int, message: Value) -> None:
        """A local call inside the tx: txLog entry and read-set membership (spec §7.1 step 4)."""
        journal.append(self.log, (target, message))
        journal.add(self.observed, target)
        self.saw(store, target)

    def saw(self, store: Store, object_id: int) -> None:
        """The tx depends on ``object_id`` as it is now (unless it saw it already). Not
        undone with a failed callee: how the callee failed may depend on what it read."""
        if object_id not in self.seen:
            self.seen[object_id] = store.version(object_id)

    def require(self, journal: Journal, assertion: Value) -> None:
        journal.append(self.requirements, assertion)

    # Commit (spec §8.5, §8.6)

    def conflicts(self, store: Store) -> bool:
        """True when some observed object vanished from the store out of band (spec §8.5)."""
        return any(
            i not in self.destroys and i not in store and i not in self.creates
            for i in self.observed
        )

    def stale(self, store: Store) -> str | None:
        """Why the transaction cannot commit on this node, or None (docs/transactions.md,
        "Isolation"): an object it read has changed or gone since it read it, another
        transaction is committing one of them across nodes, or it is doomed. "" when an
        object it read is gone, which the spec's message says already."""
        if self.doomed is not None:
            return self.doomed
        if self.remote_kept != self.remote_made:
            return (
                "a call that failed had changed objects on another node, which cannot be "
                "undone apart from the whole transaction"
            )
        locks, version = store.locks, store.versions.get
        for object_id, seen in self.seen.items():
            if object_id in self.creates:
                continue
            holder = locks.get(object_id) if locks else None
            if holder is not None and holder != self.id:
                return f"obj:{object_id} is being committed by tx:{holder}"
            if version(object_id, 0) != seen:
                if object_id not in store:
                    return ""  # the spec's own conflict (§8.5), in its own words
                return f"obj:{object_id} changed after the transaction read it"
        return None

    def touched(self) -> set[int]:
        """The objects of the store it read or changes (what a commit across nodes locks)."""
        ids = self.seen.keys() | self.states.keys() | self.destroys
        ids.update(object_id for object_id, _ in self.transfers)
        return ids - self.creates.keys()

    def changes_nothing(self) -> bool:
        """Whether committing it would change nothing here (a read-only part)."""
        return not (self.creates or self.states or self.destroys or self.transfers or self.world)

    def apply(self, store: Store, machine: str) -> None:
        """Apply the overlay: creates, transfers, (writes), states, destroys (spec §8.6)."""
        for object_id, pending in self.creates.items():
            record = ObjectRecord(
                pending.behavior,
                pending.code_hash,
                machine,
                pending.controller,
                pending.controller,
            )
            store.install(object_id, record)
        for object_id, controller in self.transfers:
            record = store.get(object_id)
            if record is not None:
                store.replace(object_id, record._replace(current=controller))
        # The txLog needs no applying: the calls it records already ran.
        for object_id, state in self.states.items():
            store.set_state(object_id, state)
        for object_id in self.destroys:
            store.remove(object_id)

    def counts(self) -> tuple[int, int, int, int]:
        """#writes, #creates, #destroys, #observed, as reifyTxState reports them (spec §6.4)."""
        return len(self.log), len(self.creates), len(self.destroys), len(self.observed)


class Search:
    """A transaction's search (docs/semantics.md, "Nondeterminism"): the checkpoint its body
    re-runs from (the top frame of the activation that began it, as it was just after
    `begin`) and the choice points of the run under way. It outlives the `Transaction` of
    each run: every re-run opens a fresh one with the same id and this search."""

    __slots__ = (
        "act",
        "answers",
        "caught",
        "depth",
        "frame",
        "handlers",
        "nframes",
        "over",
        "pc",
        "regs",
        "replay",
        "resume",
        "trace_mark",
        "trail",
        "tried",
        "unreceived",
    )

    def __init__(self, checkpoint: tuple) -> None:
        """``checkpoint`` is what `begin` saved (handlers/search.py, `checkpoint`)."""
        (
            self.act,
            self.depth,  # the activation's height on the run's stack
            self.nframes,
            self.frame,
            self.pc,
            self.regs,
            self.handlers,
            self.caught,
            self.unreceived,
            self.trace_mark,  # entries after it belong to the run under way
        ) = checkpoint
        # Per choice point of the run under way: (index taken, alternatives, value taken).
        self.trail: list[tuple[int, int, Value]] = []
        self.replay: list[int] = []  # the indices this run's first choice points take
        self.tried = 0  # runs of the body that ended without committing
        self.answers: list[Value] = []  # what `solutions` collected
        # The frame at the last `solutions` reached (pc, registers, TRY stack, caught
        # error): where the body goes on, with the answers, once the search is over.
        self.resume: tuple[int, list[Value], list[tuple[int, int]], object] | None = None
        self.over = False  # `solutions` answered: no more choice points

    @property
    def searching(self) -> bool:
        """Whether the body may run again: it has made a choice, or it is a re-run."""
        return not self.over and (bool(self.trail) or self.tried > 0)

    def next_index(self) -> int:
        """The index the next choice point starts from: replayed, or the first."""
        at = len(self.trail)
        return self.replay[at] if at < len(self.replay) else 0

    def advance(self) -> bool:
        """Count the run under way as tried and move to the next combination, depth first
        (the last choice point that has an alternative left takes it; earlier ones keep
        theirs, later ones start afresh). False when every combination was tried."""
        self.tried += 1
        trail = self.trail
        while trail and trail[-1][0] + 1 >= trail[-1][1]:
            trail.pop()
        if not trail:
            return False
        self.replay = [index for index, _, _ in trail]
        self.replay[-1] += 1
        self.trail = []
        return True

    def choices(self) -> tuple[Value, ...]:
        return tuple(value for _, _, value in self.trail)
