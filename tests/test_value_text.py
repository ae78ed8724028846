"""Reading values in canonical text (avm_vm/value_text.py): the inverse of `values.render`."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from value_strategies import values

from avm_vm.value_text import ValueTextError, parse_value
from avm_vm.values import (
    NAT_MAX,
    NOTHING,
    Just,
    ObjectRef,
    Pair,
    TxRef,
    Value,
    render,
    values_equal,
)

# `render` does not escape strings, so only strings without `"` or `\` read back as rendered.
PLAIN_TEXT = st.text(alphabet=st.characters(blacklist_characters='"\\'))
VALUES = values(PLAIN_TEXT)


@settings(deadline=None, max_examples=400)
@given(VALUES)
def test_parse_inverts_render(value: Value) -> None:
    assert values_equal(parse_value(render(value)), value)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("42", 42),
        ("0", 0),
        ("007", 7),
        (str(NAT_MAX), NAT_MAX),
        ("true", True),
        ("false", False),
        ('"hi"', "hi"),
        ('""', ""),
        ('"a b\nc"', "a b\nc"),
        ('"say \\"hi\\""', 'say "hi"'),
        ('"back\\\\slash"', "back\\slash"),
        ("[]", ()),
        ("[ ]", ()),
        ("[1, 2]", (1, 2)),
        ("[1,2]", (1, 2)),
        ("[[]]", ((),)),
        ('(1, "a")', Pair(1, "a")),
        ("((1,2),(3,4))", Pair(Pair(1, 2), Pair(3, 4))),
        ("nothing", NOTHING),
        ("just 1", Just(1)),
        ("just just 1", Just(Just(1))),
        ("just[1]", Just((1,))),
        ("just(1, 2)", Just(Pair(1, 2))),
        ("obj:7", ObjectRef(7)),
        ("tx:3", TxRef(3)),
        ('[(1, "a"), just false]', (Pair(1, "a"), Just(False))),
        ('  ["Ping", 0, 3, obj:5]  ', ("Ping", 0, 3, ObjectRef(5))),
        ("\t[\n1\n]\n", (1,)),
    ],
)
def test_examples(text: str, value: Value) -> None:
    assert values_equal(parse_value(text), value)


@pytest.mark.parametrize(
    ("text", "column", "problem"),
    [
        ("", 1, "expected a value, found the end of the text"),
        ("   ", 4, "expected a value, found the end of the text"),
        ("[1,", 4, "expected a value"),
        ("[1,]", 4, "expected a value, found ']'"),
        ("[1 2]", 4, "expected ',' or ']', found '2'"),
        ("[1", 3, "expected ',' or ']', found the end of the text"),
        ("(1)", 3, "expected ',', found ')'"),
        ("(1, 2, 3)", 6, "expected ')', found ','"),
        ("(1, 2", 6, "expected ')', found the end"),
        ("obj: 5", 5, "expected a number after 'obj:'"),
        ("tx:", 4, "expected a number after 'tx:'"),
        ("obj", 1, "expected a value, found 'obj'"),
        ("justice", 1, "expected a value, found 'justice'"),
        ("True", 1, "expected a value, found 'True'"),
        ("just", 5, "expected a value, found the end"),
        (str(NAT_MAX + 1), 1, "larger than the largest nat"),
        ("tx:" + "9" * 40, 4, "larger than the largest nat"),
        ("-1", 1, "unexpected '-'"),
        ("1.5", 2, "unexpected '.'"),
        ('"abc', 1, "string is not closed"),
        ('"a\\nb"', 3, 'only \\" and \\\\ may follow a backslash'),
        ("1 2", 3, "unexpected '2' after the value"),
        ("[1]]", 4, "unexpected ']' after the value"),
        ("@", 1, "unexpected '@'"),
        ("]", 1, "expected a value, found ']'"),
        (",", 1, "expected a value, found ','"),
    ],
)
def test_errors_give_the_column(text: str, column: int, problem: str) -> None:
    with pytest.raises(ValueTextError, match=re.escape(problem)) as caught:
        parse_value(text)
    assert caught.value.column == column
    assert str(caught.value).startswith(f"column {column}: ")


@settings(deadline=None, max_examples=200)
@given(VALUES, st.sampled_from(["", " ", "  \n "]))
def test_whitespace_between_tokens_is_free(value: Value, space: str) -> None:
    text = render(value)
    spaced = text.replace(", ", f"{space},{space}") if '"' not in text else text
    assert values_equal(parse_value(f"{space}{spaced}{space}"), value)


def test_every_string_reads_back_with_escapes() -> None:
    awkward = 'a "quoted" \\ path\\'
    escaped = '"' + awkward.replace("\\", "\\\\").replace('"', '\\"') + '"'
    assert parse_value(escaped) == awkward


def test_deep_nesting_is_iterative() -> None:
    depth = 100_000  # far past the interpreter's recursion limit
    value: Value = 1
    for _ in range(depth):
        value = Just(value)
    assert values_equal(parse_value(render(value)), value)
    nested = parse_value("[" * depth + "]" * depth)
    for _ in range(depth - 1):
        (nested,) = nested  # type: ignore[misc]
    assert nested == ()
