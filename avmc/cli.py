"""The `avmc` command line: thin click commands over `avmc.compiler`.

Exit codes: 0 success, 1 a compile error (or a `.tape` file that fails verification),
2 a usage error (click's own). Diagnostics go to stderr, coloured on a terminal (`--color`);
`avmc check --format json` writes them to stdout as one JSON document for tools.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from avm_vm.cli_options import color_option, version_option
from avm_vm.diagnostics import Diagnostic, DiagnosticError, Severity, use_color
from avm_vm.format.bytecode import VERSION as TAPE_VERSION
from avm_vm.format.bytecode import load
from avm_vm.format.program import Program
from avmc.cfg import debug_info, render_dot, render_mermaid
from avmc.compiler import Compilation, build_path
from avmc.disasm import disassemble
from avmc.fmt import avm_files, format_data, format_file
from avmc.ir import format_program
from avmc.source import display_text

_SOURCE = click.Path(exists=True, dir_okay=False, path_type=Path)


def _compile_or_exit(path: Path, optimize: bool = True, tests: bool = False) -> Compilation:
    colored = _colored()
    try:
        result = build_path(path, optimize=optimize, tests=tests)
    except DiagnosticError as exc:
        click.echo(exc.render(_read_text(path), color=colored), err=True, color=colored)
        sys.exit(1)
    for diagnostic in result.warnings:
        click.echo(diagnostic.render(result.source, color=colored), err=True, color=colored)
    return result


def _colored() -> bool:
    """Whether diagnostics on stderr are coloured, as the group's ``--color`` says."""
    mode = click.get_current_context().find_root().params.get("color", "auto")
    return use_color(sys.stderr, mode)


def _read_text(path: Path) -> str | None:
    """The file as the parser saw it (for caret lines), or None when it cannot be read."""
    try:
        return display_text(path.read_bytes())
    except OSError:
        return None


@click.group()
@version_option("avmc", f"produces .tape format version {TAPE_VERSION}")
@color_option
def main(color: str) -> None:
    """avmc: compile AVM behavior programs (.avm) to Tape bytecode (.tape)."""


@main.command("compile")
@click.argument("source", type=_SOURCE)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the result (default: SOURCE with .tape; stdout for ir).",
)
@click.option(
    "--emit",
    type=click.Choice(["tape", "ir", "llvm"]),
    default="tape",
    show_default=True,
    help="tape: the bytecode file; ir: the optimised Tape IR as text; llvm: the LLVM IR the "
    "JIT compiles for each function.",
)
@click.option("--no-opt", is_flag=True, help="Skip the optimisation passes.")
@click.option("--function", "function_name", help="With --emit llvm: only this function.")
@click.option(
    "--tests",
    is_flag=True,
    help='Include the `test "name"` items (left out by default), as functions named "test NAME".',
)
def compile_command(
    source: Path,
    output: Path | None,
    emit: str,
    no_opt: bool,
    function_name: str | None,
    tests: bool,
) -> None:
    """Compile SOURCE."""
    if function_name is not None and emit != "llvm":
        raise click.UsageError("--function only applies to --emit llvm")
    result = _compile_or_exit(source, optimize=not no_opt, tests=tests)
    if emit in ("ir", "llvm"):
        if emit == "ir":
            text = format_program(result.ir)
        else:
            text = _llvm_text(result.program, function_name)
        if output is None:
            click.echo(text, nl=False)
        else:
            output.write_text(text, encoding="utf-8")
        return
    target = output or source.with_suffix(".tape")
    data = result.tape
    _write_atomically(target, data)
    click.echo(f"wrote {target} ({len(data)} bytes)", err=True)


def _llvm_text(program: Program, function_name: str | None) -> str:
    """The LLVM IR of each function (or only ``function_name``), or why it has none."""
    from avm_vm.jit.engine import llvm_ir_text  # loads LLVM: only for this output

    names = [function.name for function in program.functions]
    if function_name is not None and function_name not in names:
        raise click.BadParameter(
            f"no function {function_name!r} (have: {', '.join(names)})", param_hint="--function"
        )
    parts = []
    for index, name in enumerate(names):
        if function_name not in (None, name):
            continue
        try:
            parts.append(f"; function {name}\n{llvm_ir_text(program, index)}")
        except ValueError as exc:  # no plan: nothing native to show
            parts.append(f"; {exc}; the VM runs it\n")
    return "\n".join(parts)


