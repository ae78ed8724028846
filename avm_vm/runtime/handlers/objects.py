"""Object layer (spec §6.1): create, destroy, call, receive."""

from __future__ import annotations

from typing import TYPE_CHECKING

from avm_vm.errors import AvmError, ErrorKind
from avm_vm.runtime.failures import CalleeFailed
from avm_vm.runtime.handlers.common import (
    PARK,
    name,
    object_id,
    optional_name,
    refuse_if_locked,
)
from avm_vm.runtime.handlers.search import refuse_if_searching
from avm_vm.runtime.runs import RemoteCall
from avm_vm.runtime.store import ObjectRecord
from avm_vm.runtime.transactions import PendingCreate
from avm_vm.trace import (
    CallFailure,
    DuctLink,
    MessageReceived,
    ObjectCalled,
    ObjectCreated,
    ObjectDestroyed,
)
from avm_vm.values import NOTHING, Just, ObjectRef, Value
from avm_vm.vm.interpreter import RETRY

if TYPE_CHECKING:
    from avm_vm.runtime.core import Runtime


def create_obj(rt: Runtime, args: tuple[Value, ...]) -> Value:
    """§6.1.1: the name is not validated (profile R); an unknown one fails at the first call."""
    behavior = name(args[0], "create")
    controller = optional_name(args[1], "create")
    new_id = rt.ids.object_id()
    code_hash = rt.registry.code_hash(behavior)
    if rt.tx is None:
        record = ObjectRecord(behavior, code_hash, rt.act.machine, controller, controller)
        rt.store.install(new_id, record)
    else:
        rt.tx.create(rt.journal, new_id, PendingCreate(behavior, code_hash, controller))
    rt.emit(ObjectCreated(new_id, behavior))
    return ObjectRef(new_id)


def destroy_obj(rt: Runtime, args: tuple[Value, ...]) -> Value:
    """§6.1.2 (profile R): existence is the only check; inside a tx the destroy is buffered."""
    target = object_id(args[0], "destroy")
    tx = rt.tx
    if target not in rt.store and (tx is None or target not in tx.creates):
        raise AvmError(ErrorKind.OBJ_NOT_FOUND, id=target)
    refuse_if_locked(rt, target)
    if tx is None:
        rt.store.remove(target)
    else:
        tx.destroy(rt.journal, target)
    rt.emit(ObjectDestroyed(target))
    return True


def call(rt: Runtime, args: tuple[Value, ...], strict: bool = False, leaf: bool = True) -> Value:
    """§7.1: route, look up, record in the tx, resolve, then push the callee's activation.

    Routing by the store's record first (§7.1 step 1); an object the store and the pending
    creations do not hold goes to the machine the node's location directory names (fixing
    the reference, which never consults it, §11.3). ``strict``: see `call_unwrap`. Outside
    a transaction in profile ours, a local callee may run as a leaf call instead
    (`Runtime.call_leaf`), unless ``leaf`` is off (the caller tried it already).
    """
    if leaf:
        answer = rt.call_leaf(args[0], args[1], strict)
        if answer is not RETRY:
            return answer
    target = args[0]
    target = target.id if type(target) is ObjectRef else object_id(target, "call")
    message = args[1]
    act = rt.act
    record = rt.store.objects.get(target)
    if record is not None and record.machine != act.machine:
        return _remote(rt, target, record.machine, record.behavior, message, strict)
    tx = rt.tx
    if record is not None:
        behavior, machine = record.behavior, record.machine
    elif tx is not None and target in tx.creates:
        behavior, machine = tx.creates[target].behavior, act.machine
    else:
        where = None if rt.network is None else rt.network.locate(target)
        if where is None or where == act.machine:
            raise AvmError(ErrorKind.OBJ_NOT_FOUND, id=target)
        return _remote(rt, target, where, f"@{where}", message, strict)
    if rt.store.locks:  # as a rule there are none
        refuse_if_locked(rt, target)
    if tx is not None:
        tx.called(rt.journal, rt.store, target, message)
    entry = rt.registry.behaviors.get(behavior)
    if entry is None:
        raise AvmError(ErrorKind.BEHAVIOR_NOT_FOUND, name=behavior)
    return rt.enter(entry, target, message, machine, behavior, strict)


