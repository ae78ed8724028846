"""`avmc fmt`: one canonical layout that keeps the program and its comments.

The properties run on every program the repository holds (tests/program_corpus.py): the
examples, the .avm files under tests/ that parse (the bad-program corpus's valid neighbours
among them) and every string constant in the test files that parses as a program.
Formatting twice equals formatting once, the parse tree is unchanged, each function compiles
to the same code hash, and the comments all survive, in order. Random comments and line
breaks dropped between the tokens of the examples must survive too.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lark.exceptions import LarkError
from program_corpus import EXAMPLES, programs

from avm_vm.diagnostics import DiagnosticError
from avm_vm.format.bytecode import behavior_hash, code_hash
from avmc.cli import main
from avmc.compiler import build
from avmc.fmt import format_source
from avmc.parser import lark_parser

COMMENTS = ("LINE_COMMENT", "BLOCK_COMMENT")
CORPUS = programs()


@cache
def formatted(name: str) -> str:
    return format_source(CORPUS[name], name)


def comments(source: str) -> list[str]:
    """The comments of ``source`` in order, without trailing whitespace on their lines."""
    return [
        "\n".join(line.rstrip() for line in token.value.split("\n"))
        for token in lark_parser().lex(source, dont_ignore=True)
        if token.type in COMMENTS
    ]


def hashes(source: str) -> list[bytes] | None:
    """The code hash of each function (tests included) and behavior, or None when it does
    not compile."""
    try:
        program = build(source, "hashed.avm", tests=True).program
    except DiagnosticError:
        return None
    functions = [code_hash(program, i) for i in range(len(program.functions))]
    return functions + [behavior_hash(program, b) for b in program.behaviors]


def test_the_corpus_covers_the_examples_and_the_grammar() -> None:
    assert {f"examples/{path.name}" for path in EXAMPLES} <= set(CORPUS)
    assert sum(name.startswith("tests/compile_errors/") for name in CORPUS) >= 20
    assert len(CORPUS) >= 200
    # Every rule of the grammar appears in some program, so every layout rule is tested.
    trees = [lark_parser().parse(source) for source in CORPUS.values()]
    used = {subtree.data for tree in trees for subtree in tree.iter_subtrees()}
    # Inlined rules (`?rule`, `_rule`) never appear in a tree; their aliases do.
    rules = {
        str(rule.alias or rule.origin.name)
        for rule in lark_parser().rules
        if rule.alias or not (rule.options.expand1 or rule.origin.name.startswith("_"))
    }
    assert rules - used == set()


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_formatting_is_idempotent_and_keeps_the_program(name: str) -> None:
    source, once = CORPUS[name], formatted(name)
    assert format_source(once, name) == once
    assert lark_parser().parse(once) == lark_parser().parse(source)
    assert comments(once) == comments(source)
    assert once == "" or (once.endswith("\n") and not once.endswith("\n\n"))
    for line in once.split("\n"):
        assert line == line.rstrip()
    assert "\n\n\n" not in once


COMPILING = [name for name in sorted(CORPUS) if hashes(CORPUS[name]) is not None]


def test_most_of_the_corpus_compiles() -> None:
    assert len(COMPILING) >= 150


@pytest.mark.parametrize("name", COMPILING)
def test_formatting_keeps_the_code_hash(name: str) -> None:
    assert hashes(formatted(name)) == hashes(CORPUS[name])


def test_the_examples_are_formatted() -> None:
    result = CliRunner().invoke(main, ["fmt", "--check", *map(str, EXAMPLES)])
    assert result.exit_code == 0, result.output


# ---------------------------------------------------------------- random comments and breaks

INSERTS = ["// note\n", "/* a */", "/* two\n   lines */", "\n", "\n\n\n", "\n// own line\n\n"]


@st.composite
def sprinkled(draw: st.DrawFn) -> tuple[str, str]:
    """An example with comments and line breaks dropped between some of its tokens, and a
    trailing comma added after the last item of some lists and calls."""
    source = draw(st.sampled_from([CORPUS[f"examples/{path.name}"] for path in EXAMPLES]))
    tokens = [t for t in lark_parser().lex(source) if t.type != "WHITESPACE"]
    starts = [token.start_pos for token in tokens] + [len(source)]
    closers = [token.start_pos for token in tokens if token.type in ("RSQB", "RPAR")]
    inserts = draw(
        st.dictionaries(
            st.sampled_from(starts),
            st.sampled_from(INSERTS),
            min_size=1,
            max_size=12,
        )
    )
    commas = draw(st.lists(st.sampled_from(closers), max_size=4, unique=True))
    text = source
    for position in sorted({*inserts, *commas}, reverse=True):
        if position in commas:
            with_comma = text[:position] + "," + text[position:]
            if _parses(with_comma):  # not after `[`, a pair or a `..rest` pattern
                text = with_comma
        if position in inserts:
            text = text[:position] + inserts[position] + text[position:]
    return source, text


def _parses(source: str) -> bool:
    try:
        lark_parser().parse(source)
    except LarkError:
        return False
    return True


@pytest.mark.slow  # 60 random sources through the formatter twice
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sprinkled())
def test_comments_anywhere_survive(case: tuple[str, str]) -> None:
    original, sprinkled_source = case
    once = format_source(sprinkled_source, "sprinkled.avm")
    assert format_source(once, "sprinkled.avm") == once
    assert lark_parser().parse(once) == lark_parser().parse(original)
    assert comments(once) == comments(sprinkled_source)


# ---------------------------------------------------------------- random expressions

OPERATORS = ["or", "and", "==", "!=", "<", ">=", "++", "+", "-", "*", "/", "%"]
LEAVES = st.sampled_from(["x", "0", "0x2A", '"s"', "true", "nothing", "self", "obj:1", "tx:2"])


def expressions() -> st.SearchStrategy[str]:
    """Expressions with every operand in parentheses, so their meaning never hangs on
    precedence; the formatter must drop exactly the parentheses that are not needed."""

    def tighter(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        lists = st.lists(inner, max_size=3).map(", ".join)
        return st.one_of(
            st.tuples(inner, st.sampled_from(OPERATORS), inner).map(
                "({0[0]}) {0[1]} ({0[2]})".format
            ),
            inner.map("not ({})".format),
            inner.map("just ({})".format),
            inner.map("create B under ({})".format),
            st.tuples(inner, inner).map("({0[0]})[{0[1]}]".format),
            st.tuples(inner, inner).map("({0[0]})[:{0[1]}]".format),
            st.tuples(inner, inner).map("({0[0]}, {0[1]})".format),
            lists.map("[{}]".format),
            lists.map("f!({})".format),
        )

    return st.recursive(LEAVES, tighter, max_leaves=12)


def test_every_pair_of_operators_keeps_its_grouping() -> None:
    """Each operator nested on either side of each other one, and under each prefix."""
    shapes = [
        *(f"({{a}} {inner} {{b}}) {outer} {{c}}" for inner in OPERATORS for outer in OPERATORS),
        *(f"{{a}} {outer} ({{b}} {inner} {{c}})" for inner in OPERATORS for outer in OPERATORS),
        *(f"{prefix} ({{a}} {op} {{b}})" for prefix in ("not", "just") for op in OPERATORS),
        *(f"({prefix} {{a}}) {op} {{b}}" for prefix in ("not", "just") for op in OPERATORS),
        *(f"({{a}} {op} {{b}})[{{c}}]" for op in OPERATORS),
        *(f"create B under ({{a}} {op} {{b}})" for op in OPERATORS),
        *(f"({prefix} {{a}})[{{c}}]" for prefix in ("not", "just", "create B under")),
        "create B under (just {a})",
        "(create B)[{c}]",
    ]
    for shape in shapes:
        source = f"main {{ return {shape.format(a='x', b='y', c='z')} }}\n"
        once = format_source(source, "pairs.avm")
        assert lark_parser().parse(once) == lark_parser().parse(source), (source, once)


STATEMENTS = st.one_of(
    expressions().map("let v = {}".format),
    expressions().map("v += {}".format),
    expressions(),
    st.just("return"),
    expressions().map("return {}".format),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(STATEMENTS, min_size=1, max_size=6), st.sampled_from([";", ";\n", " ; "]))
def test_random_statements_keep_their_meaning(statements: list[str], separator: str) -> None:
    source = "fn f(v) {\n" + separator.join(statements) + "\n}\n"
    once = format_source(source, "random.avm")
    assert lark_parser().parse(once) == lark_parser().parse(source)
    assert format_source(once, "random.avm") == once


# ---------------------------------------------------------------- the layout itself

MESSY = """\
// head comment


