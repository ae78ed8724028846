"""The engine's whole state as canonical JSON, its hashes, and rebuilding an engine from it.

`capture` is what a snapshot stores and `restore` its inverse; both need a quiescent engine
(no parked run, no open transaction, no part of a transaction across nodes and no commit
awaiting acknowledgements), since a parked run's frames are not data. Two hashes:

* the **state hash** covers the world behaviors can see (objects, states, registry and
  program bytes, id and call counters, constraint store, directory, trace clock), so two
  nodes given the same calls agree on it whatever restarts, clocks and entropy they saw;
* the **full hash** also covers the node's bookkeeping (events applied, boots, entropy
  pool, time), which replay must reproduce too.

Both are sha256 of the canonical JSON (sorted keys, no spaces) of their part of the state.
A node hashes (at each checkpoint) and writes (at each snapshot) that text often, and its
objects and states are most of it, so it keeps each one's text until it changes
(`StateTexts`): a checkpoint then prints only what changed since the last one, which keeps
the loop's pause short as the store grows.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import compress
from operator import is_not, not_
from typing import Any

from avm_vm.format.bytecode import decode
from avm_vm.node.codec import value_from_json, value_to_json
from avm_vm.node.engine import Engine, Loaded
from avm_vm.node.eventlog import canonical_object, canonical_pieces, encode_event
from avm_vm.node.wire import dumps_json
from avm_vm.runtime.registry import BehaviorEntry, PureEntry
from avm_vm.runtime.store import ObjectRecord
from avm_vm.values import Value

State = dict[str, Any]
# The node's own part: not seen by behaviors, so outside the state hash. The intent pool and
# the peers' protocol versions are absent from snapshots written before them.
_BOOKKEEPING = ("applied", "boots", "entropy", "time", "intents", "peer_versions")


class StateError(Exception):
    """The engine cannot be captured now, or a stored state does not fit."""


def capture(engine: Engine) -> State:
    """The engine's state as JSON-ready data (canonical once encoded)."""
    state = _capture_rest(engine)
    store = engine.runtime.store
    state["objects"] = [_object_item(i, r) for i, r in sorted(store.objects.items())]
    state["states"] = [_state_item(i, s) for i, s in sorted(store.states.items())]
    return state


def _object_item(i: int, r: ObjectRecord) -> list[Any]:
    return [i, r.behavior, r.code_hash and r.code_hash.hex(), r.machine, r.creating, r.current]


def _state_item(i: int, state: tuple[Value, ...]) -> list[Any]:
    return [i, [value_to_json(v) for v in state]]


def _capture_rest(engine: Engine) -> State:
    """All of `capture` but the objects and their states."""
    rt = engine.runtime
    if rt.parked or rt.run is not None or rt.tx is not None:
        raise StateError("the node is not quiescent (a run is parked or a transaction open)")
    if engine.branches or engine.outcomes:  # their overlays and promises are not data
        raise StateError("the node is not quiescent (a transaction across nodes is open)")
    index = {id(item.interpreter): n for n, item in enumerate(engine.loaded)}
    index[id(engine.entry)] = -1  # the node's built-in entry program
    cons, directory = rt.constraints, engine.directory
    pool = rt.entropy
    assert pool is not None
    return {
        "programs": [base64.b64encode(item.tape).decode() for item in engine.loaded],
        "behaviors": {
            name: [index[id(e.interpreter)], e.function, e.code_hash.hex()]
            for name, e in sorted(rt.registry.behaviors.items())
        },
        "pures": {
            name: [index[id(e.interpreter)], e.function, e.version]
            for name, e in sorted(rt.registry.pures.items())
        },
        "counters": {
            "object": rt.ids.next_object,
            "tx": rt.ids.next_tx,
            "call": rt.call_ids,
            "runs": rt.runs,
            "trace": rt.trace.clock,
            "var": cons.next_var,
            "constraint": cons.next_constraint,
        },
        "domains": [[v, [value_to_json(x) for x in d]] for v, d in sorted(cons.domains.items())],
        "constraints": [[n, value_to_json(c.raw)] for n, c in sorted(cons.constraints.items())],
        "directory": {
            "objects": sorted(directory.objects.items()),
            "prefixes": sorted(directory.prefixes.items()),
            "peers": sorted(directory.peers),
        },
        "applied": engine.applied,
        "boots": engine.boots,
        "entropy": [pool.state.hex(), pool.draws],
        "time": rt.event_time,
        "intents": engine.intents.capture(),
        "peer_versions": sorted(directory.versions.items()),
    }


def _digest(part: State) -> str:
    return hashlib.sha256(encode_event(part)).hexdigest()


class StateText:
    """The canonical JSON text of a captured state, held as the text of each top-level
    part: the same bytes `encode_event` gives of `capture`'s answer, and the same hashes."""

    def __init__(self, parts: dict[str, str]) -> None:
        self.parts = parts

    def text(self) -> str:
        return canonical_object(self.parts)

    def full_hash(self) -> str:
        return _hash_of(self.parts)

    def state_hash(self) -> str:
        return _hash_of({k: v for k, v in self.parts.items() if k not in _BOOKKEEPING})


