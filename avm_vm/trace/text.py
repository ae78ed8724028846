"""The text rendering of a trace: one line per entry (spec §10.6)."""

from __future__ import annotations

from collections.abc import Iterable

from avm_vm.trace.record import TraceEntry


def entry_text(entry: TraceEntry, duct: bool = False) -> str:
    """``[4] called obj:1 with ...`` (spec §10.6), then the controller, reverted mark, duct."""
    parts = [f"[{entry.timestamp}] {entry.event.text()}"]
    if entry.controller is not None:
        parts.append(f" @ctrl:{entry.controller}")
    if entry.reverted:
        parts.append(" (reverted)")
    if duct:
        parts.append(f"  {{{duct_text(entry.duct)}}}")
    return "".join(parts)


def render_text(entries: Iterable[TraceEntry], duct: bool = False) -> str:
    return "\n".join(entry_text(entry, duct) for entry in entries)


def duct_text(chain: tuple[tuple[int, str, int], ...], keep: int = 2) -> str:
    """``main > #0 obj:0 ping > #1 obj:1 pong``, eliding the middle of long chains."""
    links = [f"#{call_id} obj:{obj} {behavior}" for obj, behavior, call_id in chain]
    if len(links) > 2 * keep + 1:
        links = [*links[:keep], f"..{len(links) - 2 * keep} more..", *links[-keep:]]
    return " > ".join(["main", *links])