behavior   Box{
field v=0 // the value
  on ["put",x] if x>0{v=x;return v}
  on ["get"]{
      return v
  }
  on [true, false, ..rest] {}
}
fn f(a,b,){if (a) {return (a+b)*2} else if b {return a-(b-1)} else {return [a,b,]}}
main{
  let p=(1,2);let l=[1,2][0:1]
  l;[0]
  return
  ;l = not (just 1 == 2)
  match l { [] => { return 0 }, [h, ..t] if h>=1 => {}
  }


  atomic under "me" { f(1,2) } else (why) { fail why++"!" }
  /* trailing
     block */
}
"""

TIDY = """\
// head comment

behavior Box {
  field v = 0 // the value
  on ["put", x] if x > 0 {
    v = x
    return v
  }
  on ["get"] { return v }
  on [true, false, ..rest] {}
}

fn f(a, b) {
  if a {
    return (a + b) * 2
  } else if b {
    return a - (b - 1)
  } else {
    return [
      a,
      b,
    ]
  }
}

main {
  let p = (1, 2)
  let l = [1, 2][0:1]
  l;
  [0]
  return;
  l = not just 1 == 2
  match l {
    [] => { return 0 }
    [h, ..t] if h >= 1 => {}
  }

  atomic under "me" {
    f(1, 2)
  } else (why) {
    fail why ++ "!"
  }
  /* trailing
     block */
}
"""


def test_the_canonical_layout() -> None:
    assert format_source(MESSY, "messy.avm") == TIDY


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("(a + b) * c", "(a + b) * c"),
        ("a + (b * c)", "a + b * c"),
        ("a - (b - c)", "a - (b - c)"),
        ("(a - b) - c", "a - b - c"),
        ("(a == b) == c", "(a == b) == c"),
        ("(not a) and b", "not a and b"),
        ("not (a and b)", "not (a and b)"),
        ("(just a)[0]", "(just a)[0]"),
        ("just (a + 1)", "just (a + 1)"),
        ("(create B under (x))", "create B under x"),
        ("((a ++ b))", "a ++ b"),
    ],
)
def test_parentheses_only_where_needed(source: str, expected: str) -> None:
    result = format_source(f"main {{ return {source} }}\n", "p.avm")
    assert result == f"main {{ return {expected} }}\n"


def test_an_atomic_handler_names_the_error_and_its_kind() -> None:
    source = "main { atomic { fail 1 } else ( e ,k ) { return [e,k] } }"
    expected = "main {\n  atomic {\n    fail 1\n  } else (e, k) {\n    return [e, k]\n  }\n}\n"
    assert format_source(source, "kind.avm") == expected


WRAPPED = "\n".join(
    [
        "main {",
        "  let result = call!(the_bank_of_the_small_town, "
        '["transfer", account_of_alice, account_of_bob, 30, "rent"])',
        "  let grid = [[0, 0], // top",
        "    [1, 1]]",
        "  let short = [1, f(2,),]",
        "  if ok { return [1,",
        "  2,] }",
        "  return (a_long_name_for_the_first_half_of_the_pair, "
        "[the, second, half, of, the, pair, too, xs, ys])",
        "}",
        "",
    ]
)

SPREAD = """\
main {
  let result = call!(
    the_bank_of_the_small_town,
    ["transfer", account_of_alice, account_of_bob, 30, "rent"],
  )
  let grid = [
    [0, 0], // top
    [1, 1],
  ]
  let short = [
    1,
    f(
      2,
    ),
  ]
  if ok {
    return [
      1,
      2,
    ]
  }
  return (
    a_long_name_for_the_first_half_of_the_pair,
    [the, second, half, of, the, pair, too, xs, ys]
  )
}
"""


def test_long_lists_calls_and_pairs_are_spread_one_item_per_line() -> None:
    """Also those written with a trailing comma or holding a comment, however short."""
    assert format_source(WRAPPED, "wrapped.avm") == SPREAD
    assert format_source(SPREAD, "wrapped.avm") == SPREAD


def test_a_long_block_is_spread_over_lines() -> None:
    call = "f(" + ", ".join(["argument"] * 12) + ")"
    result = format_source(f"main {{ {call} }}\n", "long.avm")
    assert result == "main {\n  f(\n" + "    argument,\n" * 12 + "  )\n}\n"


# ---------------------------------------------------------------- the command


def invoke(*args: str):
    return CliRunner().invoke(main, ["fmt", *args])


def test_check_lists_the_files_that_would_change_and_writes_nothing(tmp_path: Path) -> None:
    messy, tidy = tmp_path / "messy.avm", tmp_path / "tidy.avm"
    messy.write_text(MESSY)
    tidy.write_text(TIDY)
    result = invoke("--check", str(messy), str(tidy))
    assert result.exit_code == 1
    assert result.stderr == f"would reformat {messy}\n"
    assert messy.read_text() == MESSY
    assert invoke("--check", str(tidy)).exit_code == 0


def test_diff_shows_the_change_and_writes_nothing(tmp_path: Path) -> None:
    messy = tmp_path / "messy.avm"
    messy.write_text(MESSY)
    result = invoke("--diff", str(messy))
    assert result.exit_code == 0
    assert result.stdout.startswith(f"--- {messy} (before)\n+++ {messy} (formatted)\n")
    assert "\n-field v=0 // the value\n" in result.stdout
    assert "\n+  field v = 0 // the value\n" in result.stdout
    assert messy.read_text() == MESSY


def test_writing_rewrites_in_place_and_a_directory_means_its_files(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    messy = tmp_path / "sub" / "messy.avm"
    messy.write_bytes(MESSY.replace("\n", "\r\n").encode())
    result = invoke(str(tmp_path))
    assert result.exit_code == 0, result.output
    assert result.stderr == f"reformatted {messy}\n"
    assert messy.read_bytes() == TIDY.encode()
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["messy.avm"]  # no temporary left
    assert invoke(str(messy)).stderr == ""


def test_a_file_that_does_not_parse_is_left_untouched(tmp_path: Path) -> None:
    bad, messy = tmp_path / "bad.avm", tmp_path / "messy.avm"
    bad.write_text("main {\n  let x = \n}\n")
    messy.write_text(MESSY)
    result = invoke(str(bad), str(messy))
    assert result.exit_code == 2
    assert f"{bad}:3:1: error: expected an expression" in result.stderr
    assert bad.read_text() == "main {\n  let x = \n}\n"
    assert messy.read_text() == TIDY  # the other files are still formatted


def test_a_dash_formats_standard_input_onto_standard_output() -> None:
    formatted = CliRunner().invoke(main, ["fmt", "-"], input=MESSY)
    assert (formatted.exit_code, formatted.stdout) == (0, TIDY)
    assert CliRunner().invoke(main, ["fmt", "--check", "-"], input=MESSY).exit_code == 1
    assert CliRunner().invoke(main, ["fmt", "--check", "-"], input=TIDY).exit_code == 0
    broken = CliRunner().invoke(main, ["fmt", "-"], input="main { return }}\n")
    assert broken.exit_code == 2
    assert broken.stdout == ""
    assert "<stdin>:1:16: error: expected" in broken.stderr
