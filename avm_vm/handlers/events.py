"""This project's event instructions (DESIGN.md §9): entropy and time.

Both are deterministic when asked to be: entropy comes from a generator seeded by the
runtime's `seed` option, and `now` answers the fixed `now` option when one is given. Like
id counters, draws are not undone when a callee fails. They log no event yet.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from avm_vm.values import Value

if TYPE_CHECKING:
    from avm_vm.runtime import Runtime


def entropy(rt: Runtime, args: tuple[Value, ...]) -> Value:
    return rt.rng.getrandbits(64)


def now(rt: Runtime, args: tuple[Value, ...]) -> Value:
    fixed = rt.options.now
    return time.time_ns() // 1_000_000 if fixed is None else fixed


HANDLERS = {"entropy": entropy, "now": now}
R_HANDLERS: dict = {}
