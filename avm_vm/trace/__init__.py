"""The trace (spec §10): events, entries with their duct, and the text/JSON/Mermaid renderings.

The renderings load on first use: running a program records a trace but rarely prints one.
"""

from importlib import import_module
from typing import Any

from avm_vm.trace.events import (
    BehaviorUpgraded,
    CallFailure,
    Event,
    ExecutionMoved,
    FunctionUpdated,
    LogRecorded,
    MessageReceived,
    ObjectCalled,
    ObjectCreated,
    ObjectDestroyed,
    ObjectFetched,
    ObjectFrozen,
    ObjectMoved,
    ObjectTransferred,
    SearchEnded,
    StateUpdated,
    TransactionAborted,
    TransactionCommitted,
    TransactionStarted,
)
from avm_vm.trace.record import DuctLink, Trace, TraceEntry

_RENDERINGS = {
    "entry_json": "jsonl",
    "event_json": "jsonl",
    "render_json_lines": "jsonl",
    "value_json": "jsonl",
    "mermaid_text": "mermaid",
    "render_mermaid": "mermaid",
    "duct_text": "text",
    "entry_text": "text",
    "render_text": "text",
}


def __getattr__(name: str) -> Any:
    module = _RENDERINGS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)


__all__ = [
    "BehaviorUpgraded",
    "CallFailure",
    "DuctLink",
    "Event",
    "ExecutionMoved",
    "FunctionUpdated",
    "LogRecorded",
    "MessageReceived",
    "ObjectCalled",
    "ObjectCreated",
    "ObjectDestroyed",
    "ObjectFetched",
    "ObjectFrozen",
    "ObjectMoved",
    "ObjectTransferred",
    "SearchEnded",
    "StateUpdated",
    "Trace",
    "TraceEntry",
    "TransactionAborted",
    "TransactionCommitted",
    "TransactionStarted",
    "duct_text",
    "entry_json",
    "entry_text",
    "event_json",
    "mermaid_text",
    "render_json_lines",
    "render_mermaid",
    "render_text",
    "value_json",
]
