"""`avm test`: run the `test "name" { ... }` items of `.avm` files (docs/testing.md).

Each file is compiled once with its tests (`avmc compile --tests`); each test is then a
`main`-like function run as a top-level program in a fresh runtime holding only that file's
program, so tests cannot see each other's objects. A test passes when its run returns and
fails when it fails (an `assert` or `expect_fail` that does not hold, a failure nothing
caught, running out of fuel...). The reports (dots or names, the failures, a summary line,
JSON, JUnit XML) are built from the same `TestResult`s.
"""

from __future__ import annotations

import json
import re
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import click

from avm_vm.diagnostics import DiagnosticError
from avm_vm.format.bytecode import decode, load
from avm_vm.format.program import FunctionKind, Program
from avm_vm.runtime.core import RunError, Runtime, RuntimeOptions
from avm_vm.trace import render_text
from avmc import ast
from avmc.compiler import build_path
from avmc.fmt import avm_files
from avmc.lower import TEST_PREFIX

TRACE_EXCERPT = 10  # trace entries shown under a failure (the last ones)

# Characters XML 1.0 cannot hold at all, even escaped (a message may contain any string).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass
class TestFailure:
    __test__ = False  # not a pytest class

    kind: str  # the error kind, e.g. Failed, FuelExhausted, TxConflict
    message: str
    location: str | None  # where in the test the run stopped: file:line:col
    raised_at: str | None  # where a callee's failure passed up by `call!` was raised
    trace: str  # the last TRACE_EXCERPT trace entries, text form


@dataclass
class TestResult:
    __test__ = False

    file: str
    name: str
    line: int  # where the test is written
    duration: float  # seconds
    failure: TestFailure | None = None

    @property
    def outcome(self) -> str:
        return "passed" if self.failure is None else "failed"


@dataclass
class FileReport:
    path: str
    results: list[TestResult] = field(default_factory=list)
    error: str | None = None  # the compiler's diagnostics when the file does not compile


def run_file(
    path: Path,
    options: RuntimeOptions,
    pattern: str | None = None,
    started: Callable[[TestResult], None] | None = None,
) -> FileReport:
    """Compile ``path`` (a `.tape` file compiled with `--tests` is read) with its tests and
    run those whose name contains ``pattern``; ``started`` is told of each result as it is
    known (for the dots)."""
    report = FileReport(str(path))
    lines: dict[str, int] = {}  # where each test is written, when the source is known
    try:
        if path.suffix == ".tape":
            program = load(path)
        else:
            compiled = build_path(path, tests=True)
            program = decode(compiled.tape, str(path))
            for item in compiled.module.items:
                if isinstance(item, ast.TestDef):
                    lines[TEST_PREFIX + item.name] = item.span.line
    except DiagnosticError as error:
        report.error = error.render(_text_of(path))
        return report
    for index, function in enumerate(program.functions):
        if function.kind is not FunctionKind.MAIN or not function.name.startswith(TEST_PREFIX):
            continue
        name = function.name.removeprefix(TEST_PREFIX)
        if pattern is not None and pattern not in name:
            continue
        line = lines.get(function.name) or next((at for at, _ in function.lines if at), 0)
        result = _run_test(program, index, str(path), name, line, options)
        report.results.append(result)
        if started is not None:
            started(result)
    return report


def _run_test(
    program: Program, index: int, path: str, name: str, line: int, options: RuntimeOptions
) -> TestResult:
    runtime = Runtime(program, options)
    start = time.perf_counter()
    failure = None
    try:
        runtime.run_function(runtime.interpreters[0], index)
    except RunError as error:
        origin = error.origin
        failure = TestFailure(
            error.error.kind.qualified_name,
            error.error.message,
            f"{path}:{error.line}:{error.col}" if error.line else None,
            origin.location if origin is not None else None,
            render_text(runtime.trace.entries[-TRACE_EXCERPT:]),
        )
    except Exception as bug:  # a fault of the toolchain: this test fails, the others run
        trace = render_text(runtime.trace.entries[-TRACE_EXCERPT:])
        failure = TestFailure("InternalError", repr(bug), None, None, trace)
    return TestResult(path, name, line, time.perf_counter() - start, failure)


