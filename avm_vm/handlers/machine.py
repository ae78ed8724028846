"""Machine layer (spec §6.7): physical placement of objects and of the execution."""

from __future__ import annotations

from typing import TYPE_CHECKING

from avm_vm.errors import AvmError, ErrorKind
from avm_vm.handlers.common import maybe_name, name, object_id
from avm_vm.trace import ExecutionMoved, ObjectFetched, ObjectMoved
from avm_vm.values import Value

if TYPE_CHECKING:
    from avm_vm.runtime import Runtime


def get_machine(rt: Runtime, args: tuple[Value, ...]) -> Value:
    """Profile R: store metadata only, so a pending creation answers ``nothing``."""
    record = rt.store.get(object_id(args[0], "get_machine"))
    return maybe_name(None if record is None else record.machine)


def teleport(rt: Runtime, args: tuple[Value, ...]) -> Value:
    """Move the running activation; forbidden in a tx; no reachability check (profile R)."""
    machine = name(args[0], "teleport")
    if rt.tx is not None:
        raise AvmError(ErrorKind.MACHINE_TELEPORT_DURING_TX)
    act = rt.act
    rt.emit(ExecutionMoved(act.machine, machine))
    act.machine = machine
    return True


def move_object(rt: Runtime, args: tuple[Value, ...]) -> Value:
    """Profile R: unknown object answers false; a move inside a tx is undone by its abort."""
    target = object_id(args[0], "move_object")
    machine = name(args[1], "move_object")
    record = rt.store.get(target)
    if record is None:
        return False
    rt.store.replace(target, record._replace(machine=machine))
    rt.emit(ObjectMoved(target, record.machine, machine))
    return True


def fetch(rt: Runtime, args: tuple[Value, ...]) -> Value:
    """§6.7 [A]: bring the object to the executing machine; unknown answers false, no event."""
    target = object_id(args[0], "fetch")
    record = rt.store.get(target)
    if record is None:
        return False
    here = rt.act.machine
    rt.store.replace(target, record._replace(machine=here))
    rt.emit(ObjectFetched(target, here))
    return True


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
