"""The `avm` command line: thin click commands over the runtime.

`avm run FILE` prints exactly the result of `main` on stdout (canonical text, spec §2.2);
the trace, when asked for, goes to stderr or to `--trace-out`, so the result stays
machine-readable. Compiler warnings of a source file and errors go to stderr, coloured on a
terminal (`--color`). Exit codes: 0 main returned, 1 a load, compile or runtime error (the
message on stderr), 2 a usage error (click's own).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from avm_vm.cli_options import (
    RUN_FUEL,
    color_option,
    fuel_option,
    jit_option,
    max_value_bytes_option,
    version_option,
)
from avm_vm.diagnostics import Diagnostic, DiagnosticError, Severity, Span, use_color
from avm_vm.errors import AvmError, ErrorKind
from avm_vm.format.bytecode import VERSION as TAPE_VERSION
from avm_vm.format.bytecode import decode, load
from avm_vm.format.program import Program
from avm_vm.node import PROTOCOL_VERSION
from avm_vm.runtime.core import RunError, Runtime, RuntimeOptions
from avm_vm.values import NO_OBJECT_ID, Value, render

_TRACE_FORMATS = ("json", "mermaid", "text")


# Runtime errors whose usual cause a hint can name: (kind, text in the message, hint).
_RUNTIME_HINTS = (
    (
        ErrorKind.TYPE_MISMATCH,
        "found a just value",
        "a maybe (what `call` answers) is not the value itself: use `call!`, `unwrap` or "
        "`match` to get at it",
    ),
    (
        ErrorKind.TYPE_MISMATCH,
        "found nothing",
        "`call` answers `nothing` when the call fails: use `call!` to fail with the callee's "
        "reason instead, or `match` the answer",
    ),
    (
        ErrorKind.TYPE_MISMATCH,
        "expected a string, found an object reference",
        'controllers are names (strings) such as "alice", not objects',
    ),
    (ErrorKind.FUEL_EXHAUSTED, "", "raise the limit with --fuel, unless the program never ends"),
    (ErrorKind.DEPTH_EXCEEDED, "", "raise the limit with --max-depth"),
)


class _Exit(Exception):
    """Stop with a message on stderr and exit status 1."""


class _Commands(click.Group):
    """The `avm` group: the node commands (avm node, call, create, status, ...) are loaded
    when one of them is used, so `avm run` does not pay for the networking code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *NODE_COMMAND_NAMES})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in NODE_COMMAND_NAMES and name not in self.commands:
            from avm_vm.node.cli import COMMANDS

            for command in COMMANDS:
                self.add_command(command)
        return super().get_command(ctx, name)


# The names of `avm_vm.node.cli.COMMANDS` (a test checks they agree).
NODE_COMMAND_NAMES = frozenset(
    (
        "node",
        "call",
        "create",
        "status",
        "state-hash",
        "snapshot",
        "peek",
        "load",
        "intent",
        "replay",
        "log",
        "certs",
    )
)


@click.group(cls=_Commands)
@version_option(
    "avm", f".tape format version {TAPE_VERSION}", f"wire protocol version {PROTOCOL_VERSION}"
)
def main() -> None:
    """avm: run AVM programs (.tape bytecode, or .avm source when avmc is installed)."""


