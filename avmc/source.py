"""Source files as text: ``read_source(data, filename)`` decodes a .avm file's bytes.

Sources are UTF-8 (a leading byte order mark is dropped). Line breaks are normalised to
``\\n``, as Python does for its own sources, so the parser's line numbers and the caret
lines of diagnostics count lines the same way. ``span_at`` finds the whole construct that
starts at a position, so a runtime error's caret line can underline all of it.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable

from avm_vm.diagnostics import DiagnosticError, Span, error
from avmc import ast
from avmc.parser import _children, parse

_EXPRESSIONS = typing.get_args(ast.Expr)
_Culprit = Callable[[ast.Expr], bool]
# What runtime error messages name: "nat overflow: 1 + 2", "'+' expects two nats, ...",
# "begin: expected a string, ...".
_OPERATOR = re.compile(r" ([-+*/%]) \S+$")
_NAMED = re.compile(r"'([^']+)' expects|(\w+): ")
_INDEXING = ("indexing", "slicing", "an index must", "slice bounds")

_BOM = "\ufeff"
# Control characters (but tab and newline) and line separators that the parser does not
# count as line breaks, each shown as one replacement character.
_HIDDEN = {
    code: "\ufffd"
    for code in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]
    if chr(code) not in "\t\n"
}


def read_source(data: bytes, filename: str) -> str:
    """The text of a source file; raises ``DiagnosticError`` for a file that is not text."""
    nul = data.find(b"\0")
    if nul >= 0:
        raise DiagnosticError(
            error("file contains a NUL byte: is it a binary file?", _span_at(data, nul, filename))
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        message = f"invalid UTF-8 byte 0x{data[exc.start]:02x}"
        raise DiagnosticError(error(message, _span_at(data, exc.start, filename))) from None
    return _normalise(text)


def display_text(data: bytes) -> str:
    """The file as ``read_source`` sees it, for showing caret lines on a terminal.

    Invalid bytes and control characters become U+FFFD; columns stay as the parser counts.
    """
    return _normalise(data.decode("utf-8", errors="replace")).translate(_HIDDEN)


def _normalise(text: str) -> str:
    return text.removeprefix(_BOM).replace("\r\n", "\n").replace("\r", "\n")


def _span_at(data: bytes, offset: int, filename: str) -> Span:
    """The line and column (in characters, as in the displayed text) of byte ``offset``."""
    before = display_text(data[:offset])
    line = before.count("\n") + 1
    col = len(before) - (before.rfind("\n") + 1) + 1
    return Span(filename, line, col, line, col + 1)


def span_at(
    source: str, filename: str, line: int, col: int, culprit: _Culprit | None = None
) -> Span | None:
    """The whole construct written at ``line``:``col`` of ``source``, for carets that span it.

    The `.tape` line table keeps where each instruction's expression starts, not where it
    ends; the source says. Several expressions may start there (``a + b`` starts where
    ``a`` does): the outermost of those ``culprit`` accepts is taken, else the outermost of
    all, else the statement starting there. None when the source no longer parses or
    nothing starts there.
    """
    try:
        module = parse(source, filename)
    except DiagnosticError:
        return None
    expressions: list[ast.Expr] = []
    others: list[Span] = []
    pending: list[object] = [module]
    while pending:
        node = pending.pop()
        span = getattr(node, "span", None)
        if isinstance(span, Span) and (span.line, span.col) == (line, col):
            if isinstance(node, _EXPRESSIONS):
                expressions.append(node)
            else:
                others.append(span)
        pending.extend(_children(node))
    chosen = [e for e in expressions if culprit(e)] if culprit else []
    if chosen or expressions:
        return max((e.span for e in chosen or expressions), key=_end)
    return min(others, key=_end, default=None)


def failure_span(
    source: str, filename: str, line: int, col: int, kind: str, message: str
) -> Span | None:
    """``span_at`` for a runtime error of ``kind`` (its qualified name) with ``message``:
    the construct that most likely raised it, told from what the message names."""
    return span_at(source, filename, line, col, _culprit(kind, message))


def _culprit(kind: str, message: str) -> _Culprit | None:
    if kind in ("FuelExhausted", "DepthExceeded", "MemoryExhausted"):
        return None  # any instruction may run out: the outermost construct
    if kind == "IndexOutOfRange" or message.startswith(_INDEXING):
        return lambda e: isinstance(e, ast.Index | ast.Slice)
    operator = _OPERATOR.search(message) if kind == "ArithmeticError" else None
    named = _NAMED.match(message) if kind == "TypeMismatch" else None
    name = operator.group(1) if operator else named and (named.group(1) or named.group(2))
    if name and not name.isidentifier():
        return lambda e: isinstance(e, ast.BinOp) and e.op == name
    if name:
        return lambda e: isinstance(e, ast.Call) and e.name == name
    if kind in ("ArithmeticError", "TypeMismatch"):
        return None
    # Anything else is an instruction's error or a failure passed on by `call!`.
    return lambda e: isinstance(e, ast.Call | ast.Create | ast.ContextExpr)


def _end(span: Span) -> tuple[int, int]:
    return (span.end_line or span.line, span.end_col or span.col)
