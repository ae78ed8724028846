"""Introspection layer (spec §6.2): the activation's own context and state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from avm_vm.runtime.handlers.common import values
from avm_vm.trace import StateUpdated
from avm_vm.values import NOTHING, Just, ObjectRef, Value

if TYPE_CHECKING:
    from avm_vm.runtime.core import Runtime


def self_(rt: Runtime, args: tuple[Value, ...]) -> Value:
    return ObjectRef(rt.act.self_id)


def input_(rt: Runtime, args: tuple[Value, ...]) -> Value:
    return rt.act.input


def current_machine(rt: Runtime, args: tuple[Value, ...]) -> Value:
    return rt.act.machine


def sender(rt: Runtime, args: tuple[Value, ...]) -> Value:
    caller = rt.act.sender
    return NOTHING if caller is None else Just(ObjectRef(caller))


def state_seen(rt: Runtime, object_id: int) -> Value:
    """Read-your-writes: inside a tx, the object's latest pending state, else the committed
    one (`()` for an object never written)."""
    tx = rt.tx
    if tx is not None:
        pending = tx.states.get(object_id)
        if pending is not None:
            return pending
    return rt.store.states.get(object_id, ())


def get_state(rt: Runtime, args: tuple[Value, ...]) -> Value:
    tx = rt.tx
    if tx is None:  # the common case, without `state_seen`'s call
        return rt.store.states.get(rt.act.self_id, ())
    self_id = rt.act.self_id
    tx.saw(rt.store, self_id)  # the commit checks that this state did not change meanwhile
    return state_seen(rt, self_id)


def get_state_r(rt: Runtime, args: tuple[Value, ...]) -> Value:
    """Profile R: the committed state only (spec §8.9)."""
    return rt.store.states.get(rt.act.self_id, ())


def set_state(rt: Runtime, args: tuple[Value, ...]) -> Value:
    state = args[0]
    if type(state) is not tuple:
        values(state, "set_state")  # raises
    rt.pay_walk(state)  # snapshots and state hashes encode it
    act = rt.act
    self_id = act.self_id
    tx = rt.tx
    if tx is None:
        rt.store.set_state(self_id, state)
    else:
        if rt.ours:
            tx.saw(rt.store, self_id)
        tx.write(rt.journal, self_id, state)
    # Recorded as its fields: the event is made only if the trace is read.
    controller = None if tx is None else tx.controller
    rt.trace.record(controller, act.duct, StateUpdated, self_id, state)
    return NOTHING


HANDLERS = {
    "self": self_,
    "input": input_,
    "current_machine": current_machine,
    "get_state": get_state,
    "set_state": set_state,
    "sender": sender,
}
R_HANDLERS = {"get_state": get_state_r}
