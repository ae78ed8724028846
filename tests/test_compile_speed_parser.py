"""The shortcuts the fast compiler front end takes give exactly the slow path's results.

- The AST builder's lexer (one regular expression that tries only the terminals able to
  start with the character at hand, blanks read with the token after them) reads Lark's
  tokens, and fails where Lark's lexer fails.
- `parse` walks the AST for the nesting limit only when the parse is high enough that the
  tree may be too deep: on programs around the limit, of every shape that nests, it reports
  what the walk reports.
- The constant pool's shortcut for nats, bools and strings keeps them apart by kind.
- The spans the builder makes without `Span`'s own constructor are ordinary spans.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lark.exceptions import LarkError

from avm_vm.diagnostics import DiagnosticError, Span
from avmc.assemble import ConstantPool
from avmc.ast_builder import AstBuilder, NoParse, _span_maker, _tokens
from avmc.parser import MAX_NESTING, _BadLexeme, _first_too_deep, lark_parser, parse

FIELDS = ("type", "value", "start_pos", "line", "column", "end_line", "end_column")


def lark_tokens(text: str) -> object:
    """Lark's own tokens of ``text`` (its lexer callbacks included); None if it cannot
    read them, or the malformed literal and where it is."""
    try:
        return [tuple(getattr(t, f) for f in FIELDS) for t in lark_parser().lex(text)]
    except LarkError:
        return None
    except _BadLexeme as bad:
        return bad.problem.message, bad.token.line, bad.token.column


def builder_tokens(text: str) -> object:
    try:
        return [
            tuple(getattr(t, f) for f in FIELDS) for t in _tokens(lark_parser().parser.lexer, text)
        ]
    except NoParse:
        return None
    except _BadLexeme as bad:
        return bad.problem.message, bad.token.line, bad.token.column


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n\t ",
        "x  \n",
        "obj:12 objx obj: obj tx:3 tx txy:4",
        "behaviors behavior on only onion not notx",
        "a/b a /= b // note\n c /* block\n comment */ d",
        "a ++= b ++ c + d += e",
        '"é \\u{1F600}" x "open\n y',
        "/* never closed",
        "x = 1 @ y",
        "x é y",
        "0x2A 1_000 12ab",
        "a\r\nb\r\n",
        "..rest => == = != ! <= < >= >",
    ],
)
def test_the_lexer_reads_larks_tokens(text: str) -> None:
    assert builder_tokens(text) == lark_tokens(text)


PIECES = st.sampled_from(
    [
        "a", "obj", "obj:", "tx:", "1", "0x", "_", "on", "not", "fn", '"', '"s"', "\\",
        "/", "*", "/*", "*/", "//", "+", "++", "=", "!", ".", "..", ":", "(", ")", "[",
        "{", "}", ",", ";", "<", ">", " ", "\t", "\n", "\r", "é", "$", "@", "\0",
    ]
)  # fmt: skip


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(PIECES, max_size=30))
def test_the_lexer_reads_larks_tokens_on_any_text(pieces: list[str]) -> None:
    text = "".join(pieces)
    assert builder_tokens(text) == lark_tokens(text)


def walked(source: str) -> object:
    """What the nesting limit says of ``source`` when the AST is always walked: the span of
    the first node too deep, or None."""
    builder = AstBuilder("t.avm", lark_parser())
    return _first_too_deep(builder.transform(source))


def parsed(source: str) -> object:
    try:
        parse(source, "t.avm")
    except DiagnosticError as exc:
        (diagnostic,) = exc.diagnostics
        assert "nests too deeply" in diagnostic.message
        return diagnostic.span
    return None


def nest(depth: int, shape: str) -> str:
    if shape == "else-if":
        chain = "if x { 1 } " + "else if x { 1 } " * depth
        return f"main {{ let x = true\n {chain} }}"
    if shape == "sum":
        return "main { return 1" + " + 1" * depth + " }"
    if shape == "list":
        return "main { return " + "[" * depth + "]" * depth + " }"
    if shape == "blocks":
        return "main { " + "while true { " * depth + "}" * depth + " }"
    if shape == "not":
        return "main { return " + "not " * depth + "true }"
    raise ValueError(shape)


@pytest.mark.parametrize("shape", ["else-if", "sum", "list", "blocks", "not"])
def test_the_nesting_limit_is_the_walks_around_the_limit(shape: str) -> None:
    seen = set()
    for depth in range(MAX_NESTING // 2 - 4, MAX_NESTING + 6):
        source = nest(depth, shape)
        verdict = walked(source)
        assert parsed(source) == verdict, depth
        seen.add(verdict is None)
    assert seen == {True, False}  # both sides of the limit were met


def test_the_constant_pool_keeps_kinds_apart() -> None:
    pool = ConstantPool()
    values = [1, True, "1", 0, False, "", (1,), (True,), 1, True, "1", (1,)]
    indices = [pool.index(value) for value in values]
    assert indices == [0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 6]
    assert [type(v) for v in pool.values] == [int, bool, str, int, bool, str, tuple, tuple]


def test_the_builders_spans_are_spans() -> None:
    """Spans made without `Span.__init__` behave as made with it: same type, equality,
    hash, text, frozen fields, and `dataclasses.replace`."""
    made = _span_maker("t.avm")(2, 3, 2, 9)
    expected = Span("t.avm", 2, 3, 2, 9)
    assert type(made) is Span
    assert made == expected and hash(made) == hash(expected)
    assert repr(made) == repr(expected) and str(made) == "t.avm:2:3"
    assert dataclasses.replace(made, line=4) == Span("t.avm", 4, 3, 2, 9)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.line = 5  # type: ignore[misc]
