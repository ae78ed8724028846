"""The trace (spec §10): events, entries with their duct, and the text/JSON/Mermaid renderings."""

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
    StateUpdated,
    TransactionAborted,
    TransactionCommitted,
    TransactionStarted,
)
from avm_vm.trace.jsonl import entry_json, event_json, render_json_lines, value_json
from avm_vm.trace.mermaid import mermaid_text, render_mermaid
from avm_vm.trace.record import DuctLink, Trace, TraceEntry
from avm_vm.trace.text import duct_text, entry_text, render_text

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
