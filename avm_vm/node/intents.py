"""Intents on a node (docs/intents.md): a pool of pending intents and a solver that commits
sets of them together, as one transaction whose search satisfies all their requirements.

An intent names an object on this node and two messages: its *offer* (run first: it makes
choices and effects) and its *check* (run once every intent of the batch has made its
offer: it states requirements over the result). A batch of intents runs as

    begin; choose([true]); call!(t1, offer1) ... call!(tn, offern);
    call!(t1, check1) ... call!(tn, checkn); commit

in one function, so the search at commit (docs/semantics.md, "Nondeterminism") backtracks
over every choice the offers and checks make, and the requirements of all the intents are
checked together. The leading one-value choice makes the transaction searching from its
start, so a call to another node is refused (NotSearchable) instead of parking the run.

Everything that changes the pool is a logged event, applied by `IntentPool` on the VM side
(live and in replay): ``intent`` (accepted), ``intent_batch`` (the solver tried these
intents together: the run's outcome settles them or records why not) and ``intent_expired``
(a timer saw its deadline pass). `IntentDesk` is the node side: it answers clients, picks
the batches to try and logs the expiries; its choices need not be replayed, since their
events are.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from itertools import combinations, islice
from typing import TYPE_CHECKING, Any

from avm_vm.format.instructions import BY_NAME
from avm_vm.format.opcodes import Op, RegType
from avm_vm.format.program import Function, FunctionKind, Program
from avm_vm.format.verify import verify
from avm_vm.node.codec import value_from_json, value_to_json
from avm_vm.node.eventlog import Event
from avm_vm.node.failpoints import hold
from avm_vm.node.logs import logger
from avm_vm.node.messages import Message, message
from avm_vm.runtime.runs import Done, Failed, Preempted
from avm_vm.values import NOTHING, Just, ObjectRef, Pair, Value

if TYPE_CHECKING:
    from avm_vm.node.engine import Engine, Step
    from avm_vm.node.node import Node

MAX_BATCH = 3  # intents committed together at most
MAX_RELATED = 24  # pending intents considered alongside a new one (the nearest first)
MAX_TRIES = 64  # batches the solver tries for one new intent
MAX_WAIT_MS = 1 << 40  # the longest deadline an intent may ask for (about 35 years)
FINISHED_KEPT = 10_000  # settled or failed intents remembered for `intent_status`
EXPIRY_EVERY = 0.1  # seconds between the node's looks for intents past their deadline
BATCH_WAIT = 120.0  # seconds the solver waits for one batch's run (a long search)


def _batch_function(size: int) -> Function:
    """The function that runs ``size`` intents as one transaction. Registers: r0 the
    marking choice's values ``[true]``, r1 the controller (``nothing``), then each intent's
    target, offer and check; after them the transaction and a scratch answer."""
    tx, answer = 2 + 3 * size, 3 + 3 * size

    def effect(out: int, name: str, *args: int) -> tuple:
        return (Op.EFFECT, out, BY_NAME[name].number, args)

    code = [effect(tx, "begin_tx", 1), effect(answer, "choose", 0)]
    code += [effect(answer, "call_unwrap", 2 + 3 * i, 3 + 3 * i) for i in range(size)]
    code += [effect(answer, "call_unwrap", 2 + 3 * i, 4 + 3 * i) for i in range(size)]
    code += [effect(answer, "commit_tx", tx), (Op.RET, answer)]
    name, registers = f"intent batch of {size}", (RegType.ANY,) * (answer + 1)
    lines = ((0, 0),) * len(code)
    return Function(name, FunctionKind.MAIN, 2 + 3 * size, registers, tuple(code), lines)


BATCH = Program(
    "<intents>", (), tuple(_batch_function(n) for n in range(1, MAX_BATCH + 1)), (), None
)
verify(BATCH, BATCH.source_name)


@dataclass
class Intent:
    number: int  # the index of its `intent` event: unique, and "oldest first" is by it
    target: int
    offer: Value
    check: Value
    submitted: int  # event time (ms)
    deadline: int  # event time (ms) after which it fails
    touches: frozenset[int]  # the objects its target and messages name (the pool's index)
    attempts: int = 0  # batches it was tried in
    reason: str | None = None  # why the last of them did not commit

    def summary(self) -> dict[str, Any]:
        return {
            "intent": self.number,
            "target": self.target,
            "deadline": self.deadline,
            "attempts": self.attempts,
            "reason": self.reason,
        }


def _objects(value: Value, found: set[int]) -> None:
    """Add the ids of the objects ``value`` names (in lists, pairs and maybes, any depth)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is ObjectRef:
            found.add(item.id)
        elif type(item) is tuple:
            stack.extend(item)
        elif type(item) is Just:
            stack.append(item.value)
        elif type(item) is Pair:
            stack += (item.first, item.second)