@main.command("run")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@fuel_option(
    "VM steps the whole run may take (one per instruction, plus size charges: "
    "docs/semantics.md, Limits); past them the run stops with FuelExhausted. The default "
    "stops an endless loop within seconds.",
    default=RUN_FUEL,
)
@max_value_bytes_option
@click.option(
    "--max-depth",
    type=click.IntRange(min=1),
    default=RuntimeOptions.max_depth,
    show_default=True,
    help="Nested object calls allowed.",
)
@click.option(
    "--max-search",
    type=click.IntRange(min=1),
    default=RuntimeOptions.max_search,
    show_default=True,
    help="Runs of one transaction's body while it searches for choices that satisfy its "
    "requirements (docs/semantics.md, Nondeterminism); past them it fails with SearchLimit.",
)
@click.option("--trace", "show_trace", is_flag=True, help="Print the trace (to stderr).")
@click.option(
    "--trace-format", type=click.Choice(_TRACE_FORMATS), default="text", show_default=True
)
@click.option(
    "--trace-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the trace to this file instead of stderr (implies --trace).",
)
@click.option("--duct", is_flag=True, help="Text trace: show each entry's chain of calls.")
@click.option(
    "--profile",
    type=click.Choice(["ours", "r"]),
    default="ours",
    show_default=True,
    help="r: reproduce the reference implementation where we deliberately differ.",
)
@click.option(
    "--machine",
    default=RuntimeOptions.machine,
    show_default=True,
    help="Name of the executing machine.",
)
@click.option(
    "--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of entropy()."
)
@click.option(
    "--now",
    type=click.IntRange(min=0),
    default=None,
    help="Fix now() to this many milliseconds (default: the wall clock).",
)
@jit_option
@color_option
def run_command(
    file: Path,
    fuel: int,
    max_value_bytes: int,
    max_depth: int,
    max_search: int,
    show_trace: bool,
    trace_format: str,
    trace_out: Path | None,
    duct: bool,
    profile: str,
    machine: str,
    seed: int,
    now: int | None,
    jit: str,
    color: str,
) -> None:
    """Run the main program of FILE and print its result."""
    options = RuntimeOptions(
        fuel=fuel,
        max_value_bytes=max_value_bytes,
        max_depth=max_depth,
        max_search=max_search,
        machine=machine,
        seed=seed,
        now=now,
        profile=profile,
        jit=jit,
        record_trace=show_trace or trace_out is not None,  # a trace nobody reads costs a run
    )
    colored = use_color(sys.stderr, color)
    try:
        program = _load(file, colored)
        if program.main is None:
            raise _Exit(f"error: {file} has no main program to run")
        runtime = Runtime(program, options)
        runtime.log_sink = _print_log
        try:
            value = runtime.run_main()
        except RunError as failure:
            _emit_trace(runtime, show_trace, trace_format, trace_out, duct)
            raise _Exit(_describe(failure, file, colored)) from None
        _emit_trace(runtime, show_trace, trace_format, trace_out, duct)
        click.echo(render(value))
    except _Exit as stop:
        click.echo(str(stop), err=True, color=colored)
        sys.exit(1)
    except Exception as exc:  # a bug must still not show a traceback to the user
        click.echo(f"error: internal error: {exc!r}", err=True)
        sys.exit(1)


def _print_log(value: Value, where: str | None) -> None:
    """A `log(v)` as it runs: the value and where it ran, on stderr (stdout is the result)."""
    click.echo(f"log: {render(value)}" + (f"  ({where})" if where else ""), err=True)


def _load(file: Path, colored: bool) -> Program:
    """A verified program: `.avm` compiled through avmc (its warnings shown on stderr),
    anything else read as `.tape`."""
    if file.suffix == ".avm":
        try:
            from avmc.compiler import build_path
        except ImportError:
            raise _Exit(
                "error: running .avm source needs the compiler (avmc), which is not installed"
            ) from None
        try:
            compiled = build_path(file)
        except DiagnosticError as exc:
            raise _Exit(exc.render(_read_text(file), color=colored)) from None
        for diagnostic in compiled.warnings:
            click.echo(diagnostic.render(compiled.source, color=colored), err=True, color=colored)
        tape = compiled.tape
        # What was compiled goes through the same decoder and verifier as any `.tape` file.
        return _checked(lambda: decode(tape, str(file)), colored)
    return _checked(lambda: load(file), colored)


def _checked(read: Callable[[], Program], colored: bool) -> Program:
    """The program ``read`` decodes and verifies, or exit with its load error."""
    try:
        return read()
    except DiagnosticError as exc:
        raise _Exit(exc.render(color=colored)) from None


def _emit_trace(runtime: Runtime, show: bool, fmt: str, out: Path | None, duct: bool) -> None:
    if not (show or out):
        return
    # The renderers load only when a trace is printed (start-up time of every run).
    from avm_vm import trace

    entries = runtime.trace.entries
    if fmt == "json":
        text = trace.render_json_lines(entries)
    elif fmt == "mermaid":
        text = trace.render_mermaid(entries)
    else:
        text = trace.render_text(entries, duct)
    if out is None:
        click.echo(text, err=True)
        return
    try:
        out.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        raise _Exit(f"error: cannot write the trace to {out}: {exc.strerror or exc}") from None


