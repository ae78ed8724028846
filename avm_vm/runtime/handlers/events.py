"""This project's event instructions (DESIGN.md §9): entropy, time and `log`.

Under `avm run` both are deterministic when asked to be: entropy comes from a generator
seeded by the runtime's `seed` option, and `now` answers the fixed `now` option when one is
given. On a node (`avm_vm.node`), entropy comes from an `EntropyPool` fed only by logged
entropy events and `now` answers the time carried by the event being applied, so replaying
the node's log reproduces every value (docs/durability.md). Like id counters, draws are not
undone when a callee fails.

`log(value)` only shows a value: a `LogRecorded` trace entry, and the runtime's `log_sink`
(`avm run` prints each on stderr as it runs). Its own step and bookkeeping are given back,
so a run with logs uses the fuel it would use without them (docs/semantics.md, "log").
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING

from avm_vm.runtime.failures import location
from avm_vm.trace import LogRecorded
from avm_vm.values import BOX_BYTES, EFFECT_STEPS, NOTHING, Value

if TYPE_CHECKING:
    from avm_vm.runtime.core import Runtime


class EntropyPool:
    """``state = sha256(state || event bytes)`` per entropy event; draw n answers the first
    8 bytes (big-endian) of ``sha256(state || n as 8 bytes big-endian)``, n counting every
    draw since the pool was made."""

    __slots__ = ("draws", "state")

    def __init__(self, state: bytes = bytes(32), draws: int = 0) -> None:
        self.state = state
        self.draws = draws

    def mix(self, data: bytes) -> None:
        self.state = hashlib.sha256(self.state + data).digest()

    def draw(self) -> int:
        digest = hashlib.sha256(self.state + self.draws.to_bytes(8, "big")).digest()
        self.draws += 1
        return int.from_bytes(digest[:8], "big")


def entropy(rt: Runtime, args: tuple[Value, ...]) -> Value:
    pool = rt.entropy
    return rt.rng.getrandbits(64) if pool is None else pool.draw()


def now(rt: Runtime, args: tuple[Value, ...]) -> Value:
    if rt.event_time is not None:
        return rt.event_time
    fixed = rt.options.now
    return time.time_ns() // 1_000_000 if fixed is None else fixed


def log(rt: Runtime, args: tuple[Value, ...]) -> Value:
    value = args[0]
    fuel = rt.fuel
    fuel.remaining += 1 + EFFECT_STEPS  # the EFFECT's step and what an instruction costs
    fuel.room += BOX_BYTES  # and what the runtime counted for what an instruction keeps
    rt.emit(LogRecorded(value))
    sink = rt.log_sink
    if sink is not None:
        frame = rt.act.frames[-1]
        lines = frame.function.function.lines
        line, col = lines[frame.pc - 1] if 0 < frame.pc <= len(lines) else (0, 0)
        sink(value, location(frame.function.program.source_name, line, col))
    return NOTHING


HANDLERS = {"entropy": entropy, "now": now, "log": log}
R_HANDLERS: dict = {}