@dataclass
class IntentPool:
    """The engine's pool of intents: pending ones indexed by the objects they touch, and
    what became of the finished ones. A pure function of the events applied."""

    engine: Engine
    pending: dict[int, Intent] = field(default_factory=dict)  # oldest first
    by_object: dict[int, set[int]] = field(default_factory=dict)
    finished: dict[int, dict[str, Any]] = field(default_factory=dict)
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("accepted", "settled", "expired", "batches_tried", "batches_committed"), 0
        )
    )

    def __post_init__(self) -> None:
        self.interpreter = self.engine.runtime.load(BATCH)

    def handlers(self) -> dict[str, Any]:
        return {
            "intent": self._accept,
            "intent_batch": self._try,
            "intent_expired": self._expire,
        }

    def capture(self) -> dict[str, Any]:
        """The pool as JSON-ready data, for a snapshot (`restore` is its inverse)."""
        pending = [
            {
                "number": i.number,
                "target": i.target,
                "offer": value_to_json(i.offer),
                "check": value_to_json(i.check),
                "submitted": i.submitted,
                "deadline": i.deadline,
                "attempts": i.attempts,
                "reason": i.reason,
            }
            for i in self.pending.values()
        ]
        finished = [[number, record] for number, record in self.finished.items()]
        return {"pending": pending, "finished": finished, "counts": dict(self.counts)}

    def restore(self, state: dict[str, Any]) -> None:
        for item in state["pending"]:
            offer, check = value_from_json(item["offer"]), value_from_json(item["check"])
            touched = {item["target"]}
            _objects(offer, touched)
            _objects(check, touched)
            intent = Intent(
                item["number"],
                item["target"],
                offer,
                check,
                item["submitted"],
                item["deadline"],
                frozenset(touched),
                item["attempts"],
                item["reason"],
            )
            self.pending[intent.number] = intent
            for object_id in intent.touches:
                self.by_object.setdefault(object_id, set()).add(intent.number)
        self.finished = {number: record for number, record in state["finished"]}
        self.counts.update(state["counts"])

    # ----------------------------------------------------------------- events

    def _accept(self, event: Event) -> Step:
        from avm_vm.node.engine import Step

        offer, check = value_from_json(event["offer"]), value_from_json(event["check"])
        touched = {event["target"]}
        _objects(offer, touched)
        _objects(check, touched)
        number = self.engine.applied - 1  # this event's index: snapshots keep the count
        start, target = event["t"], event["target"]
        deadline = start + event["wait"]
        intent = Intent(number, target, offer, check, start, deadline, frozenset(touched))
        self.pending[number] = intent
        for object_id in intent.touches:
            self.by_object.setdefault(object_id, set()).add(number)
        self.counts["accepted"] += 1
        return Step(reply=message("intent_response", request_id=0, intent=number))

    def _try(self, event: Event) -> Step:
        """Run the intents the event names as one transaction; settle them if it commits,
        else note why on each (they stay pending)."""
        from avm_vm.node.engine import Step

        numbers = event["intents"]
        gone = [n for n in numbers if n not in self.pending]
        if gone or not 0 < len(numbers) <= MAX_BATCH or len(set(numbers)) != len(numbers):
            why = f"intent {gone[0]} is no longer pending" if gone else "not a batch"
            return Step(error=why, error_kind="IntentGone")
        batch = [self.pending[n] for n in numbers]
        args: list[Value] = [(True,), NOTHING]
        for intent in batch:
            args += [ObjectRef(intent.target), intent.offer, intent.check]
        rt = self.engine.runtime
        outcome = rt.start(self.interpreter, len(batch) - 1, tuple(args))
        while type(outcome) is Preempted:  # the batch ends within this event
            outcome = rt.proceed()
        self.counts["batches_tried"] += 1
        if type(outcome) is Done:
            self.counts["batches_committed"] += 1
            for intent in batch:
                self._finish(intent, "settled", None, numbers, event["t"])
        elif type(outcome) is Failed:
            error = outcome.failure.error
            reason = f"{error.kind.qualified_name}: {error.message}"
            for intent in batch:
                intent.attempts += 1
                intent.reason = reason
        return self.engine._step(outcome)

    def _expire(self, event: Event) -> Step:
        from avm_vm.node.engine import Step

        intent = self.pending.get(event["intent"])
        if intent is not None:
            tried = intent.attempts
            if tried == 0:
                why = "no batch was tried"
            else:
                batches = "batch" if tried == 1 else "batches"
                why = f"{tried} {batches} tried, the last failed with {intent.reason}"
            reason = f"its deadline passed before a batch satisfied its requirements ({why})"
            self._finish(intent, "failed", reason, None, event["t"])
        return Step()

    def _finish(
        self, intent: Intent, state: str, reason: str | None, batch: list[int] | None, at: int
    ) -> None:
        del self.pending[intent.number]
        for object_id in intent.touches:
            numbers = self.by_object[object_id]
            numbers.discard(intent.number)
            if not numbers:
                del self.by_object[object_id]
        self.counts["settled" if state == "settled" else "expired"] += 1
        self.finished[intent.number] = {
            "state": state,
            "reason": reason,
            "batch": batch,
            "event": self.engine.applied - 1,  # the index of the event that decided it
            "at": at,
            "attempts": intent.attempts + (state == "settled"),
        }
        while len(self.finished) > FINISHED_KEPT:
            del self.finished[next(iter(self.finished))]

    # ----------------------------------------------------------------- reading

    def candidates(self, number: int) -> list[list[int]]:
        """The batches to try for intent ``number``, in the order to try them: the intent
        alone, then with one related intent, then two... Related intents are those sharing
        an object with it (or with one of those), ranked nearest first: fewer hops, then
        more objects shared with it, then the oldest. Each batch runs oldest first."""
        if number not in self.pending:
            return []
        mine = self.pending[number].touches
        ranked: list[tuple[int, int, int]] = []  # (hops, -objects shared, number)
        seen, frontier = {number}, [number]
        visited: set[int] = set()  # objects whose intents were reached already
        for hops in range(1, MAX_BATCH):  # a batch links its intents in this many hops
            reached: set[int] = set()
            for one in frontier:
                for object_id in self.pending[one].touches - visited:
                    visited.add(object_id)
                    reached |= self.by_object[object_id]
            frontier = sorted(reached - seen)
            seen |= reached
            ranked += [(hops, -len(mine & self.pending[n].touches), n) for n in frontier]
        related = [n for *_, n in sorted(ranked)[:MAX_RELATED]]
        batches: list[list[int]] = []
        for size in range(MAX_BATCH):
            for others in combinations(related, size):
                batches.append(sorted((*others, number)))
                if len(batches) == MAX_TRIES:
                    return batches
        return batches

    def overdue(self, now_ms: int) -> list[int]:
        """Pending intents whose deadline has passed at ``now_ms`` (wall clock, node side)."""
        return [n for n, intent in self.pending.items() if intent.deadline <= now_ms]

    def report(self, number: int) -> dict[str, Any]:
        """What became of intent ``number``, as `avm intent` shows it."""
        intent = self.pending.get(number)
        if intent is not None:
            return {"state": "pending", **intent.summary()}
        done = self.finished.get(number)
        if done is not None:
            return {"intent": number, **done}
        return {"intent": number, "state": "unknown"}

    def status(self) -> dict[str, Any]:
        """The pool in `avm status`: counts and the oldest pending intents."""
        oldest = [intent.summary() for intent in islice(self.pending.values(), 10)]
        return {"pending": len(self.pending), **self.counts, "oldest": oldest}


