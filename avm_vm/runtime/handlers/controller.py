"""Controller layer (spec §6.8): logical ownership of objects."""

from __future__ import annotations

from typing import TYPE_CHECKING

from avm_vm.errors import AvmError, ErrorKind
from avm_vm.runtime.handlers.common import maybe_name, name, object_id, refuse_if_locked
from avm_vm.trace import ObjectFrozen, ObjectTransferred
from avm_vm.values import NOTHING, Just, Value

if TYPE_CHECKING:
    from avm_vm.runtime.core import Runtime


def current_controller(rt: Runtime, args: tuple[Value, ...]) -> Value:
    return maybe_name(None if rt.tx is None else rt.tx.controller)


def get_controller(rt: Runtime, args: tuple[Value, ...]) -> Value:
    """Profile R: committed metadata only; pending transfers are not visible."""
    record = rt.store.get(object_id(args[0], "get_controller"))
    return maybe_name(None if record is None else record.current)


def transfer_object(rt: Runtime, args: tuple[Value, ...]) -> Value:
    """Profile R: buffered without event inside a tx, immediate with event outside."""
    target = object_id(args[0], "transfer")
    controller = name(args[1], "transfer")
    record = rt.store.get(target)
    if record is None:
        raise AvmError(ErrorKind.CTRL_NOT_AVAILABLE, id=target)
    refuse_if_locked(rt, target)
    if rt.tx is not None:
        rt.tx.transfer(rt.journal, target, controller)
        return True
    rt.store.replace(target, record._replace(current=controller))
    rt.emit(ObjectTransferred(target, record.current or "none", controller))
    return True


def freeze(rt: Runtime, args: tuple[Value, ...]) -> Value:
    """Intended answers (§6.8): nothing = no controller, just true = synchronised through it,
    just false = no such object (a pending creation counts, with its pending controller)."""
    target = object_id(args[0], "freeze")
    record = rt.store.get(target)
    if record is not None:
        controller = record.current
    elif rt.tx is not None and target in rt.tx.creates:
        controller = rt.tx.creates[target].controller
    else:
        return Just(False)
    if controller is None:
        return NOTHING
    rt.emit(ObjectFrozen(target, controller))
    return Just(True)


def freeze_r(rt: Runtime, args: tuple[Value, ...]) -> Value:
    """Profile R: the object's own controller; unknown or controller-less answers nothing."""
    target = object_id(args[0], "freeze")
    record = rt.store.get(target)
    if record is None or record.current is None:
        return NOTHING
    rt.emit(ObjectFrozen(target, record.current))
    return Just(True)


HANDLERS = {
    "current_controller": current_controller,
    "get_controller": get_controller,
    "transfer_object": transfer_object,
    "freeze": freeze,
}
R_HANDLERS = {"freeze": freeze_r}
