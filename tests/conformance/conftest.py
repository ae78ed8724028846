"""Helpers for the conformance tests: compile a source, run its main, look at the outcome.

Every conformance test runs a program compiled from source, so the whole path (compiler,
bytecode-level program, VM, handlers, runtime) is exercised together.

Coverage is measured, not claimed: every runtime a test runs through the fixtures is watched
(`Coverage.watch`) and the session records which instructions were performed, which error
kinds were raised and which events were logged. `test_coverage.py` checks the totals; it
runs last, and only when every other conformance test of this directory runs too.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest

from avm_vm.errors import AvmError, ErrorKind
from avm_vm.format.program import Program
from avm_vm.runtime.core import RunError, Runtime, RuntimeOptions
from avm_vm.runtime.handlers import Handler
from avm_vm.trace import Event, render_text
from avm_vm.values import Value, render
from avm_vm.vm.interpreter import Fault, Interpreter

HERE = Path(__file__).parent
COVERAGE_FILE = HERE / "test_coverage.py"
EXAMPLES = HERE.parents[1] / "examples"


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


# ---------------------------------------------------------------------- measured coverage


@dataclass
class Coverage:
    """What the conformance programs of this session actually exercised.

    * instructions: numbers of the instructions whose handler ran (a `Vis` was handled);
    * errors: kinds an instruction raised (seen at the handler table, so one a `try` caught
      counts too); kinds that failed an activation, seen as the `Fault` its interpreter
      answered: a callee's failure (which its caller only sees as ``nothing``), a pure
      function's failure inside callPure or a scry predicate; and main's `RunError`. A VM
      error that a `try` caught inside its own activation is not seen;
    * events: the event classes in the traces after each run.
    """

    instructions: set[int] = field(default_factory=set)
    errors: set[ErrorKind] = field(default_factory=set)
    events: set[type] = field(default_factory=set)
    _watched: weakref.WeakSet = field(default_factory=weakref.WeakSet, repr=False)

    def watch(self, runtime: Runtime) -> None:
        """Record what ``runtime`` does from now on; only this instance is changed.

        The runtime's loop reads its handler table (a list indexed by instruction number)
        from the instance, so each entry is replaced by a recording wrapper; each loaded
        interpreter's `run` and `throw` are shadowed by instance attributes that note a
        `Fault` answer. Programs loaded later are picked up at the next run.
        """
        if runtime not in self._watched:
            self._watched.add(runtime)
            runtime.handlers = [self._handler(i, h) for i, h in enumerate(runtime.handlers)]
        for interpreter in runtime.interpreters:
            if interpreter not in self._watched:
                self._watched.add(interpreter)
                self._interpreter(interpreter)

    def saw(self, outcome: Outcome) -> None:
        if outcome.failure is not None:
            self.errors.add(outcome.failure.error.kind)
        self.events.update(type(entry.event) for entry in outcome.runtime.trace.entries)

    def _handler(self, number: int, handler: Handler) -> Handler:
        def recorded(rt: Runtime, args: tuple[Value, ...]) -> Value:
            self.instructions.add(number)
            try:
                return handler(rt, args)
            except AvmError as error:
                self.errors.add(error.kind)
                raise

        return recorded

    def _interpreter(self, interpreter: Interpreter) -> None:
        def noting_faults(method: Callable[..., object]) -> Callable[..., object]:
            def noted(*args: object) -> object:
                outcome = method(*args)
                if type(outcome) is Fault:
                    self.errors.add(outcome.error.kind)
                return outcome

            return noted

        interpreter.run = noting_faults(interpreter.run)  # type: ignore[method-assign]
        interpreter.throw = noting_faults(interpreter.throw)  # type: ignore[method-assign]


COVERAGE = pytest.StashKey[Coverage]()


@pytest.fixture
def coverage(request: pytest.FixtureRequest) -> Coverage:
    """The session's measured coverage."""
    return request.config.stash.setdefault(COVERAGE, Coverage())


# ---------------------------------------------------------------------- fixtures


@pytest.fixture
def run_on(coverage: Coverage) -> Callable[..., Outcome]:
    """``run_on(runtime, program=None)``: run main on an existing runtime (state persists)."""

    def _run_on(runtime: Runtime, program: Program | None = None) -> Outcome:
        coverage.watch(runtime)
        try:
            outcome = Outcome(runtime, runtime.run_main(program), None)
        except RunError as failure:
            outcome = Outcome(runtime, None, failure)
        coverage.saw(outcome)
        return outcome

    return _run_on


@pytest.fixture
def run(run_on: Callable[..., Outcome]) -> Callable[..., Outcome]:
    """``run(source, **options)``: compile, run main on a fresh runtime, answer an Outcome."""

    def _run(source: str, **options: object) -> Outcome:
        return run_on(Runtime(compile_source(source), RuntimeOptions(**options)))  # type: ignore[arg-type]

    return _run


@pytest.fixture
def compile() -> Callable[..., Program]:
    """``compile(source)``: the compiled Program."""
    return compile_source


@pytest.fixture
def example() -> Callable[[str], str]:
    """``example(name)``: the source of examples/NAME.avm."""
    return lambda name: (EXAMPLES / f"{name}.avm").read_text(encoding="utf-8")


@pytest.fixture
def pingpong(example: Callable[[str], str]) -> Callable[[int], str]:
    """``pingpong(max)``: the §14.1 example (examples/pingpong.avm) with its ``max``."""
    source = example("pingpong")
    start = '["Ping", 0, 3, q]'
    assert start in source
    return lambda rounds: source.replace(start, f'["Ping", 0, {rounds}, q]')


# ---------------------------------------------------------------------- the coverage test


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the coverage tests last, and only when every other conformance test runs.

    This runs after every other plugin's selection (-k, -m, --deselect, --lf, ...). Tests
    marked ``slow`` are left out of the comparison: the default run deselects them, so the
    coverage must come from the fast tests.
    """
    checks = [item for item in items if item.path == COVERAGE_FILE]
    if not checks:
        return
    items[:] = [item for item in items if item.path != COVERAGE_FILE]
    if _unselected(items):
        config.hook.pytest_deselected(items=checks)
    else:
        items.extend(checks)


def _unselected(items: list[pytest.Item]) -> list[str]:
    """The conformance tests (other than slow ones) that will not run in this session."""
    modules: dict[Path, ModuleType] = {}
    selected: set[tuple[Path, str]] = set()
    for item in items:
        if isinstance(item, pytest.Function) and item.path.parent == HERE:
            modules[item.path] = item.module
            selected.add((item.path, item.originalname))
    missing = []
    for path in sorted(HERE.glob("test_*.py")):
        if path == COVERAGE_FILE:
            continue
        module = modules.get(path)
        if module is None:
            missing.append(path.name)
            continue
        module_marks = _marks(module)
        for name, test in vars(module).items():
            if not name.startswith("test") or not callable(test) or (path, name) in selected:
                continue
            if not any(mark.name == "slow" for mark in (*module_marks, *_marks(test))):
                missing.append(f"{path.name}::{name}")
    return missing


def _marks(obj: object) -> Iterable[pytest.Mark]:
    marks = getattr(obj, "pytestmark", [])
    return marks if isinstance(marks, list) else [marks]
