"""Parse AVM source text into the AST: ``parse(source, filename) -> ast.Module``.

The grammar is grammar/avm.lark, loaded once. Parsing and building the AST are separate
steps (positions reach the builder through Lark's meta). Every failure is a
``DiagnosticError``: a syntax error, a malformed literal, or a program nested deeper than
the later (recursive) passes can follow.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path

from lark import Lark, Token
from lark.exceptions import UnexpectedCharacters, UnexpectedToken, VisitError

from avm_vm.diagnostics import DiagnosticError, Span, error

from . import ast
from .ast_builder import AstBuilder
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


@cache
def lark_parser() -> Lark:
    """The LALR parser for grammar/avm.lark (built once per process)."""
    return Lark(
        _grammar_text(),
        parser="lalr",
        lexer="basic",
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


def parse(source: str, filename: str) -> ast.Module:
    """The AST of ``source``; raises ``DiagnosticError`` on the first error."""
    try:
        module = _build(source, filename)
    except RecursionError:
        raise DiagnosticError(error("program nests too deeply", Span(filename, 1, 1))) from None
    too_deep = _first_too_deep(module)
    if too_deep is not None:
        message = f"program nests too deeply (more than {MAX_NESTING} levels)"
        raise DiagnosticError(error(message, too_deep))
    return module


def _build(source: str, filename: str) -> ast.Module:
    parser = lark_parser()
    try:
        tree = parser.parse(source)
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
    try:
        return AstBuilder(filename).transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, DiagnosticError):
            raise exc.orig_exc from None
        raise


def _children(node: object) -> Iterator[object]:
    for field in dataclasses.fields(node):  # type: ignore[arg-type]
        value = getattr(node, field.name)
        if isinstance(value, list):
            yield from value
        elif dataclasses.is_dataclass(value) and not isinstance(value, Span):
            yield value


def _first_too_deep(module: ast.Module) -> Span | None:
    """The span of the first node, in source order, nested more than MAX_NESTING deep."""
    stack: list[tuple[object, int]] = [(module, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_NESTING:
            return node.span  # type: ignore[attr-defined]
        stack.extend((child, depth + 1) for child in reversed(list(_children(node))))
    return None
