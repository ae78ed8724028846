"""Lark's syntax errors as diagnostics that say, in words, what was expected and where.

Terminal descriptions come from the grammar itself: a string terminal is shown quoted, and
only the few pattern terminals (names, literals) need words. The sets that make a message
read "an expression" or "a statement" are found by probing the parser with short inputs, so
they follow the grammar when it changes. A parser state reached right after a keyword or a
name does not depend on the lookahead, and some of those get a phrase with context ("'{'
after the behavior name"), found the way Lark's ``match_examples`` does: by parsing
examples and recording the state they fail in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from lark import Lark, Token
from lark.exceptions import UnexpectedCharacters, UnexpectedToken
from lark.lexer import PatternStr

from avm_vm.diagnostics import Diagnostic, Span, error

_PATTERN_TERMINALS = {
    "NAME": "a name",
    "NAT": "a number",
    "STRING": "a string",
    "OBJREF": "an object reference",
    "TXREF": "a transaction reference",
    "$END": "end of file",
}

# Never worth suggesting unless nothing else fits: `;` is an optional separator.
_QUIET = frozenset({"SEMICOLON", "$END"})

_NO_UNARY_MINUS = (
    "there is no unary minus (numbers are nats, never negative): write a subtraction such as "
    "`0 - x`, which fails when x > 0"
)

# Phrase -> inputs that fail, at their end, in the state the phrase describes.
CONTEXTS: dict[str, tuple[str, ...]] = {
    "a behavior name after 'behavior'": ("behavior", "extern behavior"),
    "'{' after the behavior name": ("behavior B",),
    "'behavior' after 'extern'": ("extern",),
    "a function name after 'fn'": ("fn",),
    "'(' after the function name": ("fn f",),
    "'{' to start the function body": ("fn f()", "fn f(a)"),
    "'{' after 'main'": ("main",),
    "a field name after 'field'": ("behavior B { field",),
    "'=' after the field name": ("behavior B { field f",),
    "a pattern after 'on'": ("behavior B { on",),
    "a variable name after 'let'": ("main { let",),
    "'=' after the variable name": ("main { let x",),
    "a loop variable after 'for'": ("main { for",),
    "'in' after the loop variable": ("main { for x",),
    "a behavior name after 'create'": ("main { create",),
    "'{' or 'if' after 'else'": ("main { if c { } else",),
    "'under' or '{' after 'atomic'": ("main { atomic",),
    "'{' after '=>'": ("main { match x { _ =>",),
    "a name or '_' after '..'": ("main { match x { [..",),
    "an instruction call after 'unsafe'": ("main { unsafe",),
    "'(' after the instruction name": ("main { unsafe reflect",),
    "'(' after '!'": ("main { f!",),
}


@dataclass(frozen=True)
class _Vocabulary:
    """What the grammar's terminals are called, and the sets that read as one word."""

    text: dict[str, str]
    statement: frozenset[str]
    expression: frozenset[str]
    expression_core: frozenset[str]
    pattern: frozenset[str]
    operators: frozenset[str]
    comparisons: frozenset[str]
    assignments: frozenset[str]
    contexts: dict[int, str]


def _failure_at_end(parser: Lark, source: str) -> UnexpectedToken:
    try:
        parser.parse(source)
    except UnexpectedToken as exc:
        if exc.token.type == "$END":
            return exc
    raise AssertionError(f"probe {source!r} does not fail at its end")


