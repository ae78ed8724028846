"""Parse AVM source text into the AST: ``parse(source, filename) -> ast.Module``.

The grammar is grammar/avm.lark, loaded once into Lark. The AST is built as Lark's LALR
table is stepped through (avmc/ast_builder.py, with reductions generated from the grammar
by avmc/lalr_driver.py), with no parse tree in between; Lark's own tree-building parse
serves the formatter and explains syntax errors. Every failure is a
``DiagnosticError``: a syntax error, a malformed literal, or a program nested deeper than
the later (recursive) passes can follow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import os
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path

from lark import Lark, Token
from lark.exceptions import UnexpectedCharacters, UnexpectedToken

from avm_vm.diagnostics import DiagnosticError, Span, error

from . import ast
from .ast_builder import AstBuilder, NoParse
from .lalr_driver import cache_directory, remove_stale
from .literals import LiteralError, check_block_comment, nat_value, ref_value, string_value
from .syntax_errors import syntax_error

# Deeper programs are refused: the checker and the lowering recurse once or twice per level.
MAX_NESTING = 200


class _BadLexeme(Exception):
    def __init__(self, token: Token, problem: LiteralError) -> None:
        super().__init__(problem.message)
        self.token = token
        self.problem = problem


def _checked(check: Callable[[str], object]) -> Callable[[Token], Token]:
    """A lexer callback that validates a lexeme as it is read."""

    def callback(token: Token) -> Token:
        try:
            check(str(token))
        except LiteralError as problem:
            raise _BadLexeme(token, problem) from None
        return token

    return callback


def _grammar_text() -> str:
    checkout = Path(__file__).resolve().parents[1] / "grammar" / "avm.lark"
    if checkout.is_file():
        return checkout.read_text(encoding="utf-8")
    return (importlib.resources.files("avmc.grammar") / "avm.lark").read_text(encoding="utf-8")


# Lark's cache files, one per grammar (see `_cache_file`).
_GRAMMAR_FILE = re.compile(r"avmc-grammar-[0-9a-f]{16}\.lark")


def _cache_file(grammar: str) -> str | bool:
    """Where Lark keeps its analysis of the grammar between processes (loading it takes a
    tenth of the time of building it), named after the grammar; False (no cache) when there
    is no such place. Lark checks a cached file against the grammar and options, and
    rebuilds on any mismatch or unreadable file."""
    digest = hashlib.sha256(grammar.encode("utf-8")).hexdigest()[:16]
    directory = cache_directory()
    return False if directory is None else str(directory / f"avmc-grammar-{digest}.lark")


@cache
def lark_parser() -> Lark:
    """The LALR parser for grammar/avm.lark (built once per process). Its `parse` builds
    trees with positions (for the formatter); `parse` here only borrows its lexer and
    table."""
    grammar = _grammar_text()
    cache_file = _cache_file(grammar)
    # Written by this process if not there yet (Lark writes it after building the table).
    fresh = cache_file if isinstance(cache_file, str) and not os.path.exists(cache_file) else None
    parser = Lark(
        grammar,
        parser="lalr",
        lexer="basic",
        cache=cache_file,
        propagate_positions=True,
        maybe_placeholders=True,
        lexer_callbacks={
            "NAT": _checked(nat_value),
            "STRING": _checked(string_value),
            "OBJREF": _checked(ref_value),
            "TXREF": _checked(ref_value),
            "BLOCK_COMMENT": _checked(check_block_comment),
        },
    )
    if fresh is not None and os.path.exists(fresh):
        # Lark has just written it: the files of earlier grammars are of no further use.
        remove_stale(Path(fresh), _GRAMMAR_FILE)
    return parser


def parse(source: str, filename: str) -> ast.Module:
    """The AST of ``source``; raises ``DiagnosticError`` on the first error."""
    try:
        module, height = _build(source, filename)
    except RecursionError:
        raise DiagnosticError(error("program nests too deeply", Span(filename, 1, 1))) from None
    # The AST is at most twice as deep as the parse is high (an `else if` adds a block):
    # only a program that may be too deep is walked.
    too_deep = _first_too_deep(module) if 2 * height > MAX_NESTING + 1 else None
    if too_deep is not None:
        message = f"program nests too deeply (more than {MAX_NESTING} levels)"
        raise DiagnosticError(error(message, too_deep))
    return module


def _build(source: str, filename: str) -> tuple[ast.Module, int]:
    """The AST and the height of the parse."""
    parser = lark_parser()
    try:
        try:
            builder = AstBuilder(filename, parser)
            return builder.transform(source), builder.height
        except NoParse:
            # Lark's own parser fails on the same token, with the state and the tokens it
            # expected there, which the message is made of.
            parser.parse(source)
            raise AssertionError("Lark parses a text the AST builder could not") from None
    except _BadLexeme as exc:
        token, problem = exc.token, exc.problem
        span = Span(
            filename,
            token.line,
            token.column + problem.start,
            token.line,
            token.column + problem.end,
        )
        raise DiagnosticError(error(problem.message, span)) from None
    except (UnexpectedToken, UnexpectedCharacters) as exc:
        raise DiagnosticError(syntax_error(exc, parser, filename)) from None


@cache
def _field_names(kind: type) -> tuple[str, ...]:
    return tuple(field.name for field in dataclasses.fields(kind))


def _children(node: object) -> list[object]:
    children: list[object] = []
    for name in _field_names(type(node)):
        value = getattr(node, name)
        if type(value) is list:
            children.extend(value)
        elif hasattr(value, "__dataclass_fields__") and type(value) is not Span:
            children.append(value)
    return children


def _first_too_deep(module: ast.Module) -> Span | None:
    """The span of the first node, in source order, nested more than MAX_NESTING deep."""
    stack: list[tuple[object, int]] = [(module, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_NESTING:
            return node.span  # type: ignore[attr-defined]
        depth += 1
        stack.extend((child, depth) for child in reversed(_children(node)))
    return None
