"""What the machine layer ships between nodes: an object (moveObject, fetch) and a running
activation (teleport), as the JSON objects of the `move_object` and `teleport` messages.

Code never travels: both name their behavior and carry its code hash, and the receiving
node accepts them only if it loaded the same code. An activation's frames are plain data
(DESIGN.md §6); each frame names its function by its position in the discovery order of
the base function's callees (`bytecode.callee_order`), which, like the code hash, does not
depend on how the two nodes' programs lay out their function tables.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from avm_vm.format.bytecode import callee_order, code_hash
from avm_vm.format.opcodes import INITIAL_VALUE, Op, RegType
from avm_vm.node.codec import WireError, value_from_json, value_to_json
from avm_vm.runtime.core import Activation, Runtime
from avm_vm.runtime.store import ObjectRecord
from avm_vm.trace import DuctLink
from avm_vm.values import NAT_MAX, Value
from avm_vm.vm.interpreter import Frame, Interpreter


class TransferError(Exception):
    """A shipped object or activation this node cannot take; the message says why."""


class RemoteLink(DuctLink):
    """A link of a duct that came from another node: it remembers the node."""

    __slots__ = ("machine",)

    def __init__(self, machine: str, object_id: int, call_id: int, parent: DuctLink | None) -> None:
        super().__init__(object_id, f"@{machine}", call_id, parent)
        self.machine = machine


# Ducts cross nodes with their innermost links only: a ping-pong a thousand hops deep
# would otherwise send the whole chain with every hop.
DUCT_LINKS = 16


def duct_to_wire(link: DuctLink | None, here: str) -> list[tuple[str, int, int]]:
    """The innermost links of a duct as ``(machine, object, call id)``, outermost first."""
    links: list[tuple[str, int, int]] = []
    while link is not None and len(links) < DUCT_LINKS:
        machine = link.machine if type(link) is RemoteLink else here
        links.append((machine, link.object_id, link.call_id))
        link = link.parent
    links.reverse()
    return links


def duct_from_wire(links: list[tuple[str, int, int]]) -> DuctLink | None:
    parent: DuctLink | None = None
    for machine, object_id, call_id in links:
        parent = RemoteLink(machine, object_id, call_id, parent)
    return parent


# ---------------------------------------------------------------------------- objects


def export_object(runtime: Runtime, object_id: int) -> dict[str, Any] | None:
    """The object's record and state as JSON, or None when the store does not hold it."""
    record = runtime.store.get(object_id)
    if record is None:
        return None
    return {
        "behavior": record.behavior,
        "code_hash": None if record.code_hash is None else record.code_hash.hex(),
        "creating": record.creating,
        "current": record.current,
        "state": [value_to_json(v) for v in runtime.store.state(object_id)],
    }


def install_object(runtime: Runtime, object_id: int, shipped: dict[str, Any]) -> None:
    """Install a shipped object here; `TransferError` if this node cannot run it."""
    if object_id in runtime.store:
        raise TransferError(f"obj:{object_id} already exists on {runtime.options.machine}")
    behavior = _text(shipped, "behavior")
    _check_code(runtime, behavior, shipped.get("code_hash"))
    creating, current = _optional_text(shipped, "creating"), _optional_text(shipped, "current")
    state = _values(shipped.get("state"), "state")
    record = ObjectRecord(
        behavior, runtime.registry.code_hash(behavior), runtime.options.machine, creating, current
    )
    runtime.store.install(object_id, record)
    runtime.store.set_state(object_id, tuple(state))


def _check_code(runtime: Runtime, behavior: str, digest: object) -> None:
    mine = runtime.registry.code_hash(behavior)
    here = runtime.options.machine
    if mine is None:
        raise TransferError(f'behavior "{behavior}" is not loaded on {here}')
    if digest != mine.hex():
        raise TransferError(f'behavior "{behavior}" on {here} has different code')


# ---------------------------------------------------------------------------- activations


def export_activation(act: Activation, dst: int, here: str) -> dict[str, Any]:
    """A suspended activation as JSON: its context, frames and the register awaiting the
    teleport's answer."""
    program = act.interpreter.program
    base = act.frames[0].function.index
    position = {index: n for n, index in enumerate(callee_order(program, base))}
    return {
        "behavior": act.behavior,
        "code_hash": code_hash(program, base).hex(),
        "self": act.self_id,
        "input": value_to_json(act.input),
        "sender": act.sender,
        "machine": act.machine,
        "unreceived": act.unreceived,
        "duct": [list(link) for link in duct_to_wire(act.duct, here)],
        "dst": dst,
        "frames": [
            {
                "function": position[frame.function.index],
                "pc": frame.pc,
                "regs": [value_to_json(v) for v in frame.regs],
                "handlers": [list(h) for h in frame.handlers],
                "result_reg": frame.result_reg,
            }
            for frame in act.frames
        ],
    }