@cache
def _vocabulary(parser: Lark) -> _Vocabulary:
    text = dict(_PATTERN_TERMINALS)
    for terminal in parser.terminals:
        if isinstance(terminal.pattern, PatternStr):
            text[terminal.name] = f"'{terminal.pattern.value}'"

    def accepts(source: str) -> frozenset[str]:
        return frozenset(_failure_at_end(parser, source).accepts)

    binops = [rule for rule in parser.rules if rule.alias == "expr_binop"]
    contexts: dict[int, str] = {}
    for phrase, examples in CONTEXTS.items():
        for example in examples:
            state = _failure_at_end(parser, example).state.position
            if contexts.setdefault(state, phrase) != phrase:
                raise AssertionError(f"{example!r} fails in the state of {contexts[state]!r}")
    return _Vocabulary(
        text=text,
        statement=accepts("main {") - {"RBRACE", "SEMICOLON"},
        expression=accepts("main { let x ="),
        expression_core=accepts("main { x *"),
        pattern=accepts("behavior B { on"),
        operators=frozenset(rule.expansion[1].name for rule in binops),
        comparisons=frozenset(
            rule.expansion[1].name for rule in binops if rule.origin.name == "comparison"
        ),
        assignments=frozenset(
            rule.expansion[0].name for rule in parser.rules if rule.origin.name == "_assign_op"
        ),
        contexts=contexts,
    )


def context_states(parser: Lark) -> dict[int, str]:
    """Parser state -> contextual phrase (exposed for the tests)."""
    return _vocabulary(parser).contexts


def syntax_error(
    exc: UnexpectedToken | UnexpectedCharacters, parser: Lark, filename: str
) -> Diagnostic:
    if isinstance(exc, UnexpectedCharacters):
        span = Span(filename, exc.line, exc.column, exc.line, exc.column + 1)
        return error(f"unexpected character {_show_char(exc.char)}", span)
    words = _vocabulary(parser)
    accepts = set(exc.accepts or exc.expected)
    expected = words.contexts.get(exc.state.position) or _describe(accepts, words)
    token: Token = exc.token
    if token.type == "$END":
        # Lark places the end token on the last real token; point just after it.
        line, col = token.end_line or 1, token.end_column or 1
        return error(f"unexpected end of file: expected {expected}", Span(filename, line, col))
    span = Span(filename, token.line, token.column, token.end_line, token.end_column)
    if _chains_comparison(exc, words):
        return error("comparisons do not chain: combine them with 'and'", span)
    if token.type in words.assignments and words.statement <= accepts:
        return error(f"the left side of '{token}' must be a variable or a field", span)
    hint = None
    if token.type == "MINUS" and words.expression_core <= accepts:
        hint = _NO_UNARY_MINUS
    return error(f"expected {expected}, found {_show_token(token, accepts)}", span, hint=hint)


def _chains_comparison(exc: UnexpectedToken, words: _Vocabulary) -> bool:
    """``a == b == c``: a comparison operator meets a complete comparison on the stack."""
    if exc.token.type not in words.comparisons:
        return False
    values = exc.state.value_stack
    return len(values) >= 2 and getattr(values[-2], "type", None) in words.comparisons


def _describe(accepts: set[str], words: _Vocabulary) -> str:
    names = accepts - _QUIET
    parts: list[str] = []
    if words.statement <= names:
        parts.append("a statement")
        names -= words.statement
    elif words.expression_core <= names:
        parts.append("an expression")
        names -= words.expression
    if words.pattern <= names:
        parts.append("a pattern")
        names -= words.pattern
    if names & words.operators:
        # An operator could always continue the expression; say so only if nothing else fits.
        names -= words.operators
        if not names and not parts:
            parts.append("an operator")
    parts.extend(sorted(words.text.get(name, name) for name in names))
    if not parts:
        parts = sorted(words.text[name] for name in accepts & _QUIET)
    return _join(parts)


def _join(parts: Iterable[str]) -> str:
    items = list(parts)
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " or " + items[-1]


def _shorten(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show_token(token: Token, accepts: set[str]) -> str:
    text = str(token)
    if token.type == "STRING":
        return _shorten(text)
    if token.type != "NAME" and text.isidentifier() and "NAME" in accepts:
        return f"keyword '{text}'"
    return f"'{_shorten(text)}'"


def _show_char(char: str) -> str:
    if char.isprintable() and not char.isspace():
        return f"'{char}'"
    return f"U+{ord(char):04X}"
