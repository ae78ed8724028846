"""Helpers for the conformance tests: compile a source, run its main, look at the outcome.

Every conformance test runs a program compiled from source, so the whole path (compiler,
bytecode-level program, VM, handlers, runtime) is exercised together.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from avm_vm.program import Program
from avm_vm.runtime import RunError, Runtime, RuntimeOptions
from avm_vm.trace import Event, render_text
from avm_vm.values import Value, render


def compile_source(source: str, filename: str = "test.avm") -> Program:
    from avmc.compiler import compile_source as compile_it

    return compile_it(source, filename)


@dataclass
class Outcome:
    runtime: Runtime
    value: Value | None
    failure: RunError | None

    @property
    def text(self) -> str:
        """The result in canonical text; fails the test if main failed."""
        assert self.failure is None, f"main failed: {self.failure}"
        return render(self.value)

    @property
    def error(self) -> str:
        """``Kind: message`` of the failure; fails the test if main returned."""
        assert self.failure is not None, f"main returned {render(self.value)}"
        return str(self.failure)

    @property
    def lines(self) -> list[str]:
        return render_text(self.runtime.trace.entries).splitlines()

    def events(self, kind: type) -> list[Event]:
        return [e.event for e in self.runtime.trace.entries if type(e.event) is kind]


def run_program(runtime: Runtime, program: Program | None = None) -> Outcome:
    try:
        return Outcome(runtime, runtime.run_main(program), None)
    except RunError as failure:
        return Outcome(runtime, None, failure)


@pytest.fixture
def run():
    """``run(source, **options)``: compile, run main on a fresh runtime, answer an Outcome."""

    def _run(source: str, **options: object) -> Outcome:
        program = compile_source(source)
        return run_program(Runtime(program, RuntimeOptions(**options)))

    return _run


@pytest.fixture
def compile():
    """``compile(source)``: the compiled Program."""
    return compile_source


@pytest.fixture
def run_on():
    """``run_on(runtime, program=None)``: run main on an existing runtime (state persists)."""
    return run_program
