"""One diagnostic type from parsing to run time.

The compiler reports syntax and check errors with it, the loader reports malformed `.tape`
files with it (the "span" is then a byte offset), and the VM reports runtime errors with a
span recovered from the line table. Rendering follows the usual compiler shape::

    file.avm:3:10: error: undefined name 'cont'
          return cont + 1
                 ^^^^
      hint: did you mean 'count'?

A diagnostic may carry a hint: what the user most likely meant. On a terminal the severity
and the caret line are coloured (``use_color`` decides); ``as_json`` is the form for tools.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TextIO

COLOR_MODES = ("auto", "always", "never")
# ANSI styles: the severity word and caret line in its colour, the location in bold.
_STYLE = {"error": "1;31", "warning": "1;33", "note": "1;36", "hint": "1;32", "where": "1"}


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
    hint: str | None = None  # what the user most likely meant, when it can be guessed

    def render(self, source: str | None = None, *, color: bool = False) -> str:
        """The message with its location and, when the source is known, a caret line."""
        paint = _paint if color else _plain
        severity = self.severity.value
        where = paint("where", f"{self.span}:") + " " if self.span else ""
        lines = [f"{where}{paint(severity, severity + ':')} {self.message}"]
        if source is not None and self.span is not None:
            caret = _caret_lines(source, self.span)
            if caret:
                lines += [caret[0], paint(severity, caret[1])]
        lines.extend(f"  {paint('note', 'note:')} {note}" for note in self.notes)
        if self.hint:
            lines.append(f"  {paint('hint', 'hint:')} {self.hint}")
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        """The diagnostic as plain data (`avmc check --format json`); positions may be null."""
        span = self.span
        return {
            "severity": self.severity.value,
            "message": self.message,
            "hint": self.hint,
            "notes": list(self.notes),
            "file": span.file if span else None,
            "line": span.line if span else None,
            "col": span.col if span else None,
            "end_line": span.end_line if span else None,
            "end_col": span.end_col if span else None,
        }


def use_color(stream: TextIO, mode: str = "auto") -> bool:
    """Whether to colour diagnostics written to ``stream``: ``always``, ``never``, or (auto)
    only on a terminal, unless ``NO_COLOR`` is set (https://no-color.org) or TERM is dumb."""
    if mode != "auto":
        return mode == "always"
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _paint(style: str, text: str) -> str:
    return f"\x1b[{_STYLE[style]}m{text}\x1b[0m"


def _plain(style: str, text: str) -> str:
    return text


def _caret_lines(source: str, span: Span) -> list[str]:
    """The span's first line and carets under it: to the span's end, or to the end of the
    line when the span runs on to later lines."""
    source_lines = source.splitlines()
    if not 1 <= span.line <= len(source_lines):
        return []
    text = source_lines[span.line - 1].expandtabs(1)
    start = max(span.col - 1, 0)
    width = 1
    if span.end_line == span.line and span.end_col is not None and span.end_col > span.col:
        width = span.end_col - span.col
    elif span.end_line is not None and span.end_line > span.line:
        width = len(text.rstrip()) - start
    width = max(1, min(width, len(text) - start))
    return [f"    {text}", "    " + " " * start + "^" * width]


class DiagnosticError(Exception):
    """Raised by any stage that stops on diagnostics; carries all of them (errors first)."""

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic) -> None:
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics = diagnostics
        super().__init__(diagnostics[0].message if diagnostics else "error")

    def render(self, source: str | None = None, *, color: bool = False) -> str:
        return "\n".join(d.render(source, color=color) for d in self.diagnostics)


def error(
    message: str, span: Span | None = None, *notes: str, hint: str | None = None
) -> Diagnostic:
    return Diagnostic(Severity.ERROR, message, span, tuple(notes), hint)


def warning(
    message: str, span: Span | None = None, *notes: str, hint: str | None = None
) -> Diagnostic:
    return Diagnostic(Severity.WARNING, message, span, tuple(notes), hint)
