"""Syntax highlighting for AVM source: a Pygments lexer and the TextMate grammar.

``AvmLexer`` is registered with Pygments as the ``avm`` lexer (an entry point of the
package), so ``pygmentize -l avm FILE`` works. ``textmate_grammar()`` is the grammar that
editors/vscode/syntaxes/avm.tmLanguage.json holds; tools/gen_textmate.py writes it.

Both are built from the word lists below. ``grammar_vocabulary()`` reads the same lists out
of grammar/avm.lark, and the tests check the two agree, so a keyword or operator added to
the grammar cannot be missed here.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from pygments.lexer import RegexLexer, bygroups, words
from pygments.token import (
    Comment,
    Keyword,
    Literal,
    Name,
    Number,
    Operator,
    Punctuation,
    String,
    Whitespace,
)

from avm_vm.format.instructions import BY_SOURCE, SYNTAX_INSTRUCTIONS

from .builtins import BUILTINS


class Vocabulary(NamedTuple):
    keywords: frozenset[str]  # every word of the grammar
    operators: frozenset[str]  # every other fixed lexeme: operators and punctuation


# The grammar's words, by how they are shown.
DECLARATIONS = ("behavior", "extern", "field", "fn", "let", "main", "on", "test")
CONTROL = (
    "assert",
    "atomic",
    "break",
    "continue",
    "create",
    "else",
    "expect_fail",
    "fail",
    "for",
    "if",
    "in",
    "just",
    "match",
    "return",
    "under",
    "unsafe",
    "while",
)
CONSTANTS = ("false", "nothing", "true")
PSEUDO_VARIABLES = ("input", "self", "sender")  # instructions with syntax of their own
WORD_OPERATORS = ("and", "not", "or")
PUNCTUATION = ("(", ")", ",", ":", ";", "[", "]", "{", "}")
OPERATORS = (
    "!",
    "!=",
    "%",
    "%=",
    "*",
    "*=",
    "+",
    "++",
    "++=",
    "+=",
    "-",
    "-=",
    "..",
    "/",
    "/=",
    "<",
    "<=",
    "=",
    "==",
    "=>",
    ">",
    ">=",
)
# Names a program calls without declaring them: builtin functions and instructions.
CALLABLE = tuple(
    sorted(set(BUILTINS) | {name for name in BY_SOURCE if name not in SYNTAX_INSTRUCTIONS})
)

VOCABULARY = Vocabulary(
    frozenset(DECLARATIONS + CONTROL + CONSTANTS + PSEUDO_VARIABLES + WORD_OPERATORS),
    frozenset(PUNCTUATION + OPERATORS),
)

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_END_OF_WORD = r"(?![A-Za-z0-9_])"
_BEFORE_CALL = r"(?=\s*!?\s*\()"  # `len(`, `call!(`: a call, not a variable of that name
# The regular-expression lexemes, as grammar/avm.lark spells them (checked by the tests).
LINE_COMMENT = r"//[^\n]*"
BLOCK_COMMENT = r"/\*(?:[^*]|\*(?!/))*(?:\*/)?"
NAT = r"[0-9][0-9A-Za-z_]*"
REFERENCE = r"(?:obj|tx):[0-9]+"
ESCAPE = r"\\(?:u\{[0-9A-Fa-f]*\}|.)"


def grammar_vocabulary() -> Vocabulary:
    """The words and the other fixed lexemes of grammar/avm.lark, as the parser reads it."""
    from .parser import lark_parser  # builds the parser: only when asked

    fixed = [t.pattern.value for t in lark_parser().terminals if t.pattern.type == "str"]
    keywords = frozenset(text for text in fixed if re.fullmatch(_NAME, text))
    return Vocabulary(keywords, frozenset(fixed) - keywords)


def _longest_first(lexemes: tuple[str, ...]) -> str:
    """An alternation of the lexemes where no lexeme hides a longer one (`+` and `++=`)."""
    return "|".join(re.escape(text) for text in sorted(lexemes, key=lambda t: (-len(t), t)))


class AvmLexer(RegexLexer):
    """Pygments lexer for the AVM behavior language (.avm files)."""

    name = "AVM"
    aliases = ["avm"]
    filenames = ["*.avm"]

    tokens = {
        "root": [
            (r"[ \t\r\n]+", Whitespace),
            (LINE_COMMENT, Comment.Single),
            (BLOCK_COMMENT, Comment.Multiline),
            ('"', String.Double, "string"),
            (REFERENCE, Literal),
            (NAT, Number.Integer),
            (
                rf"(behavior|extern\s+behavior)(\s+)({_NAME})",
                bygroups(Keyword.Declaration, Whitespace, Name.Class),
            ),
            (rf"(fn)(\s+)({_NAME})", bygroups(Keyword.Declaration, Whitespace, Name.Function)),
            (words(CONSTANTS, suffix=_END_OF_WORD), Keyword.Constant),
            (words(PSEUDO_VARIABLES, suffix=_END_OF_WORD), Name.Builtin.Pseudo),
            (words(WORD_OPERATORS, suffix=_END_OF_WORD), Operator.Word),
            (words(DECLARATIONS, suffix=_END_OF_WORD), Keyword.Declaration),
            (words(CONTROL, suffix=_END_OF_WORD), Keyword),
            (words(CALLABLE, suffix=_END_OF_WORD + _BEFORE_CALL), Name.Builtin),
            (_NAME, Name),
            (_longest_first(OPERATORS), Operator),
            (_longest_first(PUNCTUATION), Punctuation),
        ],
        "string": [
            ('"', String.Double, "#pop"),
            (ESCAPE, String.Escape),
            (r'[^"\\\n]+', String.Double),
            (r"\n", Whitespace, "#pop"),  # unterminated: the compiler reports it
        ],
    }


def textmate_grammar() -> dict[str, Any]:
    """The TextMate grammar for .avm files (editors/vscode/syntaxes/avm.tmLanguage.json)."""

    def alternatives(lexemes: tuple[str, ...]) -> str:
        return "(?:" + _longest_first(lexemes) + ")"

    def word_rule(scope: str, lexemes: tuple[str, ...], after: str = "") -> dict[str, str]:
        return {"name": f"{scope}.avm", "match": rf"\b{alternatives(lexemes)}{_END_OF_WORD}{after}"}

    return {
        "$schema": "https://raw.githubusercontent.com/martinring/tmlanguage/master/tmlanguage.json",
        "name": "AVM",
        "scopeName": "source.avm",
        "fileTypes": ["avm"],
        "comment": "Generated by tools/gen_textmate.py from avmc/highlight.py; do not edit.",
        "patterns": [
            {"name": "comment.line.double-slash.avm", "match": LINE_COMMENT},
            {"name": "comment.block.avm", "begin": r"/\*", "end": r"\*/"},
            {
                "name": "string.quoted.double.avm",
                "begin": '"',
                "end": '"|$',
                "patterns": [{"name": "constant.character.escape.avm", "match": ESCAPE}],
            },
            {"name": "constant.other.reference.avm", "match": rf"\b{REFERENCE}\b"},
            {"name": "constant.numeric.avm", "match": rf"\b{NAT}"},
            {
                "match": rf"\b(behavior|extern\s+behavior)\s+({_NAME})",
                "captures": {
                    "1": {"name": "keyword.other.avm"},
                    "2": {"name": "entity.name.type.avm"},
                },
            },
            {
                "match": rf"\b(fn)\s+({_NAME})",
                "captures": {
                    "1": {"name": "storage.type.function.avm"},
                    "2": {"name": "entity.name.function.avm"},
                },
            },
            word_rule("constant.language", CONSTANTS),
            word_rule("variable.language", PSEUDO_VARIABLES),
            word_rule("keyword.operator.word", WORD_OPERATORS),
            word_rule("keyword.other", DECLARATIONS),
            word_rule("keyword.control", CONTROL),
            word_rule("support.function.builtin", CALLABLE, _BEFORE_CALL),
            {"name": "variable.other.avm", "match": _NAME},
            {"name": "keyword.operator.avm", "match": _longest_first(OPERATORS)},
            {"name": "punctuation.avm", "match": _longest_first(PUNCTUATION)},
        ],
    }