def _text_of(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


# ---------------------------------------------------------------- reports


def failure_text(result: TestResult) -> str:
    """A failed test as the report shows it: what failed, where, and the trace's end."""
    failure = result.failure
    assert failure is not None
    lines = [f'___ {result.file}: test "{result.name}" (line {result.line}) ___']
    where = f"{failure.location}: " if failure.location else ""
    lines.append(f"{where}{failure.kind}: {failure.message}")
    if failure.raised_at is not None:
        lines.append(f"  raised at {failure.raised_at}")
    if failure.trace:
        lines.append(f"trace (last {TRACE_EXCERPT} entries at most):")
        lines.extend(f"  {entry}" for entry in failure.trace.splitlines())
    return "\n".join(lines)


def summary(reports: list[FileReport], seconds: float) -> str:
    results = [r for report in reports for r in report.results]
    failed = sum(r.failure is not None for r in results)
    text = f"{len(results) - failed} passed, {failed} failed"
    broken = sum(report.error is not None for report in reports)
    if broken:
        text += f", {broken} file{'s' if broken > 1 else ''} did not compile"
    return f"{text} in {seconds:.2f}s"


def json_report(reports: list[FileReport], seconds: float) -> str:
    tests = [
        {
            "file": r.file,
            "name": r.name,
            "line": r.line,
            "outcome": r.outcome,
            "duration": round(r.duration, 6),
            "failure": None
            if r.failure is None
            else {
                "kind": r.failure.kind,
                "message": r.failure.message,
                "location": r.failure.location,
                "raised_at": r.failure.raised_at,
                "trace": r.failure.trace,
            },
        }
        for report in reports
        for r in report.results
    ]
    errors = [{"file": rep.path, "message": rep.error} for rep in reports if rep.error]
    passed = sum(t["outcome"] == "passed" for t in tests)
    document = {
        "passed": passed,
        "failed": len(tests) - passed,
        "errors": errors,
        "duration": round(seconds, 6),
        "tests": tests,
    }
    return json.dumps(document, indent=2)


def junit_xml(reports: list[FileReport], seconds: float) -> bytes:
    """A JUnit XML document (one testsuite per file) as CI servers read it."""
    root = ElementTree.Element("testsuites", name="avm test", time=f"{seconds:.3f}")
    for report in reports:
        failures = sum(r.failure is not None for r in report.results)
        suite = ElementTree.SubElement(
            root,
            "testsuite",
            name=report.path,
            tests=str(len(report.results) + (report.error is not None)),
            failures=str(failures),
            errors=str(int(report.error is not None)),
            time=f"{sum(r.duration for r in report.results):.3f}",
        )
        if report.error is not None:
            case = ElementTree.SubElement(suite, "testcase", classname=report.path, name="compile")
            error = ElementTree.SubElement(case, "error", message="the file does not compile")
            error.text = _xml_safe(report.error)
        for r in report.results:
            case = ElementTree.SubElement(
                suite,
                "testcase",
                classname=r.file,
                name=_xml_safe(r.name),
                file=r.file,
                line=str(r.line),
                time=f"{r.duration:.3f}",
            )
            if r.failure is not None:
                element = ElementTree.SubElement(
                    case, "failure", type=r.failure.kind, message=_xml_safe(r.failure.message)
                )
                element.text = _xml_safe(failure_text(r))
    return ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)


def _xml_safe(text: str) -> str:
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


# ---------------------------------------------------------------- the command


def run_files(
    paths: list[Path],
    pattern: str | None,
    verbose: bool,
    as_json: bool,
    junit_path: Path | None,
    options: RuntimeOptions,
) -> int:
    """Run the tests of ``paths`` and report them on stdout; the exit status: 0 every test
    passed, 1 a test failed, 2 a file did not compile (its other files still run)."""
    echo: Callable[..., None] = (lambda *args, **kwargs: None) if as_json else click.echo
    start = time.perf_counter()
    reports: list[FileReport] = []
    for path in avm_files(paths):
        shown = False

        def started(result: TestResult, path: Path = path) -> None:
            nonlocal shown
            if verbose:
                echo(f"{path}::{result.name} {result.outcome.upper()} ({result.duration:.2f}s)")
            else:
                mark = "." if result.failure is None else "F"
                echo(mark if shown else f"{path} {mark}", nl=False)
            shown = True

        report = run_file(path, options, pattern, started)
        reports.append(report)
        if shown and not verbose:
            echo()
        if report.error is not None:  # on stderr even with --json, which holds it too
            click.echo(f"{path}: does not compile\n{report.error}", err=True)
    seconds = time.perf_counter() - start
    failed = [r for report in reports for r in report.results if r.failure is not None]
    if failed:
        echo("\n=== failures ===")
        for result in failed:
            echo(failure_text(result) + "\n")
    if as_json:
        click.echo(json_report(reports, seconds))
    else:
        echo(summary(reports, seconds))
    if junit_path is not None:
        junit_path.write_bytes(junit_xml(reports, seconds))
    if any(report.error is not None for report in reports):
        return 2
    return 1 if failed else 0