def call_unwrap(rt: Runtime, args: tuple[Value, ...]) -> Value:
    """`call!(o, m)`: as `call`, but the answer is the callee's value itself, and when the
    callee fails this instruction fails with the callee's kind and message."""
    return call(rt, args, True)


def _remote(
    rt: Runtime, target: int, machine: str, behavior: str, message: Value, strict: bool
) -> Value:
    """§7.5, no local lookup. A node parks the run until the answer arrives
    (`complete_remote_call`); otherwise the transport answers at once. Inside a
    transaction on a node (profile ours) the callee joins it (docs/transactions.md); the
    spec's remote calls (profile R, and without a node) stay outside it."""
    refuse_if_searching(rt, "a call to an object on another machine")
    caller = rt.act
    rt.pay_walk(message)  # it is encoded to be sent
    network = rt.network
    if network is not None:
        duct = DuctLink(target, behavior, rt.next_call_id(), caller.duct)
        tx = rt.tx
        if tx is None or not rt.ours:
            rt.request = RemoteCall(machine, target, message, caller.self_id, duct, strict)
            return PARK
        why = network.cannot_join(machine)
        if why is not None:
            raise AvmError(
                ErrorKind.TX_CANNOT_JOIN,
                detail=f"the call to obj:{target} on node {machine} cannot join tx:{tx.id}: {why}",
            )
        tx.participants.add(machine)
        coordinator = tx.coordinator or rt.options.machine
        rt.request = RemoteCall(
            machine,
            target,
            message,
            caller.self_id,
            duct,
            strict,
            tx.id,
            coordinator,
            tx.controller,
        )
        return PARK
    if rt.transport is None:
        raise AvmError(ErrorKind.MACHINE_UNREACHABLE, machine=machine)
    value = rt.transport.call(machine, target, message, caller.self_id)
    duct = DuctLink(target, behavior, rt.next_call_id(), caller.duct)
    rt.emit_at(ObjectCalled(target, message, value), duct)
    return value if strict else Just(value)


def complete_remote_call(
    rt: Runtime, request: RemoteCall, value: Value, changed: bool = True
) -> Value:
    """The remote callee answered ``value``: log the call (§7.5 step 3), answer ``just``
    (the value itself to a `call!`)."""
    rt.emit_at(ObjectCalled(request.target, request.message, value), request.duct)
    rt.note_call(None)
    tx = rt.tx
    if request.tx is not None and tx is not None and changed:  # it changed things there
        tx.remote_made += 1
        rt.journal.set_attr(tx, "remote_kept", tx.remote_kept + 1)
    return value if request.strict else Just(value)


def remote_call_failed(rt: Runtime, request: RemoteCall, failure: CallFailure) -> AvmError | None:
    """The remote callee ran and failed: log the call with why; `call` then answers
    ``nothing`` (None here), `call!` fails with the answered error."""
    rt.emit_at(ObjectCalled(request.target, request.message, None, failure), request.duct)
    rt.note_call(failure)
    return CalleeFailed(failure) if request.strict else None


def receive(rt: Runtime, args: tuple[Value, ...]) -> Value:
    """§6.1.4: the activation's message waits in the mailbox; the first receive takes it."""
    act = rt.act
    answer: Value = NOTHING
    if act.unreceived:
        act.unreceived = False
        answer = Just(act.input)
    rt.emit(MessageReceived(act.self_id, answer))
    return answer


def receive_r(rt: Runtime, args: tuple[Value, ...]) -> Value:
    """Profile R's stub: no mailbox, always nothing."""
    rt.emit(MessageReceived(rt.act.self_id, NOTHING))
    return NOTHING


HANDLERS = {
    "create_obj": create_obj,
    "destroy_obj": destroy_obj,
    "call": call,
    "call_unwrap": call_unwrap,
    "receive": receive,
}
R_HANDLERS = {"receive": receive_r}
