"""The parser builds the documented AST for every construct of docs/language.md."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from lark import Lark, logger

from avm_vm.diagnostics import DiagnosticError, Span
from avm_vm.values import NAT_MAX, NOTHING, ObjectRef, TxRef
from avmc import ast
from avmc.ast import (
    Assign,
    Atomic,
    BehaviorDef,
    BinOp,
    Block,
    Break,
    Call,
    Clause,
    ContextExpr,
    Continue,
    Create,
    ExprStmt,
    ExternBehavior,
    Fail,
    FieldDef,
    For,
    FunctionDef,
    If,
    Index,
    JustExpr,
    Let,
    ListExpr,
    Literal,
    MainDef,
    Match,
    MatchArm,
    Module,
    Name,
    Not,
    PairExpr,
    Param,
    PBind,
    PJust,
    PList,
    PLiteral,
    PPair,
    PWildcard,
    Return,
    Slice,
    While,
)
from avmc.ast_builder import AstBuilder
from avmc.checks import check
from avmc.parser import MAX_NESTING, _grammar_text, lark_parser, parse
from avmc.syntax_errors import CONTEXTS, context_states


def body(source: str) -> list[ast.Stmt]:
    """The statements of ``main { source }``."""
    module = parse(f"main {{\n{source}\n}}", "t.avm")
    main = module.items[0]
    assert isinstance(main, MainDef)
    return main.body.stmts


def expr(source: str) -> ast.Expr:
    (stmt,) = body(f"return {source}")
    assert isinstance(stmt, Return) and stmt.value is not None
    return stmt.value


def pattern(source: str) -> ast.Pattern:
    module = parse(f"behavior B {{ on {source} {{ }} }}", "t.avm")
    behavior = module.items[0]
    assert isinstance(behavior, BehaviorDef)
    return behavior.clauses[0].pattern


def syntax_error(source: str) -> str:
    with pytest.raises(DiagnosticError) as info:
        parse(source, "t.avm")
    (diagnostic,) = info.value.diagnostics
    return diagnostic.message


def lit(value: object) -> Literal:
    return Literal(value)  # type: ignore[arg-type]


def n(name: str) -> Name:
    return Name(name)


# ---------------------------------------------------------------- items


def test_empty_file_and_comments_only_are_an_empty_module() -> None:
    assert parse("", "t.avm") == Module([])
    assert parse("// nothing\n/* at\n all */  \n", "t.avm") == Module([])


def test_items() -> None:
    source = """
    behavior Counter {
      field count = 0
      field log = ["a", (1, just nothing)]
      on ["inc"] { count += 1 }
      on [x, ..rest] if x > 0 { return rest }
    }
    extern behavior Other;
    fn add(a, b,) { return a + b }
    fn zero() { return 0 }
    main { }
    """
    assert parse(source, "t.avm") == Module(
        [
            BehaviorDef(
                "Counter",
                [
                    FieldDef("count", lit(0)),
                    FieldDef(
                        "log",
                        ListExpr([lit("a"), PairExpr(lit(1), JustExpr(lit(NOTHING)))]),
                    ),
                ],
                [
                    Clause(
                        PList([PLiteral("inc")]),
                        None,
                        Block([Assign("count", lit(1), "+")]),
                    ),
                    Clause(
                        PList([PBind("x")], "rest"),
                        BinOp(">", n("x"), lit(0)),
                        Block([Return(n("rest"))]),
                    ),
                ],
            ),
            ExternBehavior("Other"),
            FunctionDef(
                "add", [Param("a"), Param("b")], Block([Return(BinOp("+", n("a"), n("b")))])
            ),
            FunctionDef("zero", [], Block([Return(lit(0))])),
            MainDef(Block([])),
        ]
    )


def test_fields_must_come_before_clauses() -> None:
    message = syntax_error("behavior B { on _ { } field f = 1 }")
    assert (
        message == "field 'f' comes after a clause: fields must come before the behavior's clauses"
    )


# ---------------------------------------------------------------- statements


def test_let_assign_and_optional_semicolons() -> None:
    assert body("let a = 1 let b = 2; ; a = b") == [
        Let("a", lit(1)),
        Let("b", lit(2)),
        Assign("a", n("b")),
    ]


@pytest.mark.parametrize("op", ["+", "-", "*", "/", "%", "++"])
def test_compound_assignment(op: str) -> None:
    assert body(f"x {op}= 2") == [Assign("x", lit(2), op)]


def test_if_else_if_else() -> None:
    inner = If(n("b"), Block([ExprStmt(lit(2))]), Block([ExprStmt(lit(3))]))
    assert body("if a { 1 } else if b { 2 } else { 3 }") == [
        If(n("a"), Block([ExprStmt(lit(1))]), Block([inner]))
    ]
    assert body("if a { }") == [If(n("a"), Block([]), None)]


def test_loops_break_continue() -> None:
    assert body("while x < 3 { break } for v in xs { continue }") == [
        While(BinOp("<", n("x"), lit(3)), Block([Break()])),
        For("v", n("xs"), Block([Continue()])),
    ]


def test_match_arms_with_guards_and_optional_commas() -> None:
    source = 'match m { ["a", x] if x > 1 => { return x }, _ => { fail "no" } nothing => { } }'
    assert body(source) == [
        Match(
            n("m"),
            [
                MatchArm(
                    PList([PLiteral("a"), PBind("x")]),
                    BinOp(">", n("x"), lit(1)),
                    Block([Return(n("x"))]),
                ),
                MatchArm(PWildcard(), None, Block([Fail(lit("no"))])),
                MatchArm(PLiteral(NOTHING), None, Block([])),
            ],
        )
    ]


def test_return_with_and_without_value() -> None:
    assert body("return") == [Return(None)]
    assert body("return; x") == [Return(None), ExprStmt(n("x"))]
    # `return` takes the expression that follows it, even on the next line.
    assert body("return\nx") == [Return(n("x"))]


def test_atomic_forms() -> None:
    assert body("atomic { x }") == [Atomic(None, Block([ExprStmt(n("x"))]))]
    assert body("atomic under c { } else { y }") == [
        Atomic(n("c"), Block([]), Block([ExprStmt(n("y"))]))
    ]
    assert body("atomic { } else (err) { return err }") == [
        Atomic(None, Block([]), Block([Return(n("err"))]), "err")
    ]


def test_expression_statements_split_and_continue() -> None:
    # A line starting with `(` or `[` continues the previous expression.
    assert body("f\n(1)") == [ExprStmt(Call("f", [lit(1)]))]
    assert body("xs\n[0]") == [ExprStmt(Index(n("xs"), lit(0)))]
    assert body("a\nnot b") == [ExprStmt(n("a")), ExprStmt(Not(n("b")))]


# ---------------------------------------------------------------- expressions


def test_literals() -> None:
    assert expr("42") == lit(42)
    assert expr("1_000_000") == lit(1_000_000)
    assert expr("0x2A") == lit(42)
    assert expr("0xFFFF_FFFF_FFFF_FFFF") == lit(NAT_MAX)
    assert expr("18446744073709551615") == lit(NAT_MAX)
    assert expr("true") == lit(True)
    assert expr("false") == lit(False)
    assert expr("nothing") == lit(NOTHING)
    assert expr("obj:7") == lit(ObjectRef(7))
    assert expr("tx:3") == lit(TxRef(3))


def test_literal_kinds_are_exact() -> None:
    # Python's 1 == True must not make a nat literal equal a bool one.
    assert type(expr("1").value) is int  # type: ignore[union-attr]
    assert type(expr("true").value) is bool  # type: ignore[union-attr]


def test_string_escapes() -> None:
    assert expr(r'"a\"b\\c\nd\te\rf\0g"') == lit('a"b\\c\nd\te\rf\0g')
    assert expr(r'"\u{1F600}\u{41}"') == lit("\U0001f600A")
    assert expr('""') == lit("")


def test_lists_pairs_and_grouping() -> None:
    assert expr("[]") == ListExpr([])
    assert expr("[1, [2], 3,]") == ListExpr([lit(1), ListExpr([lit(2)]), lit(3)])
    assert expr('(1, "a")') == PairExpr(lit(1), lit("a"))
    assert expr("((1))") == lit(1)
    assert expr("(1 + 2) * 3") == BinOp("*", BinOp("+", lit(1), lit(2)), lit(3))


def test_precedence_loosest_to_tightest() -> None:
    source = "a or b and not c == d ++ e + f * just g"
    product = BinOp("*", n("f"), JustExpr(n("g")))
    comparison = BinOp("==", n("c"), BinOp("++", n("d"), BinOp("+", n("e"), product)))
    assert expr(source) == BinOp("or", n("a"), BinOp("and", n("b"), Not(comparison)))


@pytest.mark.parametrize("op", ["==", "!=", "<", "<=", ">", ">="])
def test_comparisons(op: str) -> None:
    assert expr(f"a {op} b") == BinOp(op, n("a"), n("b"))


def test_left_associativity() -> None:
    assert expr("a - b - c") == BinOp("-", BinOp("-", n("a"), n("b")), n("c"))
    assert expr("a / b % c") == BinOp("%", BinOp("/", n("a"), n("b")), n("c"))
    assert expr("a ++ b ++ c") == BinOp("++", BinOp("++", n("a"), n("b")), n("c"))
    assert expr("a or b or c") == BinOp("or", BinOp("or", n("a"), n("b")), n("c"))
    assert expr("a and b and c") == BinOp("and", BinOp("and", n("a"), n("b")), n("c"))


def test_index_and_slices() -> None:
    assert expr("xs[0][1]") == Index(Index(n("xs"), lit(0)), lit(1))
    assert expr("xs[1:2]") == Slice(n("xs"), lit(1), lit(2))
    assert expr("xs[1:]") == Slice(n("xs"), lit(1), None)
    assert expr("xs[:2]") == Slice(n("xs"), None, lit(2))
    assert expr("xs[:]") == Slice(n("xs"), None, None)
    assert expr("f(x)[0]") == Index(Call("f", [n("x")]), lit(0))


def test_calls() -> None:
    assert expr("f()") == Call("f", [])
    assert expr("f(1, 2,)") == Call("f", [lit(1), lit(2)])
    assert expr("call!(o, [])") == Call("call", [n("o"), ListExpr([])], unwrap=True)
    assert expr("unsafe reflect(o)") == Call("reflect", [n("o")], unsafe=True)
    assert expr("unsafe reflect!(o)") == Call("reflect", [n("o")], unwrap=True, unsafe=True)


def test_create_and_context() -> None:
    assert expr("create B") == Create("B", None)
    assert expr("create B under c[0]") == Create("B", Index(n("c"), lit(0)))
    assert expr("create B == self") == BinOp("==", Create("B", None), ContextExpr("self"))
    assert expr("[input, sender]") == ListExpr([ContextExpr("input"), ContextExpr("sender")])


# ---------------------------------------------------------------- patterns


def test_patterns() -> None:
    assert pattern("_") == PWildcard()
    assert pattern("x") == PBind("x")
    assert pattern("42") == PLiteral(42)
    assert pattern('"ping"') == PLiteral("ping")
    assert pattern("true") == PLiteral(True)
    assert pattern("false") == PLiteral(False)
    assert pattern("nothing") == PLiteral(NOTHING)
    assert pattern("[]") == PList([])
    assert pattern("[a, 1,]") == PList([PBind("a"), PLiteral(1)])
    assert pattern("[a, ..rest]") == PList([PBind("a")], "rest")
    assert pattern("[a, .._]") == PList([PBind("a")], "_")
    assert pattern("[..all]") == PList([], "all")
    assert pattern("(a, _)") == PPair(PBind("a"), PWildcard())
    assert pattern("just [just x]") == PJust(PList([PJust(PBind("x"))]))


# ---------------------------------------------------------------- spans


def test_spans_point_at_the_source() -> None:
    module = parse("main {\n  let x = a +\n    b\n}", "s.avm")
    main = module.items[0]
    assert isinstance(main, MainDef)
    let = main.body.stmts[0]
    assert isinstance(let, Let)
    assert let.span == Span("s.avm", 2, 3, 3, 6)
    assert let.value.span == Span("s.avm", 2, 11, 3, 6)
    assert isinstance(let.value, BinOp)
    assert let.value.right.span == Span("s.avm", 3, 5, 3, 6)
    assert main.span == Span("s.avm", 1, 1, 4, 2)


def test_else_if_block_has_the_span_of_its_if() -> None:
    (stmt,) = body("if a { } else if b { }")
    assert isinstance(stmt, If) and stmt.otherwise is not None
    assert stmt.otherwise.span == stmt.otherwise.stmts[0].span


# ---------------------------------------------------------------- nesting


def test_nesting_at_the_limit_parses() -> None:
    # main (depth 1) > block > return > value: the parens nest the rest.
    depth = MAX_NESTING - 3
    source = "main { return " + "[" * depth + "]" * depth + " }"
    parse(source, "t.avm")


def test_nesting_over_the_limit_is_an_error_at_the_deep_node() -> None:
    depth = MAX_NESTING
    source = "main { return " + "[" * depth + "]" * depth + " }"
    with pytest.raises(DiagnosticError) as info:
        parse(source, "t.avm")
    (diagnostic,) = info.value.diagnostics
    assert diagnostic.message == f"program nests too deeply (more than {MAX_NESTING} levels)"
    assert diagnostic.span is not None and diagnostic.span.col > 14


DEEP_INPUTS = {
    "pairs": "main { return " + "(1, " * 5000 + "1" + ")" * 5000 + " }",
    "lists": "main { return " + "[" * 5000 + "]" * 5000 + " }",
    "nots": "main { return " + "not " * 5000 + "x }",
    "ifs": "main { " + "if x { " * 5000 + "}" * 5000 + " }",
    "sum": "main { return " + " + ".join(["1"] * 5000) + " }",
}


@pytest.mark.parametrize("name", sorted(DEEP_INPUTS))
def test_very_deep_input_is_a_clean_error(name: str) -> None:
    message = syntax_error(DEEP_INPUTS[name])
    assert message == f"program nests too deeply (more than {MAX_NESTING} levels)"


def test_grouping_parentheses_do_not_nest() -> None:
    assert expr("(" * 5000 + "1" + ")" * 5000) == lit(1)


def test_very_deep_input_with_a_syntax_error_is_a_clean_error() -> None:
    message = syntax_error("main { return " + "[" * 5000 + " }")
    assert message == "expected an expression or ']', found '}'"


def test_a_recursion_error_anywhere_is_a_clean_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def too_deep(self: AstBuilder, tree: object) -> None:
        raise RecursionError

    monkeypatch.setattr(AstBuilder, "transform", too_deep)
    with pytest.raises(DiagnosticError) as info:
        parse("main { }", "t.avm")
    (diagnostic,) = info.value.diagnostics
    assert (diagnostic.message, diagnostic.span) == (
        "program nests too deeply",
        Span("t.avm", 1, 1),
    )


# ---------------------------------------------------------------- the grammar itself


def test_only_the_documented_conflicts_exist() -> None:
    """`return e`, `NAME (` and `e [` are the only shift/reduce choices (all shifts)."""
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Collect()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        Lark(_grammar_text(), parser="lalr", lexer="basic")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    rules = {r.strip(" *") for r in records if r.startswith(" * ")}
    assert not any("Reduce/Reduce" in r for r in records)
    assert rules == {
        "<stmt : RETURN>",
        "<atom : NAME>",
        "<unary : postfix>",
        "<unary : CREATE NAME UNDER postfix>",
    }


def test_context_examples_each_fail_in_their_own_state() -> None:
    states = context_states(lark_parser())
    assert set(states.values()) == set(CONTEXTS)
    assert len(states) == sum(len(examples) for examples in CONTEXTS.values())


# ---------------------------------------------------------------- the reference


def reference_code_blocks() -> list[str]:
    """The code blocks of docs/language.md written in the language: fenced with no tag
    (shell commands are fenced as ```sh)."""
    text = (Path(__file__).parents[1] / "docs" / "language.md").read_text(encoding="utf-8")
    blocks: list[str] = []
    current: list[str] | None = None
    tagged = False
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            if current is None:
                current, tagged = [], line.strip() != "```"
            else:
                if not tagged:
                    blocks.append("".join(current))
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def test_examples_of_the_language_reference_parse() -> None:
    """Every complete snippet of docs/language.md parses, as a module or as main's body."""
    snippets = reference_code_blocks()
    placeholders = re.compile(r"\.\.\.|<[a-z ]+>|: error:")
    complete = [s for s in snippets if not placeholders.search(s)]
    assert len(complete) >= 4
    for snippet in complete:
        try:
            parse(snippet, "doc.avm")
        except DiagnosticError:
            parse("main {\n" + snippet + "\n}", "doc.avm")


def test_the_first_example_of_the_reference_is_clean() -> None:
    first = reference_code_blocks()[0]
    assert check(parse(first, "doc.avm")) == []


# ---------------------------------------------------------------- the fast lexer


def test_the_builders_lexer_reads_what_larks_reads() -> None:
    """The AST builder reads tokens with its own loop over Lark's lexer tables (a private
    part of Lark): on every program of the repository it must give exactly Lark's tokens,
    so a Lark upgrade that changes those tables fails here, not in users' programs."""
    from program_corpus import programs

    from avmc.ast_builder import _tokens
    from avmc.parser import lark_parser

    parser = lark_parser()
    lexer = parser.parser.lexer
    checked = 0
    for name, text in programs().items():
        expected = [
            (t.type, t.value, t.start_pos, t.line, t.column, t.end_line, t.end_column)
            for t in parser.lex(text)
        ]
        got = [
            (t.type, t.value, t.start_pos, t.line, t.column, t.end_line, t.end_column)
            for t in _tokens(lexer, text)
        ]
        assert got == expected, name
        checked += 1
    assert checked > 300