def _hash_of(parts: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for piece in canonical_pieces(parts):
        digest.update(piece.encode())
    return digest.hexdigest()


@dataclass
class StateTexts:
    """The objects and states as last captured, each with its text: records and states are
    replaced whole on every change, never changed in place, so one that is still the very
    same object still has the same text. It costs memory (some 280 bytes an object, about
    twice the text) and keeps each replaced record or state until the next capture."""

    objects: PrintedList = field(default_factory=lambda: PrintedList(_object_item))
    states: PrintedList = field(default_factory=lambda: PrintedList(_state_item))

    def capture(self, engine: Engine) -> StateText:
        """`capture` of ``engine`` as text, printing only what changed since the last."""
        parts = {k: dumps_json(v, sort_keys=True) for k, v in _capture_rest(engine).items()}
        store = engine.runtime.store
        parts["objects"] = self.objects.text(store.objects)
        parts["states"] = self.states.text(store.states)
        return StateText(parts)


@dataclass
class PrintedList:
    """One list of the state, by id (`item` makes an entry): the ids and values it was
    last printed from, in id order, and each entry's text."""

    item: Callable[[int, Any], list[Any]]
    ids: list[int] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    def text(self, items: dict[int, Any]) -> str:
        """The JSON list of the entries of ``items``, printing only those whose value is not
        the one last printed."""
        ids = list(items)
        if ids == sorted(ids):  # as created: the ids come in order (no sort, no lookups)
            values = list(items.values())
        else:
            ids.sort()
            values = [items[i] for i in ids]
        kept = len(self.ids)
        if ids[:kept] == self.ids:  # the same objects, and maybe new ones after them
            texts = self.texts + [""] * (len(ids) - kept)
            for k in compress(range(kept), map(is_not, values, self.values)):
                texts[k] = ""  # another value: printed again below
        else:  # some left or came in between: find each one's text by id
            known = dict(zip(self.ids, zip(self.values, self.texts, strict=True), strict=True))
            texts = []
            for i, value in zip(ids, values, strict=True):
                hit = known.get(i)
                texts.append(hit[1] if hit is not None and hit[0] is value else "")
        item = self.item
        for k in compress(range(len(ids)), map(not_, texts)):  # "": no text yet
            texts[k] = dumps_json(item(ids[k], values[k]), sort_keys=True)
        self.ids, self.values, self.texts = ids, values, texts
        return "[" + ",".join(texts) + "]"


def state_hash(state: State) -> str:
    """The world's hash: what two nodes given the same calls agree on."""
    return _digest({k: v for k, v in state.items() if k not in _BOOKKEEPING})


def full_hash(state: State) -> str:
    """The hash of everything, the node's bookkeeping included (replay checks it)."""
    return _digest(state)


def restore(engine: Engine, state: State) -> None:
    """Make a freshly built engine (no event applied) hold ``state``."""
    rt = engine.runtime
    try:
        for text in state["programs"]:
            tape = base64.b64decode(text)
            engine.loaded.append(Loaded(tape, rt.load(decode(tape, "<snapshot>"), replace=True)))
        interps = [item.interpreter for item in engine.loaded]

        def interp(n: int) -> Any:
            return engine.entry if n == -1 else interps[n]

        registry = rt.registry
        registry.behaviors = {
            name: BehaviorEntry(interp(n), f, bytes.fromhex(h))
            for name, (n, f, h) in state["behaviors"].items()
        }
        registry.pures = {
            name: PureEntry(interp(n), f, v) for name, (n, f, v) in state["pures"].items()
        }
        store = rt.store
        for i, behavior, code, machine, creating, current in state["objects"]:
            code_hash = None if code is None else bytes.fromhex(code)
            store.objects[i] = ObjectRecord(behavior, code_hash, machine, creating, current)
        store.drain_changes()  # restored objects are not news to the peers
        for i, values in state["states"]:
            store.states[i] = tuple(value_from_json(v) for v in values)
        counters = state["counters"]
        rt.ids.next_object, rt.ids.next_tx = counters["object"], counters["tx"]
        rt.call_ids, rt.runs, rt.trace.clock = counters["call"], counters["runs"], counters["trace"]
        cons = rt.constraints
        cons.next_var, cons.next_constraint = counters["var"], counters["constraint"]
        for v, values in state["domains"]:
            cons.domains[v] = tuple(value_from_json(x) for x in values)
        for n, raw in state["constraints"]:
            cons.constraints[n] = cons.parse(value_from_json(raw))
        directory = engine.directory
        directory.objects = {i: m for i, m in state["directory"]["objects"]}
        directory.prefixes = {p: m for p, m in state["directory"]["prefixes"]}
        directory.peers = set(state["directory"]["peers"])
        engine.applied, engine.boots = state["applied"], state["boots"]
        assert rt.entropy is not None
        rt.entropy.state, rt.entropy.draws = bytes.fromhex(state["entropy"][0]), state["entropy"][1]
        rt.event_time = state["time"]
        directory.versions = dict(state.get("peer_versions", ()))
        if "intents" in state:
            engine.intents.restore(state["intents"])
    except Exception as error:  # stored data, not code: whatever misfits is a clear error
        raise StateError(f"the stored state does not fit this node: {error!r}") from None