def _describe(failure: RunError, file: Path, colored: bool) -> str:
    """The error kind and message, where it happened (with the source line, the whole
    failing expression underlined), the duct, and a hint when the cause is a common one."""
    error = failure.error
    source = _source_of(failure.source_name, file)
    span = None
    if failure.line:
        span = Span(failure.source_name, failure.line, failure.col)
        if source is not None:
            span = _whole_expression(source, span, error) or span
    if failure.object_id == NO_OBJECT_ID:
        where = f"while running main (function {failure.function})"
    else:
        where = (
            f"while running obj:{failure.object_id} (behavior {failure.behavior}), "
            f"function {failure.function}"
        )
    from avm_vm.trace import duct_text

    notes: tuple[str, ...] = (where, f"duct: {duct_text(failure.duct)}")
    origin = failure.origin
    if origin is not None and origin.location is not None:
        notes += (f"the callee failed at {origin.location}",)
    message = f"{error.kind.qualified_name}: {error.message}"
    diagnostic = Diagnostic(Severity.ERROR, message, span, notes, _hint(error))
    return diagnostic.render(source, color=colored)


def _hint(error: AvmError) -> str | None:
    return next(
        (
            hint
            for kind, text, hint in _RUNTIME_HINTS
            if kind is error.kind and text in error.message
        ),
        None,
    )


def _whole_expression(source: str, start: Span, error: AvmError) -> Span | None:
    """The span of the construct that failed at ``start`` (the line table keeps only where
    each instruction's expression starts); None without the compiler."""
    try:
        from avmc.source import failure_span
    except ImportError:
        return None
    kind = error.kind.qualified_name
    return failure_span(source, start.file, start.line, start.col, kind, error.message)


def _source_of(source_name: str, file: Path) -> str | None:
    """The program's source text, looked up as named and next to the file that was run."""
    for candidate in (Path(source_name), file.parent / Path(source_name).name):
        text = _read_text(candidate)
        if text is not None:
            return text
    return None


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, ValueError):
        return None


@main.command("lsp")
@click.option("--stdio", is_flag=True, help="Talk over stdin/stdout (the only transport).")
def lsp_command(stdio: bool) -> None:
    """Run the language server for editors over stdin/stdout (see docs/editors.md)."""
    try:
        from avmc.lsp.server import serve
    except ImportError as exc:
        click.echo(f"error: the language server needs avmc and pygls: {exc}", err=True)
        sys.exit(1)
    sys.exit(serve())


@main.command("repl")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
def repl_command(files: tuple[Path, ...]) -> None:
    """An interactive world: load FILES (.avm or .tape), then create, call, look at state
    and traces, and run snippets of the language (see docs/repl.md)."""
    from avm_vm.repl import run

    sys.exit(run(list(files)))


@main.command("test")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("-k", "pattern", metavar="PATTERN", help="Only tests whose name contains PATTERN.")
@click.option("-v", "--verbose", is_flag=True, help="A line per test (its name) instead of dots.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (and nothing else).")
@click.option(
    "--junit-xml",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the results as JUnit XML to this file (for CI).",
)
@fuel_option(
    "VM steps each test may take; past them the test fails with FuelExhausted.", default=RUN_FUEL
)
@jit_option
def test_command(
    paths: tuple[Path, ...],
    pattern: str | None,
    verbose: bool,
    as_json: bool,
    junit_xml: Path | None,
    fuel: int,
    jit: str,
) -> None:
    """Run the `test "name" { ... }` items of PATHS (.avm files, or directories searched for
    them; default: the current directory), each in a fresh world (see docs/testing.md).
    Exit status: 0 every test passed, 1 a test failed, 2 a file did not compile."""
    from avm_vm.testing import run_files

    options = RuntimeOptions(fuel=fuel, jit=jit)
    sys.exit(run_files(list(paths) or [Path(".")], pattern, verbose, as_json, junit_xml, options))