class _Sink:
    """Stands for a client connection: the answer to one batch's run resolves a future."""

    def __init__(self) -> None:
        self.answer: asyncio.Future[Message] = asyncio.get_running_loop().create_future()

    def send(self, answer: Message, known: str | None = None) -> None:
        """As `Connection.send` (``known``, the value's text, is for framing: unused)."""
        if not self.answer.done():
            self.answer.set_result(answer)


class IntentDesk:
    """The node side of intents: accepts them from clients, tries batches, logs expiries."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.lock = asyncio.Lock()  # one solver at a time: batches are tried in turn
        self.waiting: deque[int] = deque()  # intents to solve for, in acceptance order

    def start(self) -> None:
        """Solve for the intents a restart found pending (their solver died with the
        process), then keep solving and expiring."""
        self.waiting.extend(self.node.engine.intents.pending)
        self.node._spawn(self._expire_loop())
        if self.waiting:
            self.node._spawn(self._solve())

    async def submit(self, conn: Any, msg: Message) -> None:
        """`avm intent`: log the intent (refused, unlogged, if its target is not here),
        answer its number, and look for a batch that settles it."""
        node = self.node
        target = msg["target"]
        here = await node._on_vm(lambda engine: target in engine.runtime.store.objects)
        if not here:
            text = f"intent refused: obj:{target} is not an object on node {node.name}"
            conn.send(message("error", message=text))
            return
        if msg["wait_ms"] > MAX_WAIT_MS:
            text = f"intent refused: its deadline is over {MAX_WAIT_MS} ms away"
            conn.send(message("error", message=text))
            return
        event = {"k": "intent", "target": target, "offer": msg["offer"], "check": msg["check"]}
        event["wait"] = msg["wait_ms"]
        step = await node._apply(event)
        if step is None or step.reply is None:
            conn.send(message("error", message=f"intent not accepted: {node.fatal}"))
            return
        conn.send({**step.reply, "request_id": msg["request_id"]})
        self.waiting.append(step.reply["intent"])
        node._spawn(self._solve())

    async def report(self, conn: Any, msg: Message) -> None:
        number = msg["intent"]
        report = await self.node._on_vm(lambda engine: engine.intents.report(number))
        conn.send(message("intent_status_response", request_id=msg["request_id"], report=report))

    async def _solve(self) -> None:
        """Try batches for each waiting intent in turn, until one commits or the intent
        is no longer pending (a batch settled it, or its deadline passed)."""
        node = self.node
        async with self.lock:
            while self.waiting and not node.stopping:
                number = self.waiting.popleft()
                batches = await node._on_vm(lambda e, n=number: e.intents.candidates(n))
                for batch in batches:
                    pending = await node._on_vm(lambda e, n=number: n in e.intents.pending)
                    if node.stopping or not pending or await self._tried(batch):
                        break

    async def _tried(self, batch: list[int]) -> bool:
        """Queue a run of ``batch`` (an ``intent_batch`` event); whether it committed."""
        from avm_vm.node.node import Origin

        await hold("solver-before-batch")
        sink = _Sink()
        self.node._queue(Origin(0, conn=sink, heavy=True), {"k": "intent_batch", "intents": batch})
        try:
            answer = await asyncio.wait_for(sink.answer, BATCH_WAIT)
        except TimeoutError:
            logger.warning("the batch of intents %s took over %g s", batch, BATCH_WAIT)
            return False
        return bool(answer.get("ok")) and answer.get("failure") is None

    async def _expire_loop(self) -> None:
        """Log an ``intent_expired`` event for each intent past its deadline."""
        node = self.node
        while not node.stopping:
            await asyncio.sleep(EXPIRY_EVERY)
            now = int(time.time() * 1000)
            due = await node._on_vm(lambda engine, now=now: engine.intents.overdue(now))
            for number in due:
                if (
                    node.stopping
                    or await node._apply({"k": "intent_expired", "intent": number}) is None
                ):
                    return
