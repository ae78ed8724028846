"""Source files as text: ``read_source(data, filename)`` decodes a .avm file's bytes.

Sources are UTF-8 (a leading byte order mark is dropped). Line breaks are normalised to
``\\n``, as Python does for its own sources, so the parser's line numbers and the caret
lines of diagnostics count lines the same way.
"""

from __future__ import annotations

from avm_vm.diagnostics import DiagnosticError, Span, error

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
