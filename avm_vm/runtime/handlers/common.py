"""What every handler module shares: the call suspension marker and argument decoding.

Arguments arrive as AVM values; a value of the wrong kind (possible in hand-written tape)
is a `TypeMismatch` naming the instruction, like the VM's own operand checks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from avm_vm.errors import AvmError, ErrorKind, vm_error
from avm_vm.values import NOTHING, Just, NothingType, ObjectRef, TxRef, Value
from avm_vm.vm.ops import describe

if TYPE_CHECKING:
    from avm_vm.runtime.core import Runtime

Handler = Callable[["Runtime", tuple[Value, ...]], Value]


class _Suspend:
    """Answered by the call handler once it pushed the callee: the answer comes later."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "SUSPEND"


SUSPEND = _Suspend()


class _Restart:
    """Answered by a handler that put the executing activation back to a transaction's
    checkpoint (handlers/search.py): its frames are set, no register takes an answer."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "RESTART"


RESTART = _Restart()


class _Park:
    """Answered by a handler that set `Runtime.request`: the run waits on another machine."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "PARK"


PARK = _Park()


def _expected(instruction: str, what: str, value: Value) -> AvmError:
    return vm_error(
        ErrorKind.TYPE_MISMATCH, f"{instruction}: expected {what}, found {describe(value)}"
    )


def object_id(value: Value, instruction: str) -> int:
    if type(value) is not ObjectRef:
        raise _expected(instruction, "an object reference", value)
    return value.id


def tx_id(value: Value, instruction: str) -> int:
    if type(value) is not TxRef:
        raise _expected(instruction, "a transaction reference", value)
    return value.id


def name(value: Value, instruction: str) -> str:
    if type(value) is not str:
        raise _expected(instruction, "a string", value)
    return value


def optional_name(value: Value, instruction: str) -> str | None:
    """An optional controller argument: ``nothing`` when left out, else a string."""
    return None if type(value) is NothingType else name(value, instruction)


def values(value: Value, instruction: str) -> tuple[Value, ...]:
    if type(value) is not tuple:
        raise _expected(instruction, "a list", value)
    return value


def maybe_name(text: str | None) -> Value:
    """A machine or controller name as an answer: ``just "name"`` or ``nothing`` (§2.3)."""
    return NOTHING if text is None else Just(text)


def refuse_if_locked(rt: Runtime, target: int) -> None:
    """An object a transaction is committing across nodes answers no one until the
    decision: the caller learns it at once, it never waits (docs/transactions.md)."""
    holder = rt.store.locked_by(target)
    if holder is not None:
        raise AvmError(ErrorKind.OBJ_LOCKED, id=target, tx=holder)