def import_activation(runtime: Runtime, shipped: dict[str, Any]) -> tuple[Activation, int, str]:
    """The activation a `teleport` message carries, its answer register and the machine it
    left; `TransferError` if this node lacks its code or the data is inconsistent."""
    behavior = _text(shipped, "behavior")
    digest = _text(shipped, "code_hash")
    interpreter, base = _find_code(runtime, behavior, digest)
    order = callee_order(interpreter.program, base)
    frames = [_frame(interpreter, order, item) for item in _list(shipped.get("frames"), "frames")]
    if not frames or frames[0].function.index != base:
        raise TransferError("teleport: the first frame must run the base function")
    dst = _nat(shipped.get("dst"), "dst")
    _check_stack(frames, dst)
    sender = shipped.get("sender")
    if sender is not None:
        sender = _nat(sender, "sender")
    duct_links = _list(shipped.get("duct"), "duct")
    try:
        links = [(str(m), _nat(o, "duct"), _nat(c, "duct")) for m, o, c in duct_links]
    except (TypeError, ValueError):
        raise TransferError("teleport: duct must be [machine, object, call id] triples") from None
    act = Activation(
        interpreter,
        frames[0],
        _nat(shipped.get("self"), "self"),
        _value(shipped.get("input"), "input"),
        sender,
        runtime.options.machine,
        behavior,
        None,
    )
    act.frames = frames
    act.unreceived = shipped.get("unreceived") is True
    # The activation's own link keeps its call id; its behavior is known here.
    if links:
        _, object_id, call_id = links[-1]
        act.duct = DuctLink(object_id, behavior, call_id, duct_from_wire(links[:-1]))
    return act, dst, _text(shipped, "machine")


def _find_code(runtime: Runtime, behavior: str, digest: str) -> tuple[Interpreter, int]:
    """The loaded function with this code: the behavior's, or a main's."""
    here = runtime.options.machine
    entry = runtime.registry.behavior(behavior)
    if entry is not None:
        if code_hash(entry.interpreter.program, entry.function).hex() == digest:
            return entry.interpreter, entry.function
        raise TransferError(f'behavior "{behavior}" on {here} has different code')
    for interpreter in runtime.interpreters:
        main = interpreter.program.main
        if main is not None and code_hash(interpreter.program, main).hex() == digest:
            return interpreter, main
    raise TransferError(f'the code of "{behavior}" is not loaded on {here}')


def _frame(interpreter: Interpreter, order: list[int], item: object) -> Frame:
    """One shipped frame, checked so that a hostile one cannot make the VM misbehave."""
    if type(item) is not dict:
        raise TransferError("teleport: a frame must be a JSON object")
    position = _nat(item.get("function"), "function")
    if position >= len(order):
        raise TransferError("teleport: a frame names a function outside the behavior")
    proc = interpreter.procs[order[position]]
    function = proc.function
    regs = _values(item.get("regs"), "regs")
    if len(regs) != function.nregs:
        raise TransferError(f"teleport: {function.name} has {function.nregs} registers")
    for kind, value in zip(function.reg_types, regs, strict=True):
        if kind is not RegType.ANY and type(value) is not type(INITIAL_VALUE[kind]):
            raise TransferError("teleport: a register holds a value of the wrong kind")
    pc = _nat(item.get("pc"), "pc")
    if pc not in proc.starts:  # the VM resumes a function only where a block starts
        raise TransferError("teleport: a frame's pc is not a resume point")
    handlers = []
    for handler in _list(item.get("handlers"), "handlers"):
        if type(handler) is not list or len(handler) != 2:
            raise TransferError("teleport: a handler must be [pc, register]")
        at, register = _nat(handler[0], "handler"), _nat(handler[1], "handler")
        if at not in proc.starts or register >= function.nregs:
            raise TransferError("teleport: a handler is outside its function")
        if function.reg_types[register] not in (RegType.ANY, RegType.STR):
            raise TransferError("teleport: a handler's register cannot hold its message")
        handlers.append((at, register))
    result_reg = item.get("result_reg")
    if result_reg is not None:
        result_reg = _nat(result_reg, "result_reg")
    return Frame(proc, pc, regs, handlers, result_reg)


def _check_stack(frames: list[Frame], dst: int) -> None:
    """Each frame must sit just after the op that suspended it: a CALL of the frame above
    (whose result register it names), and for the top frame the EFFECT answered in ``dst``."""
    for caller, callee in pairwise(frames):
        code = caller.function.function.code
        op = code[caller.pc - 1] if caller.pc else None
        if (
            op is None
            or op[0] != Op.CALL
            or op[2] != callee.function.index
            or op[1] != callee.result_reg
        ):
            raise TransferError("teleport: the frames do not form a call stack")
    top = frames[-1]
    op = top.function.function.code[top.pc - 1] if top.pc else None
    if op is None or op[0] != Op.EFFECT or op[1] != dst or frames[0].result_reg is not None:
        raise TransferError("teleport: the top frame is not suspended at an instruction")
    if top.function.function.reg_types[dst] not in (RegType.ANY, RegType.BOOL):
        raise TransferError("teleport: the answer register cannot hold a bool")


# ---------------------------------------------------------------------------- field checks


def _text(shipped: dict[str, Any], key: str) -> str:
    value = shipped.get(key)
    if type(value) is not str:
        raise TransferError(f"{key} must be a string")
    return value


def _optional_text(shipped: dict[str, Any], key: str) -> str | None:
    value = shipped.get(key)
    return None if value is None else _text(shipped, key)


def _nat(value: object, key: str) -> int:
    if type(value) is not int or not 0 <= value <= NAT_MAX:
        raise TransferError(f"{key} must be a natural number")
    return value


def _list(value: object, key: str) -> list:
    if type(value) is not list:
        raise TransferError(f"{key} must be a list")
    return value


def _value(value: object, key: str) -> Value:
    try:
        return value_from_json(value)
    except WireError as error:
        raise TransferError(f"{key}: {error}") from None


def _values(value: object, key: str) -> list[Value]:
    return [_value(item, key) for item in _list(value, key)]
