"""The parser's generated reductions (avmc/lalr_driver.py) build what Lark's own parse does.

- The reference: Lark's tree-building parse of the same grammar (positions propagated),
  each tree node handed to the AST builder's method for its rule with the node's position
  as its span. The AST and every span in it must be the same, on every program the
  repository holds, on generated programs, and on random programs, which must also parse
  exactly when Lark's parser accepts them.
- The generated code is cached on disk under its source's digest: written whole (to a
  temporary file, then renamed), read back, rebuilt when the file is damaged, and never
  reused for another source (so a grammar change makes new code).
"""

from __future__ import annotations

import marshal
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lark import Token, Transformer
from lark.exceptions import LarkError
from lark.tree import Meta
from program_corpus import programs

from avm_vm.diagnostics import DiagnosticError, Span
from avmc import ast_builder, lalr_driver
from avmc.ast_builder import AstBuilder, NoParse
from avmc.parser import _BadLexeme, lark_parser

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from genprog import generate, long_behavior


class _Reference(Transformer):
    """Lark's tree into the AST, through the builder's methods."""

    def __init__(self, builder: AstBuilder) -> None:
        super().__init__(visit_tokens=True)
        self.builder = builder

    def __default__(self, data: str, children: list, meta: Meta) -> object:
        name = self.builder.filename
        if meta.empty:  # an empty rule: the file's first position, as the builder gives it
            span = Span(name, 1, 1, None, None)
        else:
            span = Span(name, meta.line, meta.column, meta.end_line, meta.end_column)
        return getattr(self.builder, data)(span, *children)

    def __default_token__(self, token: Token) -> tuple:
        return (
            token.line,
            token.column,
            token.end_line,
            token.end_column,
            token.type,
            token.value,
            token.start_pos,
        )


def _flat(tree: object) -> list[object]:
    """Every node's type and field, spans included (which node equality leaves out), in
    order: two trees are alike, spans and all, when their lists are equal."""
    out: list[object] = []
    stack = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            out.append(len(item))
            stack.extend(reversed(item))
            continue
        names = getattr(type(item), "__slots__", None)
        if (names is None and not hasattr(item, "__dataclass_fields__")) or isinstance(item, Span):
            out.append(item)
            continue
        names = names if names is not None else list(vars(item))
        out.append(type(item).__name__)
        stack.extend(getattr(item, name) for name in reversed(names))
    return out


def _both(text: str) -> tuple[object, object]:
    """The driver's AST and the reference's, flattened; None for one that fails."""
    parser = lark_parser()
    try:
        ours: object = _flat(AstBuilder("t.avm", parser).transform(text))
    except (NoParse, _BadLexeme, DiagnosticError):
        ours = None
    try:
        tree = parser.parse(text)
    except (LarkError, _BadLexeme):
        return ours, None
    builder = AstBuilder("t.avm", parser)
    module = _Reference(builder).transform(tree)
    # An error a method found (a field after a clause) is the driver's to raise.
    return ours, None if builder.deferred is not None else _flat(module)


def test_the_driver_builds_larks_tree_on_every_program() -> None:
    corpus = programs()
    assert len(corpus) > 300
    for name, text in corpus.items():
        ours, reference = _both(text)
        assert reference is not None, name
        assert ours == reference, name


@pytest.mark.parametrize(
    "text",
    [
        generate(400),
        long_behavior(50),
        "",
        ";;",
        "main { return ((((1)))) + (2) }",
        "main { let x = (f)(1) }",
        "fn f(a, b,) { return [a, b,][0:] }",
        "behavior B { field x = 1 on [x, ..r] if (x) { atomic under (y) { } else (e, k) { } } }",
        'test "t" { expect_fail k "m" { assert (1 == 2), "no" } }',
        "main { match (1, 2) { (a, b) if a => { }, [..r] => { } _ => { } } }",
        "behavior B { on _ { } field late = 1 }",  # refused by both, once parsed
    ],
    ids=lambda text: text[:40],
)
def test_the_driver_builds_larks_tree(text: str) -> None:
    ours, reference = _both(text)
    assert ours == reference
    assert (reference is None) == ("late" in text)


_PIECES = st.sampled_from(
    [
        "let x = ", "x = ", "x += ", "return ", "f(", "g!(", "unsafe h(", ")", "(", "[", "]",
        "{", "}", ",", ";", "1", "0x2A", '"s"', "obj:3", "tx:1", "true", "nothing", "self",
        "just ", "not ", "create B", " under ", "x", "y", " + ", " * ", " == ", " ++ ", " and ",
        " or ", "[1:]", "[:2]", "if x ", "else ", "while y ", "for v in x ", "match x ",
        "_ => ", "[a, ..r] => ", "break", "continue", "fail ", "atomic ", "assert ", "\n",
        "// note\n", "/* c */",
    ]
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_PIECES, max_size=25))
def test_the_driver_accepts_what_lark_accepts(pieces: list[str]) -> None:
    """Random statements in a main block: parsed (to Lark's tree) exactly when Lark's own
    parser accepts them."""
    text = "main {\n" + "".join(pieces) + "\n}"
    ours, reference = _both(text)
    assert ours == reference


# ---------------------------------------------------------------- the cache


def _cached(tmp: Path) -> list[Path]:
    return sorted(tmp.glob("avm/avmc-reductions-*"))