def _write_atomically(target: Path, data: bytes) -> None:
    """Write through a temporary file and rename, so a failed write never leaves half a file."""
    temporary = target.with_name(target.name + ".tmp")
    try:
        temporary.write_bytes(data)
        temporary.replace(target)
    except OSError as exc:
        raise click.ClickException(f"cannot write {target}: {exc.strerror}") from exc


@main.command("check")
@click.argument("source", type=_SOURCE)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: on stderr, as a person reads them; json: on stdout, one JSON list of "
    "diagnostics (severity, message, hint, notes, file, line, col, end_line, end_col).",
)
def check_command(source: Path, fmt: str) -> None:
    """Report errors and warnings in SOURCE without writing anything (exit 1 on errors)."""
    if fmt == "text":
        _compile_or_exit(source)
        return
    diagnostics: list[Diagnostic]
    try:
        diagnostics = build_path(source).warnings
    except DiagnosticError as exc:
        diagnostics = exc.diagnostics
    click.echo(json.dumps([d.as_json() for d in diagnostics], indent=2))
    if any(d.severity is Severity.ERROR for d in diagnostics):
        sys.exit(1)


@main.command("fmt")
@click.argument(
    "paths", nargs=-1, required=True, type=click.Path(exists=True, allow_dash=True, path_type=Path)
)
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if any file would change.")
@click.option("--diff", "show_diff", is_flag=True, help="Write nothing; print the changes.")
def fmt_command(paths: tuple[Path, ...], check: bool, show_diff: bool) -> None:
    """Rewrite each file (each .avm file under a directory) in the canonical layout; `-`
    alone formats standard input onto standard output.

    Exit codes: 0 done (or nothing to change), 1 with --check when a file would change,
    2 when a file does not parse (it is left untouched).
    """
    if Path("-") in paths:
        if len(paths) > 1:
            raise click.UsageError("- (standard input) cannot be combined with files")
        _fmt_stdin(check, show_diff)
    status = 0
    for path in avm_files(list(paths)):
        try:
            result = format_file(path)
        except DiagnosticError as exc:
            colored = _colored()
            click.echo(exc.render(_read_text(path), color=colored), err=True, color=colored)
            status = 2
            continue
        if not result.changed:
            continue
        if show_diff:
            click.echo(result.diff(), nl=False)
        if check:
            click.echo(f"would reformat {path}", err=True)
            status = max(status, 1)
        elif not show_diff:
            _write_atomically(path, result.formatted.encode("utf-8"))
            click.echo(f"reformatted {path}", err=True)
    sys.exit(status)


def _fmt_stdin(check: bool, show_diff: bool) -> None:
    """`avmc fmt -`, for editors: the formatted text (or the diff) on standard output."""
    data = sys.stdin.buffer.read()
    try:
        result = format_data(data, "<stdin>")
    except DiagnosticError as exc:
        colored = _colored()
        click.echo(exc.render(display_text(data), color=colored), err=True, color=colored)
        sys.exit(2)
    if show_diff:
        click.echo(result.diff(), nl=False)
    elif not check:
        click.echo(result.formatted, nl=False)
    sys.exit(1 if check and result.changed else 0)


@main.command("disasm")
@click.argument("tape", type=_SOURCE)
def disasm_command(tape: Path) -> None:
    """List the bytecode of TAPE, with source lines when the source file is readable."""
    try:
        program = load(tape)
    except DiagnosticError as exc:
        click.echo(exc.render(), err=True)
        sys.exit(1)
    # The source name is as the compiler was given it: try it from here, then beside the tape.
    named = Path(program.source_name)
    candidates = [named, tape.parent / named, tape.parent / named.name]
    source = next((text for path in candidates if (text := _read_text(path)) is not None), None)
    click.echo(disassemble(program, source), nl=False)


@main.command("cfg")
@click.argument("source", type=_SOURCE)
@click.option(
    "--format", "fmt", type=click.Choice(["mermaid", "dot"]), default="mermaid", show_default=True
)
@click.option("--function", "function_name", help="Only this function (default: all).")
def cfg_command(source: Path, fmt: str, function_name: str | None) -> None:
    """Render the control-flow graphs of SOURCE's functions as one document: a subgraph per
    function, blocks with their source lines and the variables registers hold."""
    result = _compile_or_exit(source)
    functions = result.ir.functions
    if function_name is not None:
        functions = [f for f in functions if f.name == function_name]
        if not functions:
            names = ", ".join(f.name for f in result.ir.functions)
            raise click.BadParameter(
                f"no function {function_name!r} (have: {names})", param_hint="--function"
            )
    render = render_mermaid if fmt == "mermaid" else render_dot
    click.echo(render(functions, debug_info(result.source, result.module)), nl=False)
