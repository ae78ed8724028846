"""The highlighters agree with the grammar: the Pygments lexer and the TextMate grammar.

Their word lists must equal the grammar's words and fixed lexemes, the TextMate file must be
what tools/gen_textmate.py writes, and on every program of the repository each token the
compiler's own lexer reads must be shown as what it is (a keyword as a keyword, a name as a
name, ...) by both highlighters, with no Pygments error token.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from program_corpus import EXAMPLES, ROOT, programs
from pygments.lexers import find_lexer_class_for_filename, get_lexer_by_name
from pygments.token import (
    Comment,
    Error,
    Keyword,
    Literal,
    Name,
    Number,
    Operator,
    Punctuation,
    String,
    Whitespace,
    _TokenType,
)

from avmc import highlight
from avmc.highlight import VOCABULARY, AvmLexer, grammar_vocabulary, textmate_grammar
from avmc.parser import lark_parser

VSCODE = ROOT / "editors" / "vscode"
TEXTMATE = VSCODE / "syntaxes" / "avm.tmLanguage.json"
CORPUS = programs()
REGENERATE = "regenerate it with `python tools/gen_textmate.py`"


# ---------------------------------------------------------------- word lists


def test_the_word_lists_are_the_grammars() -> None:
    assert grammar_vocabulary() == VOCABULARY
    groups = [
        highlight.DECLARATIONS,
        highlight.CONTROL,
        highlight.CONSTANTS,
        highlight.PSEUDO_VARIABLES,
        highlight.WORD_OPERATORS,
    ]
    assert sum(map(len, groups)) == len(VOCABULARY.keywords)  # each word in one group
    assert len(highlight.OPERATORS) + len(highlight.PUNCTUATION) == len(VOCABULARY.operators)
    # No callable name is a word of the language.
    assert not set(highlight.CALLABLE) & VOCABULARY.keywords


@pytest.mark.parametrize(
    ("terminal", "pattern"),
    [
        ("LINE_COMMENT", highlight.LINE_COMMENT),
        ("BLOCK_COMMENT", highlight.BLOCK_COMMENT),
        ("NAT", highlight.NAT),
    ],
)
def test_the_lexemes_are_the_grammars(terminal: str, pattern: str) -> None:
    defined = {t.name: t.pattern.to_regexp() for t in lark_parser().terminals}
    samples = ["//", "// x  ", "/* a\n * b */", "/* open", "/**/", "0", "0x2A", "1_000", "12ab"]
    for sample in samples:
        expected = re.fullmatch(defined[terminal], sample) is not None
        assert (re.fullmatch(pattern, sample) is not None) == expected, (terminal, sample)


# ---------------------------------------------------------------- what each token is shown as


def grammar_class(token_type: str, value: str) -> str:
    """What the compiler's lexer says a token is."""
    if value in VOCABULARY.keywords:
        return "keyword"
    named = {
        "NAME": "name",
        "NAT": "number",
        "STRING": "string",
        "OBJREF": "reference",
        "TXREF": "reference",
        "LINE_COMMENT": "comment",
        "BLOCK_COMMENT": "comment",
    }
    return named.get(token_type, "operator")


def pygments_class(token_type: _TokenType) -> str:
    if token_type in Keyword or token_type in Operator.Word or token_type in Name.Builtin.Pseudo:
        return "keyword"
    for kind, name in [
        (Name, "name"),
        (Number, "number"),
        (String, "string"),
        (Comment, "comment"),
        (Operator, "operator"),
        (Punctuation, "operator"),
        (Whitespace, "space"),
    ]:
        if token_type in kind:
            return name
    return "reference" if token_type is Literal else "error"


def textmate_class(scope: str | None) -> str:
    prefixes = [
        ("keyword.operator.word", "keyword"),
        ("keyword.operator", "operator"),
        ("punctuation", "operator"),
        ("keyword", "keyword"),
        ("storage.type", "keyword"),
        ("constant.language", "keyword"),
        ("variable.language", "keyword"),
        ("variable.other", "name"),
        ("entity.name", "name"),
        ("support.function", "name"),
        ("constant.numeric", "number"),
        ("constant.other.reference", "reference"),
        ("constant.character.escape", "string"),
        ("string", "string"),
        ("comment", "comment"),
    ]
    return next((kind for prefix, kind in prefixes if (scope or "").startswith(prefix)), "none")


def mismatches(source: str, classes: list[str]) -> list[tuple[str, str, str]]:
    """Each token of the compiler's lexer whose characters are not all shown as what it is."""
    wrong = []
    for token in lark_parser().lex(source, dont_ignore=True):
        if token.type == "WHITESPACE":
            continue
        expected = grammar_class(token.type, token.value)
        shown = set(classes[token.start_pos : token.end_pos])
        if shown != {expected}:
            wrong.append((token.value, expected, "/".join(sorted(shown))))
    return wrong


def pygments_classes(source: str) -> list[str]:
    classes = ["none"] * len(source)
    for start, token_type, text in AvmLexer().get_tokens_unprocessed(source):
        classes[start : start + len(text)] = [pygments_class(token_type)] * len(text)
    return classes


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_lexes_without_an_error_token(path: Path) -> None:
    tokens = list(AvmLexer().get_tokens(path.read_text(encoding="utf-8")))
    assert [text for token_type, text in tokens if token_type in Error] == []