def test_the_generated_code_is_cached_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    source = "def make():\n    return 41\n"
    assert lalr_driver._compiled(source)() == 41
    (written,) = _cached(tmp_path)  # one file, no temporary left behind
    stamp = written.stat().st_mtime_ns
    assert lalr_driver._compiled(source)() == 41
    assert written.stat().st_mtime_ns == stamp  # read, not written again

    written.write_bytes(b"\x00 not a code object")  # damaged: rebuilt and rewritten
    assert lalr_driver._compiled(source)() == 41
    assert _cached(tmp_path) == [written]
    assert lalr_driver._compiled(source)() == 41

    # Another source (a changed grammar) is another file, whatever the first one holds;
    # writing it removes the first, of no further use.
    assert lalr_driver._compiled("def make():\n    return 42\n")() == 42
    (replacement,) = _cached(tmp_path)
    assert replacement != written


def test_writing_a_cache_file_removes_the_stale_ones_of_its_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What earlier grammars or Pythons left is deleted once a new file is written; other
    files, the other kind of cache file, and files being written are left alone."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    directory = tmp_path / "avm"
    directory.mkdir()
    stale = [directory / f"avmc-reductions-{digit * 16}.marshal" for digit in "0123"]
    kept = [
        directory / "avmc-grammar-0123456789abcdef.lark",  # another kind
        directory / "avmc-reductions-notadigest.marshal",  # not a name the cache makes
        directory / "avmc-reductions-0123456789abcdef.marshal.tmp",  # being written
        directory / "notes.txt",
    ]
    for path in stale + kept:
        path.write_bytes(b"old")
    # One of them disappears (another process removing it) just before it is removed here.
    real_unlink = os.unlink
    vanished: list[str] = []

    def racing_unlink(path: str | os.PathLike[str]) -> None:
        if not vanished:
            vanished.append(str(path))
            real_unlink(path)
        real_unlink(path)  # FileNotFoundError the first time: must not be an error

    monkeypatch.setattr(os, "unlink", racing_unlink)
    assert lalr_driver._compiled("def make():\n    return 43\n")() == 43
    monkeypatch.undo()
    assert vanished and vanished[0] in map(str, stale)
    (written,) = set(_cached(tmp_path)) - set(kept)
    assert written not in stale
    assert all(path.exists() for path in kept)
    # Reading a cached file writes nothing, so removes nothing.
    stale[0].write_bytes(b"old")
    assert lalr_driver._compiled("def make():\n    return 43\n")() == 43
    assert stale[0].exists()


def test_a_new_grammar_cache_removes_the_stale_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lark's grammar cache: when the parser writes its file (none there yet), the files of
    other grammars go; when it reads its file, nothing is removed."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    directory = tmp_path / "avm"
    directory.mkdir()
    stale = directory / "avmc-grammar-0000000000000000.lark"
    other = directory / "avmc-reductions-0000000000000000.marshal"
    for path in (stale, other):
        path.write_bytes(b"old")
    build = lark_parser.__wrapped__  # a new parser, not the process's cached one
    build()
    (written,) = directory.glob("avmc-grammar-*.lark")
    assert written != stale and other.exists()
    stale.write_bytes(b"old")
    build()  # reads its file: writes nothing, removes nothing
    assert stale.exists()


def test_without_a_cache_directory_the_code_is_compiled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # no directory can be made there
    assert lalr_driver.cache_directory() is None
    assert lalr_driver._compiled("def make():\n    return 7\n")() == 7


def test_the_cache_names_the_grammars_reductions() -> None:
    """The cached file is named after the generated source, which follows the grammar:
    a rule's reduction appears in it, and another grammar's differs."""
    rules = list(lark_parser().rules)
    source = lalr_driver.generate(rules, True)
    assert "m_expr_binop" in source and "g_expr" in source
    assert lalr_driver.generate(rules[:-1], True) != source
    assert lalr_driver.generate(rules, False) != source  # spans made another way


def test_processes_building_the_cache_at_once_agree(tmp_path: Path) -> None:
    """Several fresh processes, each writing the cache as it finds none: every one parses,
    and one whole file remains (no temporary, no second copy)."""
    script = "from avmc.parser import parse; print(len(parse('main { return 1 }', 't').items))"
    environment = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", script], env=environment, stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    assert [run.returncode for run in runs] == [0] * 4
    assert outputs == ["1\n"] * 4
    (written,) = _cached(tmp_path)
    assert not list(tmp_path.glob("avm/*.tmp"))
    code = marshal.loads(written.read_bytes())
    assert code.co_filename == "<avmc generated reductions>"


def test_spans_made_by_their_constructor_give_the_same_tree(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reductions written for a `Span` that cannot be made the quick way (calling its
    constructor) build the same tree, spans included."""
    slow = lalr_driver.load(lark_parser(), False)
    monkeypatch.setattr(ast_builder, "_driver", lambda parser: slow)
    monkeypatch.setattr(ast_builder, "_quick_spans", lambda: False)
    made = []
    monkeypatch.setattr(ast_builder, "Span", lambda *fields: made.append(1) or Span(*fields))
    text = generate(100)
    ours = _flat(AstBuilder("t.avm", lark_parser()).transform(text))
    monkeypatch.undo()
    assert len(made) >= sum(type(item) is Span for item in ours)  # the constructor's
    assert ours == _flat(AstBuilder("t.avm", lark_parser()).transform(text))
    assert ours == _both(text)[1]
