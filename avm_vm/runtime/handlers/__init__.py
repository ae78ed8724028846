"""Effect handlers, one module per instruction layer, joined into one dispatch table.

A handler takes the runtime and the instruction's arguments and answers the instruction's
value (spec §2.3 encoding), or raises `AvmError`. The table is a list indexed by
instruction number, so the VM's `Vis` reaches its handler with one index.
"""

from __future__ import annotations

from avm_vm.format.instructions import INSTRUCTIONS
from avm_vm.runtime.handlers import (
    constraints,
    controller,
    events,
    introspect,
    machine,
    objects,
    pure,
    reflect,
    tx,
)
from avm_vm.runtime.handlers.common import PARK, SUSPEND, Handler

_MODULES = (objects, introspect, reflect, tx, pure, machine, controller, constraints, events)

__all__ = ["PARK", "SUSPEND", "Handler", "handler_table"]


def handler_table(profile: str = "ours") -> list[Handler]:
    """The handler of every instruction, by number; ``profile="r"`` takes R's stubs."""
    by_name: dict[str, Handler] = {}
    for module in _MODULES:
        by_name.update(module.HANDLERS)
    if profile == "r":
        for module in _MODULES:
            by_name.update(module.R_HANDLERS)
    missing = [i.name for i in INSTRUCTIONS if i.name not in by_name]
    if missing:
        raise AssertionError(f"instructions without a handler: {missing}")
    return [by_name[i.name] for i in INSTRUCTIONS]
