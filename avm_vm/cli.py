"""The `avm` command line: thin click commands over the runtime.

`avm run FILE` prints exactly the result of `main` on stdout (canonical text, spec §2.2);
the trace, when asked for, goes to stderr or to `--trace-out`, so the result stays
machine-readable. Exit codes: 0 main returned, 1 a load, compile or runtime error (the
message on stderr), 2 a usage error (click's own).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from avm_vm.cli_options import fuel_option, jit_option, max_value_bytes_option
from avm_vm.diagnostics import Diagnostic, DiagnosticError, Severity, Span
from avm_vm.format.bytecode import decode, load
from avm_vm.format.program import Program
from avm_vm.node.cli import COMMANDS as NODE_COMMANDS
from avm_vm.runtime.core import RunError, Runtime, RuntimeOptions
from avm_vm.trace import duct_text, render_json_lines, render_mermaid, render_text
from avm_vm.values import NO_OBJECT_ID, render

_RENDERERS = {
    "text": lambda entries, duct: render_text(entries, duct),
    "json": lambda entries, duct: render_json_lines(entries),
    "mermaid": lambda entries, duct: render_mermaid(entries),
}


class _Exit(Exception):
    """Stop with a message on stderr and exit status 1."""


@click.group()
def main() -> None:
    """avm: run AVM programs (.tape bytecode, or .avm source when avmc is installed)."""


@main.command("run")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@fuel_option("VM steps the whole run may take.")
@max_value_bytes_option
@click.option(
    "--max-depth",
    type=click.IntRange(min=1),
    default=RuntimeOptions.max_depth,
    show_default=True,
    help="Nested object calls allowed.",
)
@click.option("--trace", "show_trace", is_flag=True, help="Print the trace (to stderr).")
@click.option(
    "--trace-format", type=click.Choice(sorted(_RENDERERS)), default="text", show_default=True
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
def run_command(
    file: Path,
    fuel: int,
    max_value_bytes: int,
    max_depth: int,
    show_trace: bool,
    trace_format: str,
    trace_out: Path | None,
    duct: bool,
    profile: str,
    machine: str,
    seed: int,
    now: int | None,
    jit: str,
) -> None:
    """Run the main program of FILE and print its result."""
    options = RuntimeOptions(
        fuel=fuel,
        max_value_bytes=max_value_bytes,
        max_depth=max_depth,
        machine=machine,
        seed=seed,
        now=now,
        profile=profile,
        jit=jit,
    )
    try:
        program = _load(file)
        if program.main is None:
            raise _Exit(f"error: {file} has no main program to run")
        runtime = Runtime(program, options)
        try:
            value = runtime.run_main()
        except RunError as failure:
            _emit_trace(runtime, show_trace, trace_format, trace_out, duct)
            raise _Exit(_describe(failure, file)) from None
        _emit_trace(runtime, show_trace, trace_format, trace_out, duct)
        click.echo(render(value))
    except _Exit as stop:
        click.echo(str(stop), err=True)
        sys.exit(1)
    except Exception as exc:  # a bug must still not show a traceback to the user
        click.echo(f"error: internal error: {exc!r}", err=True)
        sys.exit(1)


def _load(file: Path) -> Program:
    """A verified program: `.avm` compiled through avmc, anything else read as `.tape`."""
    if file.suffix == ".avm":
        try:
            from avmc.compiler import build_path
        except ImportError:
            raise _Exit(
                "error: running .avm source needs the compiler (avmc), which is not installed"
            ) from None
        try:
            tape = build_path(file).tape
        except DiagnosticError as exc:
            raise _Exit(exc.render(_read_text(file))) from None
        # What was compiled goes through the same decoder and verifier as any `.tape` file.
        return _checked(lambda: decode(tape, str(file)))
    return _checked(lambda: load(file))


def _checked(read: Callable[[], Program]) -> Program:
    """The program ``read`` decodes and verifies, or exit with its load error."""
    try:
        return read()
    except DiagnosticError as exc:
        raise _Exit(exc.render()) from None


def _emit_trace(runtime: Runtime, show: bool, fmt: str, out: Path | None, duct: bool) -> None:
    if not (show or out):
        return
    text = _RENDERERS[fmt](runtime.trace.entries, duct)
    if out is None:
        click.echo(text, err=True)
        return
    try:
        out.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        raise _Exit(f"error: cannot write the trace to {out}: {exc.strerror or exc}") from None


def _describe(failure: RunError, file: Path) -> str:
    """The error kind and message, where it happened (with the source line) and the duct."""
    error = failure.error
    span = None
    if failure.line:
        span = Span(failure.source_name, failure.line, failure.col)
    if failure.object_id == NO_OBJECT_ID:
        where = f"while running main (function {failure.function})"
    else:
        where = (
            f"while running obj:{failure.object_id} (behavior {failure.behavior}), "
            f"function {failure.function}"
        )
    notes = (where, f"duct: {duct_text(failure.duct)}")
    message = f"{error.kind.qualified_name}: {error.message}"
    diagnostic = Diagnostic(Severity.ERROR, message, span, notes)
    return diagnostic.render(_source_of(failure.source_name, file))


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


for _command in NODE_COMMANDS:  # avm node, call, create, status
    main.add_command(_command)
