"""The Mermaid rendering of a trace: a sequence diagram of the calls."""

from __future__ import annotations

from collections.abc import Iterable

from avm_vm.trace.events import ObjectCalled
from avm_vm.trace.record import DuctLink, TraceEntry
from avm_vm.values import render

_MERMAID_ESCAPES = str.maketrans({"#": "#35;", '"': "#quot;", ";": "#59;", "\n": " "})


def mermaid_text(text: str) -> str:
    """Escape what Mermaid's sequence-diagram labels cannot hold literally."""
    return text.translate(_MERMAID_ESCAPES)


def render_mermaid(entries: Iterable[TraceEntry]) -> str:
    """A sequence diagram of the calls: an arrow per call, a dashed arrow per answer.

    ObjectCalled entries come in post-order; their call ids number the calls in the order
    they started, so sorting by call id and keeping a stack of open calls gives the arrows
    in the order they happened.
    """
    calls = sorted(
        (e for e in entries if type(e.event) is ObjectCalled and e.duct_link is not None),
        key=lambda e: e.duct_link.call_id,  # type: ignore[union-attr]
    )
    names: dict[int | None, str] = {None: "main"}
    lines = ["sequenceDiagram", "    participant main"]
    body: list[str] = []

    def participant(link: DuctLink | None) -> str:
        key = None if link is None else link.object_id
        if key not in names:
            names[key] = f"o{key}"
            lines.append(
                f"    participant o{key} as {mermaid_text(f'obj:{key} ({link.behavior})')}"
            )  # type: ignore[union-attr]
        return names[key]

    open_calls: list[TraceEntry] = []

    def close(entry: TraceEntry) -> None:
        link = entry.duct_link
        callee, caller = participant(link), participant(link.parent)  # type: ignore[union-attr]
        event: ObjectCalled = entry.event  # type: ignore[assignment]
        if event.output is None:
            body.append(f"    {callee}--x{caller}: failed")
        else:
            note = " (reverted)" if entry.reverted else ""
            body.append(f"    {callee}-->>{caller}: {mermaid_text(render(event.output))}{note}")

    for entry in calls:
        link = entry.duct_link
        while open_calls and open_calls[-1].duct_link is not link.parent:  # type: ignore[union-attr]
            close(open_calls.pop())
        caller, callee = participant(link.parent), participant(link)  # type: ignore[union-attr]
        event = entry.event
        body.append(f"    {caller}->>{callee}: {mermaid_text(render(event.input))}")  # type: ignore[union-attr]
        open_calls.append(entry)
    while open_calls:
        close(open_calls.pop())
    return "\n".join(lines + body)
