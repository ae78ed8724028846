"""Machine layer (spec §6.7): physical placement of objects and of the execution.

Without a network (`avm run`) these are profile R's metadata changes. On a node
(`Runtime.network`), placement is real: teleport ships the running activation, moveObject
ships the object, fetch pulls it here; each parks the run until the other node answers
(`avm_vm.runtime.runs`), and the `complete_*` functions finish the instruction when it resumes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from avm_vm.errors import AvmError, ErrorKind
from avm_vm.runtime.handlers.common import PARK, maybe_name, name, object_id, refuse_if_locked
from avm_vm.runtime.runs import FetchIn, MoveOut, Teleport
from avm_vm.trace import ExecutionMoved, ObjectFetched, ObjectMoved
from avm_vm.values import Value

if TYPE_CHECKING:
    from avm_vm.runtime.core import Runtime


def get_machine(rt: Runtime, args: tuple[Value, ...]) -> Value:
    """Profile R: store metadata, so a pending creation answers ``nothing``; on a node, the
    location directory answers for objects elsewhere."""
    target = object_id(args[0], "get_machine")
    record = rt.store.get(target)
    if record is not None:
        return maybe_name(record.machine)
    return maybe_name(None if rt.network is None else rt.network.locate(target))


def _peer(rt: Runtime, machine: str) -> bool:
    """Whether placing something on ``machine`` means shipping it to another node; a node
    refuses a machine it cannot reach (§6.7 [A]: MachineUnreachable)."""
    network = rt.network
    if network is None or machine == rt.act.machine:
        return False
    if not network.is_peer(machine):
        raise AvmError(ErrorKind.MACHINE_UNREACHABLE, machine=machine)
    return True


def teleport(rt: Runtime, args: tuple[Value, ...]) -> Value:
    """Move the running activation; forbidden in a tx. Without a network only the name
    changes (profile R); on a node the activation continues on the other node, and its
    ExecutionMoved entry is logged there."""
    machine = name(args[0], "teleport")
    if rt.tx is not None:
        raise AvmError(ErrorKind.MACHINE_TELEPORT_DURING_TX)
    act = rt.act
    if _peer(rt, machine):
        rt.request = Teleport(machine, act)
        return PARK
    rt.emit(ExecutionMoved(act.machine, machine))
    act.machine = machine
    return True


def move_object(rt: Runtime, args: tuple[Value, ...]) -> Value:
    """Profile R: unknown object answers false; a move inside a tx is undone by its abort.
    To another node: the object ships there (not inside a tx: a move cannot be undone)."""
    target = object_id(args[0], "move_object")
    machine = name(args[1], "move_object")
    record = rt.store.get(target)
    if record is None:
        return False
    refuse_if_locked(rt, target)
    if _peer(rt, machine):
        if rt.tx is not None:
            raise AvmError(ErrorKind.MACHINE_INVALID_TRANSFER)
        rt.request = MoveOut(machine, target)
        return PARK
    rt.store.replace(target, record._replace(machine=machine))
    rt.emit(ObjectMoved(target, record.machine, machine))
    return True


def complete_move(rt: Runtime, request: MoveOut, moved: Value) -> Value:
    """The other node installed the object (true) or refused it (false: it stays here)."""
    if moved is True:
        rt.store.forget(request.object_id)
        rt.emit(ObjectMoved(request.object_id, rt.act.machine, request.machine))
    return moved


def fetch(rt: Runtime, args: tuple[Value, ...]) -> Value:
    """§6.7 [A]: bring the object to the executing machine; unknown answers false, no event.
    On a node an object that lives elsewhere is pulled here (not inside a tx)."""
    target = object_id(args[0], "fetch")
    record = rt.store.get(target)
    here = rt.act.machine
    if record is None:
        where = None if rt.network is None else rt.network.locate(target)
        if where is None or not _peer(rt, where):
            return False
        if rt.tx is not None:
            raise AvmError(ErrorKind.MACHINE_INVALID_TRANSFER)
        rt.request = FetchIn(where, target)
        return PARK
    refuse_if_locked(rt, target)
    rt.store.replace(target, record._replace(machine=here))
    rt.emit(ObjectFetched(target, here))
    return True


def complete_fetch(rt: Runtime, request: FetchIn, fetched: Value) -> Value:
    """The owner moved the object here (true), or could not (false)."""
    if fetched is True:
        rt.emit(ObjectFetched(request.object_id, rt.act.machine))
    return fetched


def fetch_r(rt: Runtime, args: tuple[Value, ...]) -> Value:
    """Profile R's stub: the event and ``true``, nothing checked or changed."""
    rt.emit(ObjectFetched(object_id(args[0], "fetch"), rt.act.machine))
    return True


HANDLERS = {
    "get_machine": get_machine,
    "teleport": teleport,
    "move_object": move_object,
    "fetch": fetch,
}
R_HANDLERS = {"fetch": fetch_r}
