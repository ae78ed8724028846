"""Values of literal lexemes: nat, string and reference literals, and comment termination.

The lexer calls these on each literal as it is read, so a bad literal is reported at the
literal and before any later syntax error; the AST builder calls them again for the value.
Errors carry offsets into the lexeme so the parser can point at the exact character.
"""

from __future__ import annotations

import re

from avm_vm.values import NAT_MAX, ObjectRef, TxRef

_DECIMAL = re.compile(r"[0-9]+(?:_[0-9]+)*")
_HEX = re.compile(r"0[xX][0-9A-Fa-f]+(?:_[0-9A-Fa-f]+)*")
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r", "0": "\0"}
_UNICODE_ESCAPE = re.compile(r"\\u\{([0-9A-Fa-f]{1,6})\}")
_SHOWN_CHARS = 40


class LiteralError(Exception):
    """A malformed lexeme; ``start``/``end`` are offsets into its text."""

    def __init__(self, message: str, start: int, end: int) -> None:
        super().__init__(message)
        self.message = message
        self.start = start
        self.end = end


def _shown(text: str) -> str:
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def nat_value(text: str) -> int:
    """``42``, ``1_000``, ``0x2A``: at most 2^64 - 1."""
    if _DECIMAL.fullmatch(text):
        digits, base = text.replace("_", ""), 10
    elif _HEX.fullmatch(text):
        digits, base = text[2:].replace("_", ""), 16
    else:
        raise LiteralError(f"invalid nat literal '{_shown(text)}'", 0, len(text))
    digits = digits.lstrip("0") or "0"
    # Checking the length first keeps int() away from huge digit strings.
    if len(digits) > 20 or int(digits, base) > NAT_MAX:
        raise LiteralError(
            f"nat literal {_shown(text)} does not fit in 64 bits (max {NAT_MAX})", 0, len(text)
        )
    return int(digits, base)


def ref_value(text: str) -> ObjectRef | TxRef:
    """``obj:7`` or ``tx:3``."""
    prefix, _, number = text.partition(":")
    digits = number.lstrip("0") or "0"
    if len(digits) > 20 or int(digits) > NAT_MAX:
        kind = "object" if prefix == "obj" else "transaction"
        raise LiteralError(
            f"{kind} id {_shown(number)} does not fit in 64 bits (max {NAT_MAX})", 0, len(text)
        )
    return ObjectRef(int(digits)) if prefix == "obj" else TxRef(int(digits))


def string_value(text: str) -> str:
    """The contents of a string lexeme, which starts with its opening quote.

    The lexer stops a string at its closing quote or at the end of the line, so a lexeme
    without a closing quote is an unterminated string.
    """
    out: list[str] = []
    i = 1
    while i < len(text):
        char = text[i]
        if char == '"':
            return "".join(out)
        if char != "\\":
            out.append(char)
            i += 1
            continue
        if i + 1 == len(text):
            break
        escape = text[i + 1]
        if escape in _ESCAPES:
            out.append(_ESCAPES[escape])
            i += 2
        elif escape == "u":
            char, i = _unicode_escape(text, i)
            out.append(char)
        else:
            raise LiteralError(f"invalid escape sequence '\\{escape}' in string", i, i + 2)
    raise LiteralError("unterminated string literal", 0, 1)


def _unicode_escape(text: str, start: int) -> tuple[str, int]:
    """Decode ``\\u{hex}`` at ``start``; returns the character and the offset after it."""
    match = _UNICODE_ESCAPE.match(text, start)
    if match is None:
        raise LiteralError(
            "invalid unicode escape: write \\u{...} with 1 to 6 hex digits", start, start + 2
        )
    code = int(match.group(1), 16)
    if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        raise LiteralError(
            f"\\u{{{match.group(1)}}} is not a unicode scalar value", start, match.end()
        )
    return chr(code), match.end()


def check_block_comment(text: str) -> None:
    """The lexer lets an unclosed ``/*`` run to the end of the file; that is an error."""
    if len(text) < 4 or not text.endswith("*/"):
        raise LiteralError("unterminated block comment", 0, 2)
