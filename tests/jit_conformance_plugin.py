"""A pytest plugin for `test_jit_differential`: the conformance suite under a forced JIT mode.

Loaded into a child pytest (``-p jit_conformance_plugin``), it makes every interpreter a
runtime loads run with ``$AVM_JIT_MODE``, records what each top-level run did (result or
error with its location, trace as text and as JSON lines, fuel used, and how many functions
had native code), labelled with the test
that ran it, and writes the list as JSON to ``$AVM_JIT_RECORD`` when the session ends. The
wall clock `now()` reads is frozen, so the two children's runs compare exactly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from avm_vm.format.program import Program
from avm_vm.runtime import registry
from avm_vm.runtime.core import RunError, Runtime
from avm_vm.runtime.handlers import events
from avm_vm.trace import render_json_lines, render_text
from avm_vm.values import Value, render
from avm_vm.vm.interpreter import Interpreter

MODE = os.environ["AVM_JIT_MODE"]
FROZEN_CLOCK_NS = 1_750_000_000_000 * 1_000_000  # a plausible wall clock, in 2025
RECORDS: list[dict[str, object]] = []
_current = {"test": ""}


class _ForcedInterpreter(Interpreter):
    def __init__(self, program: Program, jit: str = "off") -> None:
        super().__init__(program, MODE)


def summary(runtime: Runtime, value: Value | None, failure: RunError | None) -> dict[str, object]:
    """Everything a run shows, in comparable form."""
    entries = runtime.trace.entries
    error = None
    if failure is not None:
        error = [
            failure.error.kind.qualified_name,
            failure.error.message,
            failure.function,
            failure.line,
            failure.col,
            failure.object_id,
            failure.behavior,
        ]
    return {
        "test": _current["test"],
        "value": None if failure is not None else render(value),
        "error": error,
        "trace": render_text(entries, duct=True),
        "json": render_json_lines(entries),
        "fuel": runtime.fuel.used,
        "native": sum(
            proc.native is not None for i in runtime.interpreters for proc in i.procs
        ),  # not compared: how many functions ran natively
    }


_run_function = Runtime.run_function


def _recording_run_function(
    self: Runtime, interpreter: Interpreter, function: int, args: tuple[Value, ...] = ()
) -> Value:
    try:
        value = _run_function(self, interpreter, function, args)
    except RunError as failure:
        RECORDS.append(summary(self, None, failure))
        raise
    RECORDS.append(summary(self, value, None))
    return value


def pytest_configure(config: pytest.Config) -> None:
    registry.Interpreter = _ForcedInterpreter  # type: ignore[misc]
    events.time = SimpleNamespace(time_ns=lambda: FROZEN_CLOCK_NS)  # type: ignore[attr-defined]
    Runtime.run_function = _recording_run_function  # type: ignore[method-assign]


def pytest_runtest_setup(item: pytest.Item) -> None:
    _current["test"] = item.nodeid


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    Path(os.environ["AVM_JIT_RECORD"]).write_text(json.dumps(RECORDS), encoding="utf-8")