def test_pygments_shows_every_token_as_the_compiler_reads_it() -> None:
    wrong = {name: mismatches(s, pygments_classes(s)) for name, s in CORPUS.items()}
    assert {name: found for name, found in wrong.items() if found} == {}
    assert len(CORPUS) >= 200


def test_pygments_finds_the_lexer_by_name_and_file_name() -> None:
    assert type(get_lexer_by_name("avm")) is AvmLexer  # through the package's entry point
    assert find_lexer_class_for_filename("bank.avm") is AvmLexer


def test_pygmentize_highlights_an_example() -> None:
    example = ROOT / "examples" / "counter.avm"
    command = [sys.executable, "-m", "pygments", "-l", "avm", "-f", "raw", str(example)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
    assert "Token.Keyword.Declaration\t'behavior'" in out
    assert "Token.Name.Class\t'Counter'" in out
    assert "Token.Error" not in out


# ---------------------------------------------------------------- the TextMate grammar


def test_the_textmate_file_is_generated() -> None:
    spec = importlib.util.spec_from_file_location("gen_textmate", ROOT / "tools/gen_textmate.py")
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert TEXTMATE.read_text(encoding="utf-8") == generator.render(), f"stale: {REGENERATE}"


def test_the_textmate_words_are_the_grammars() -> None:
    """Read back from the file itself: the words each rule of the TextMate grammar names."""
    grammar = json.loads(TEXTMATE.read_text(encoding="utf-8"))
    words: set[str] = set()
    for rule in grammar["patterns"]:
        scope = rule.get("name", "")
        if scope.startswith(("keyword.", "constant.language", "variable.language")):
            match = re.fullmatch(r"\\b\(\?:([a-z_|]+)\)\(\?!\[A-Za-z0-9_\]\)", rule["match"])
            if match is not None:
                words |= set(match.group(1).split("|"))
        if "captures" in rule:  # `behavior NAME`, `fn NAME`
            head = rule["match"].split("\\s+(")[0]
            words |= set(re.findall(r"(?<![\\a-z])[a-z]+", head))  # not the `b` of `\b`
    assert words == VOCABULARY.keywords, REGENERATE


def textmate_scopes(grammar: dict, source: str) -> list[str | None]:
    """The scope of each character by the TextMate rules: line by line, the earliest match of
    any rule wins (the first rule on a tie); a begin rule's scope holds until its end matches.
    """
    scopes: list[str | None] = [None] * (len(source) + 1)
    inside: dict | None = None  # the begin/end rule whose span is open

    def paint(start: int, end: int, scope: str) -> None:
        scopes[start:end] = [scope] * (end - start)

    offset = 0
    for line in source.split("\n"):
        at = 0
        while at <= len(line):
            rules = grammar["patterns"]
            if inside is not None:
                rules = [{"match": inside["end"], "closes": True}, *inside.get("patterns", [])]
            hits = []
            for order, rule in enumerate(rules):
                match = re.compile(rule.get("match") or rule["begin"]).search(line, at)
                if match is not None:
                    hits.append((match.start(), order, match, rule))
            if not hits:
                break
            start, _, match, rule = min(hits, key=lambda hit: hit[:2])
            if inside is not None:
                paint(offset + at, offset + match.end(), inside["name"])
            if rule.get("closes"):
                inside = None
            elif "captures" in rule:
                for group, capture in rule["captures"].items():
                    paint(
                        offset + match.start(int(group)),
                        offset + match.end(int(group)),
                        capture["name"],
                    )
            else:
                paint(offset + start, offset + match.end(), rule["name"])
                inside = rule if "begin" in rule else inside
            at = match.end() if match.end() > at else at + 1
        if inside is not None:  # the rest of the line and its line break
            paint(offset + at, offset + len(line) + 1, inside["name"])
        offset += len(line) + 1
    return scopes[: len(source)]


def test_textmate_shows_every_token_as_the_compiler_reads_it() -> None:
    grammar = json.loads(TEXTMATE.read_text(encoding="utf-8"))
    wrong = {}
    for name, source in CORPUS.items():
        classes = [textmate_class(scope) for scope in textmate_scopes(grammar, source)]
        if found := mismatches(source, classes):
            wrong[name] = found
    assert wrong == {}


def test_the_editor_configuration_names_the_grammars_lexemes() -> None:
    configuration = json.loads((VSCODE / "language-configuration.json").read_text())
    package = json.loads((VSCODE / "package.json").read_text())
    assert package["contributes"]["grammars"][0]["path"] == "./syntaxes/avm.tmLanguage.json"
    assert package["contributes"]["grammars"][0]["scopeName"] == textmate_grammar()["scopeName"]
    line, (open_block, close_block) = (
        configuration["comments"]["lineComment"],
        configuration["comments"]["blockComment"],
    )
    lexed = [t.type for t in lark_parser().lex(f"{line} x\n{open_block} y {close_block}", True)]
    assert [t for t in lexed if t != "WHITESPACE"] == ["LINE_COMMENT", "BLOCK_COMMENT"]
    brackets = {text for pair in configuration["brackets"] for text in pair}
    assert brackets <= VOCABULARY.operators
