"""One diagnostic type from parsing to run time.

The compiler reports syntax and check errors with it, the loader reports malformed `.tape`
files with it (the "span" is then a byte offset), and the VM reports runtime errors with a
span recovered from the line table. Rendering follows the usual compiler shape::

    file.avm:3:9: error: expected an expression, found '}'
        let x = }
                ^
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Severity(Enum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"


@dataclass(frozen=True)
class Span:
    """A region of a source file; lines and columns count from 1, the end is exclusive."""

    file: str
    line: int
    col: int
    end_line: int | None = None
    end_col: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Diagnostic:
    severity: Severity
    message: str
    span: Span | None = None
    notes: tuple[str, ...] = field(default=())

    def render(self, source: str | None = None) -> str:
        """The message with its location and, when the source is known, a caret line."""
        where = f"{self.span}: " if self.span else ""
        lines = [f"{where}{self.severity.value}: {self.message}"]
        if source is not None and self.span is not None:
            lines.extend(_caret_lines(source, self.span))
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


def _caret_lines(source: str, span: Span) -> list[str]:
    source_lines = source.splitlines()
    if not 1 <= span.line <= len(source_lines):
        return []
    text = source_lines[span.line - 1].expandtabs(1)
    start = max(span.col - 1, 0)
    width = 1
    if span.end_line == span.line and span.end_col is not None and span.end_col > span.col:
        width = span.end_col - span.col
    width = max(1, min(width, len(text) - start))
    return [f"    {text}", "    " + " " * start + "^" * width]


class DiagnosticError(Exception):
    """Raised by any stage that stops on diagnostics; carries all of them (errors first)."""

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic) -> None:
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics = diagnostics
        super().__init__(diagnostics[0].message if diagnostics else "error")

    def render(self, source: str | None = None) -> str:
        return "\n".join(d.render(source) for d in self.diagnostics)


def error(message: str, span: Span | None = None, *notes: str) -> Diagnostic:
    return Diagnostic(Severity.ERROR, message, span, tuple(notes))


def warning(message: str, span: Span | None = None, *notes: str) -> Diagnostic:
    return Diagnostic(Severity.WARNING, message, span, tuple(notes))
