"""One regular expression that reads Lark's tokens faster than Lark's own alternation.

Lark's basic lexer tries every terminal's pattern in turn at each position, in its priority
order: a `}` is found only after some fifty failed alternatives. The scanner here tries the
same patterns in the same order, but only those that can begin with the character at hand
(each terminal's possible first characters are read off its parsed pattern, and a pattern
that cannot be read is kept for every character), so it finds the token Lark would. It also
reads the run of blanks before a token in the same match: only the WHITESPACE terminal
begins with a blank, and it takes the whole run.

Two forms of it: one with a group per terminal, whose last group names the token's
terminal, and one with just the blanks and the token, for a scan of a whole text at once
(`re.findall`, with no per-match work). In the second, a character where no terminal
matches is a token of its own, so the scan skips nothing and the reader sees it where Lark
would stop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]

from lark.lexer import BasicLexer

_ASCII = 128  # characters past these go to a last branch holding every pattern
_COMMON = 'abcdefghijklmnopqrstuvwxyz_ABCDEFGHIJKLMNOPQRSTUVWXYZ(){},0123456789="[]+-:'


@dataclass(frozen=True)
class Scanner:
    # Group 1 is the blanks before the token; group k > 1 the terminal ``kinds[k]``.
    token: re.Pattern[str]
    kinds: tuple[str | None, ...]
    blanks: re.Pattern[str]  # a run of blanks, or nothing
    # The same with two groups: the blanks, and the token, or the one character where no
    # terminal matches (so a scan for every match skips nothing).
    pairs: re.Pattern[str]


def build_scanner(lexer: BasicLexer) -> Scanner:
    terminals = lexer.scanner.terminals  # in Lark's order
    (alternation,) = lexer.scanner._mres
    flags = alternation.flags
    patterns = [terminal.pattern.to_regexp() for terminal in terminals]
    if alternation.pattern != "|".join(
        f"(?P<{t.name}>{p})" for t, p in zip(terminals, patterns, strict=True)
    ):
        raise ValueError("Lark's lexer is not the alternation of its terminals")
    firsts = [_first_chars(p, flags) for p in patterns]
    by_signature: dict[tuple[int, ...], list[str]] = {}
    for code in range(_ASCII):
        signature = tuple(i for i, first in enumerate(firsts) if first is None or code in first)
        if signature:
            by_signature.setdefault(signature, []).append(chr(code))
    kinds: list[str | None] = [None, None]
    branches: list[str] = []
    plain_branches: list[str] = []  # without a group per terminal

    def alternatives(indices: tuple[int, ...] | range) -> str:
        parts = []
        for i in indices:
            kinds.append(terminals[i].name)
            # Padding keeps `kinds` in step when a pattern has groups of its own.
            kinds.extend([None] * re.compile(patterns[i]).groups)
            parts.append(f"({patterns[i]})")
        return "|".join(parts)

    def plain_alternatives(indices: tuple[int, ...] | range) -> str:
        return "|".join(f"(?:{patterns[i]})" for i in indices)

    # Classes in the order of how common their characters are in programs (only speed
    # depends on it: no character is in two classes).
    def rank(item: tuple[tuple[int, ...], list[str]]) -> int:
        return min(_COMMON.find(char) % len(_COMMON) for char in item[1])

    for signature, chars in sorted(by_signature.items(), key=rank):
        members = "".join(re.escape(char) for char in chars)
        branches.append(f"(?=[{members}])(?:{alternatives(signature)})")
        plain_branches.append(f"(?=[{members}])(?:{plain_alternatives(signature)})")
    if any(first is None or max(first, default=0) >= _ASCII for first in firsts):
        everything = range(len(terminals))
        branches.append(f"(?=[^\\x00-\\x7f])(?:{alternatives(everything)})")
        plain_branches.append(f"(?=[^\\x00-\\x7f])(?:{plain_alternatives(everything)})")
    blank = next(t for t in terminals if t.name == "WHITESPACE").pattern.to_regexp()
    # The blanks before a token, possibly none, taken whole (possessive: never given back).
    # A repeated class, `[...]+`, is written `[...]*+`, which the engine runs quicker.
    if blank.endswith("+") and re.fullmatch(r"\[[^\[\]]*\]", blank[:-1]):
        blanks = f"({blank[:-1]}*+)"
    else:
        blanks = f"((?:{blank})?+)"
    token = re.compile(f"{blanks}(?:{'|'.join(branches)})", flags)
    pairs = re.compile(f"{blanks}({'|'.join(plain_branches)}|[\\s\\S])", flags)
    if pairs.groups != 2:
        raise ValueError("a terminal's pattern has groups of its own")
    return Scanner(token, tuple(kinds), re.compile(f"(?:{blank})?", flags), pairs)


def _first_chars(pattern: str, flags: int) -> frozenset[int] | None:
    """The characters a match of ``pattern`` can begin with; None when that is not known
    (or the pattern may match nothing)."""
    if flags & re.IGNORECASE:
        return None
    first = _first_of(list(sre_parse.parse(pattern, flags)))
    return None if first is None else frozenset(first)


def _first_of(items: list) -> set[int] | None:
    """The first characters of a parsed sequence, None if unknown or possibly empty."""
    found: set[int] = set()
    for op, arg in items:
        if op is sre.LITERAL:
            return found | {arg}
        if op is sre.IN:
            chars = _charset(arg)
            return None if chars is None else found | chars
        if op is sre.SUBPATTERN:
            if arg[1] & re.IGNORECASE:
                return None
            inner = _first_of(list(arg[3]))
            return None if inner is None else found | inner
        if op is sre.BRANCH:
            for branch in arg[1]:
                inner = _first_of(list(branch))
                if inner is None:
                    return None
                found |= inner
            return found
        if op is sre.MAX_REPEAT or op is sre.MIN_REPEAT:
            low, _, body = arg
            inner = _first_of(list(body))
            if inner is None:
                return None
            found |= inner
            if low > 0:
                return found
            continue  # the repeat may match nothing: the next item may come first
        return None
    return None


def _charset(items: list) -> set[int] | None:
    chars: set[int] = set()
    for op, arg in items:
        if op is sre.LITERAL:
            chars.add(arg)
        elif op is sre.RANGE:
            chars.update(range(arg[0], arg[1] + 1))
        else:  # a negation or a category (\d, \w, ...): not worked out
            return None
    return chars
