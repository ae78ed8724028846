"""Pure-function layer (spec §6.6): callPure, and real registerPure / updatePure.

A function argument is a string naming a pure function (kind PURE) of the running program.
Registry changes are immediate and not transactional (spec §8.7), but a failed callee's
registrations are undone with the rest of its effects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from avm_vm.errors import AvmError, ErrorKind
from avm_vm.format.program import FunctionKind
from avm_vm.runtime.handlers.common import name, values
from avm_vm.trace import FunctionUpdated
from avm_vm.values import Value

if TYPE_CHECKING:
    from avm_vm.runtime.core import Runtime


def call_pure(rt: Runtime, args: tuple[Value, ...]) -> Value:
    """The function's result as is; ``nothing`` when it declines (wrong arity, failure).
    The VM performs most call_pure itself (vm_translate); it comes here for the
    cases it leaves to the runtime, such as an unknown name."""
    function = name(args[0], "call_pure")
    arguments = values(args[1], "call_pure")
    entry = rt.registry.pure(function)
    if entry is None:
        raise AvmError(ErrorKind.PURE_NOT_FOUND, name=function)
    fuel, max_frames = rt.fuel, rt.options.max_frames
    return entry.interpreter.answer_pure(entry.function, arguments, fuel, max_frames)


def _function(rt: Runtime, value: Value, instruction: str) -> int:
    """The index of the pure function of the running program that ``value`` names."""
    wanted = name(value, instruction)
    program = rt.act.interpreter.program
    for index, function in enumerate(program.functions):
        if function.name == wanted and function.kind is FunctionKind.PURE:
            return index
    raise AvmError(ErrorKind.PURE_NOT_FOUND, name=wanted)


def register_pure(rt: Runtime, args: tuple[Value, ...]) -> Value:
    function = name(args[0], "register_pure")
    if rt.registry.pure(function) is not None:
        raise AvmError(ErrorKind.PURE_ALREADY_REGISTERED, name=function)
    rt.registry.register_pure(function, rt.act.interpreter, _function(rt, args[1], "register_pure"))
    return True


def update_pure(rt: Runtime, args: tuple[Value, ...]) -> Value:
    function = name(args[0], "update_pure")
    if rt.registry.pure(function) is None:
        raise AvmError(ErrorKind.PURE_NOT_FOUND, name=function)
    rt.registry.update_pure(function, rt.act.interpreter, _function(rt, args[1], "update_pure"))
    rt.emit(FunctionUpdated(function))
    return True


def register_pure_r(rt: Runtime, args: tuple[Value, ...]) -> Value:
    """Profile R's stub: functions cannot travel in instructions."""
    raise AvmError(ErrorKind.PURE_ALREADY_REGISTERED, name=name(args[0], "register_pure"))


def update_pure_r(rt: Runtime, args: tuple[Value, ...]) -> Value:
    """Profile R's stub: the event and ``true``, nothing changed."""
    rt.emit(FunctionUpdated(name(args[0], "update_pure")))
    return True


HANDLERS = {"call_pure": call_pure, "register_pure": register_pure, "update_pure": update_pure}
R_HANDLERS = {"register_pure": register_pure_r, "update_pure": update_pure_r}
