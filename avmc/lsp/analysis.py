"""One editor buffer through the compiler: its diagnostics, its AST and its names.

``analyse`` runs the whole compiler (avmc/compiler.py), so the editor shows exactly the
errors and warnings `avmc` prints. When the program has errors the compiler gives no AST;
the parser alone is then asked for one, so hover and definition keep working on a program
that parses but does not check. Ranges here count code points from 0, as Python strings
do; the server converts them to the client's units.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from lsprotocol import types

from avm_vm.diagnostics import Diagnostic, DiagnosticError, Severity, Span, error
from avmc import ast
from avmc.compiler import build
from avmc.parser import parse
from avmc.source import read_source

from .symbols import Index, index

log = logging.getLogger(__name__)

_SEVERITY = {
    Severity.ERROR: types.DiagnosticSeverity.Error,
    Severity.WARNING: types.DiagnosticSeverity.Warning,
    Severity.NOTE: types.DiagnosticSeverity.Information,
}
_WORD = re.compile(r"[A-Za-z0-9_]+")


@dataclass(frozen=True)
class Analysis:
    lines: list[str]  # the source as the compiler read it, split at line breaks
    diagnostics: list[types.Diagnostic]
    index: Index | None  # None when the source does not parse


def analyse(text: str, filename: str) -> Analysis:
    """Compile ``text``; never raises (a compiler failure becomes a diagnostic)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    try:
        found, symbols = _compile(text, filename)
    except Exception as exc:  # a compiler bug must not take the editor's server down
        log.exception("compiling %s failed", filename)
        found = [error(f"internal compiler error: {exc!r} (please report this program)")]
        symbols = None
    return Analysis(lines, [to_lsp(d, lines) for d in found], symbols)


def _compile(text: str, filename: str) -> tuple[list[Diagnostic], Index | None]:
    try:
        source = read_source(text.encode("utf-8", errors="surrogatepass"), filename)
    except DiagnosticError as exc:  # not text: a NUL byte or a lone surrogate
        return exc.diagnostics, None
    try:
        compilation = build(source, filename)
    except DiagnosticError as exc:
        module = _parsed(source, filename)
        return exc.diagnostics, index(module, source) if module is not None else None
    return compilation.warnings, index(compilation.module, source)


def _parsed(source: str, filename: str) -> ast.Module | None:
    try:
        return parse(source, filename)
    except DiagnosticError:
        return None


def to_lsp(diagnostic: Diagnostic, lines: list[str]) -> types.Diagnostic:
    """The diagnostic with a range, and its notes and hint as lines of the message."""
    lines_of_message = [diagnostic.message, *(f"note: {n}" for n in diagnostic.notes)]
    if diagnostic.hint:
        lines_of_message.append(f"hint: {diagnostic.hint}")
    message = "\n".join(lines_of_message)
    return types.Diagnostic(
        range=span_range(diagnostic.span, lines),
        message=message,
        severity=_SEVERITY[diagnostic.severity],
        source="avmc",
    )


def span_range(span: Span | None, lines: list[str]) -> types.Range:
    """A span as a range; a span with no extent covers the word (or character) it starts at."""
    if span is None:  # about the whole program: shown on its first line
        return _range(0, 0, 0, len(lines[0]) if lines else 0)
    line, col = span.line - 1, span.col - 1
    end = (span.end_line or 0, span.end_col or 0)
    if end > (span.line, span.col):
        return _range(line, col, end[0] - 1, end[1] - 1)
    text = lines[line] if 0 <= line < len(lines) else ""
    word = _WORD.match(text, col) if col < len(text) else None
    if word is not None:
        return _range(line, col, line, word.end())
    if col < len(text):
        return _range(line, col, line, col + 1)
    if text:  # at the end of a line (e.g. end of file): the line's last character
        return _range(line, len(text) - 1, line, len(text))
    return _range(line, col, line, col)


def _range(line: int, col: int, end_line: int, end_col: int) -> types.Range:
    return types.Range(types.Position(line, col), types.Position(end_line, end_col))
