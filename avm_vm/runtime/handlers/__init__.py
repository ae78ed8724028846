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
    search,
    tx,
)
from avm_vm.runtime.handlers.common import PARK, RESTART, SUSPEND, Handler

_MODULES = (objects, introspect, reflect, tx, pure, machine, controller, constraints, events)

__all__ = ["PARK", "RESTART", "SUSPEND", "Handler", "handler_table"]

# Instructions a body that may re-run cannot perform (docs/semantics.md, "Nondeterminism"):
# their answers or effects would differ, or stay, from one run to the next. Calls to other
# machines are refused where they are routed (objects.py).
UNSEARCHABLE = {
    "entropy": "entropy()",
    "now": "now()",
    "register_pure": "register_pure",
    "update_pure": "update_pure",
}


def handler_table(profile: str = "ours") -> list[Handler]:
    """The handler of every instruction, by number; ``profile="r"`` takes R's stubs."""
    by_name: dict[str, Handler] = {}
    for module in _MODULES:
        by_name.update(module.HANDLERS)
    if profile == "r":
        for module in _MODULES:
            by_name.update(module.R_HANDLERS)
    else:
        for name, what in UNSEARCHABLE.items():
            by_name[name] = search.guarded(by_name[name], what)
    missing = [i.name for i in INSTRUCTIONS if i.name not in by_name]
    if missing:
        raise AssertionError(f"instructions without a handler: {missing}")
    return [by_name[i.name] for i in INSTRUCTIONS]
