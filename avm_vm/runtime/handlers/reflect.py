"""Reflection and reification layers (spec §6.3, §6.4): other objects' metadata, state as data."""

from __future__ import annotations

from typing import TYPE_CHECKING

from avm_vm.errors import AvmError, ErrorKind
from avm_vm.format.program import FunctionKind
from avm_vm.runtime.handlers.common import maybe_name, object_id
from avm_vm.runtime.store import ObjectRecord
from avm_vm.values import NOTHING, Just, ObjectRef, Pair, TxRef, Value

if TYPE_CHECKING:
    from avm_vm.runtime.core import Runtime


def metadata(object_id: int, record: ObjectRecord) -> tuple[Value, ...]:
    """``[obj, machine, creating, current]`` as reflect answers it (spec §6.3)."""
    return (
        ObjectRef(object_id),
        record.machine,
        maybe_name(record.creating),
        maybe_name(record.current),
    )


def reflect(rt: Runtime, args: tuple[Value, ...]) -> Value:
    target = object_id(args[0], "reflect")
    record = rt.store.get(target)
    if record is None:
        raise AvmError(ErrorKind.REFLECT_METADATA_NOT_FOUND, id=target)
    return Just(metadata(target, record))


def _scry(rt: Runtime, predicate: Value, deep: bool) -> Value:
    """Objects of the store, in id order, whose (behavior and) metadata satisfy the predicate.

    The predicate is a pure function of the running program, named by a string; it gets the
    metadata (scryDeep: the behavior name and the metadata). Any failure or an answer other
    than a bool is ScryPredicateFailed.
    """
    interpreter = rt.act.interpreter
    function = interpreter.program.function_named(predicate) if type(predicate) is str else None
    if function is None or function.kind is not FunctionKind.PURE:
        raise AvmError(ErrorKind.SCRY_PREDICATE_FAILED)
    index = interpreter.program.functions.index(function)
    found: list[Value] = []
    for target in rt.store.ids():
        record = rt.store.objects[target]
        meta = metadata(target, record)
        arguments = (record.behavior, meta) if deep else (meta,)
        if len(arguments) != function.nparams:
            raise AvmError(ErrorKind.SCRY_PREDICATE_FAILED)
        try:
            verdict = interpreter.call_function(index, arguments, rt.fuel, rt.options.max_frames)
        except AvmError as error:
            if error.fatal:
                raise
            raise AvmError(ErrorKind.SCRY_PREDICATE_FAILED) from None
        if type(verdict) is not bool:
            raise AvmError(ErrorKind.SCRY_PREDICATE_FAILED)
        if verdict:
            ref = ObjectRef(target)
            found.append((ref, record.behavior, meta) if deep else Pair(ref, meta))
    return tuple(found)


def scry_meta(rt: Runtime, args: tuple[Value, ...]) -> Value:
    return _scry(rt, args[0], deep=False)


def scry_deep(rt: Runtime, args: tuple[Value, ...]) -> Value:
    return _scry(rt, args[0], deep=True)


def scry_r(rt: Runtime, args: tuple[Value, ...]) -> Value:
    """Profile R's stub: the predicate table does not exist."""
    raise AvmError(ErrorKind.SCRY_PREDICATE_FAILED)


def reify_context(rt: Runtime, args: tuple[Value, ...]) -> Value:
    """``[self, input, sender, machine, controller]`` (spec §6.4, profile R)."""
    act = rt.act
    sender = NOTHING if act.sender is None else Just(ObjectRef(act.sender))
    controller = None if rt.tx is None else rt.tx.controller
    return (ObjectRef(act.self_id), act.input, sender, act.machine, maybe_name(controller))


def reify_tx_state(rt: Runtime, args: tuple[Value, ...]) -> Value:
    """``just [tx, #writes, #creates, #destroys, #observed]`` (profile R counts)."""
    tx = rt.tx
    if tx is None:
        raise AvmError(ErrorKind.REIFY_NO_TRANSACTION)
    return Just((TxRef(tx.id), *tx.counts()))


def reify_constraints(rt: Runtime, args: tuple[Value, ...]) -> Value:
    return rt.constraints.reify()


def reify_constraints_r(rt: Runtime, args: tuple[Value, ...]) -> Value:
    raise AvmError(ErrorKind.REIFY_CONSTRAINTS_UNAVAILABLE)


HANDLERS = {
    "reflect": reflect,
    "scry_meta": scry_meta,
    "scry_deep": scry_deep,
    "reify_context": reify_context,
    "reify_tx_state": reify_tx_state,
    "reify_constraints": reify_constraints,
}
R_HANDLERS = {
    "scry_meta": scry_r,
    "scry_deep": scry_r,
    "reify_constraints": reify_constraints_r,
}
