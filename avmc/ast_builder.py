"""Build the AST of avmc/ast.py while Lark's LALR parser reduces grammar/avm.lark.

One method per rule alias of the grammar, called with the rule's span and its children (the
children a Lark tree would hold: anonymous tokens dropped, ``_rule``s inlined, ``None`` for
an absent ``[optional]``). No parse tree is built: `AstBuilder.transform` steps through
Lark's LALR table itself, with a reduction generated for each rule (avmc/lalr_driver.py)
calling the rule's method, and the spans come from the first and last token or node each
reduction covers, as Lark's ``propagate_positions`` would compute them. Tokens are Lark's,
read by one regular expression scan (avmc/scanner.py) into plain tuples. Text that does not
parse raises `NoParse`: Lark's parser explains the error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache, partial
from typing import Any, NamedTuple

from lark import Lark, Token
from lark.lexer import BasicLexer

from avm_vm.diagnostics import DiagnosticError, Span, error
from avm_vm.values import NOTHING

from . import ast
from .lalr_driver import Driver, NoParse, load
from .literals import nat_value, ref_value, string_value
from .scanner import Scanner, build_scanner

TEXT = 5  # where a token's tuple holds its text


class Lexeme(NamedTuple):
    """What a token's tuple holds: Lark's token fields (a Lark `Token` costs several times
    as much to make), its bounds first. The builder reads plain tuples of these fields."""

    line: int
    column: int
    end_line: int
    end_column: int
    type: str
    value: str
    start_pos: int


@dataclass
class _Rest:
    """The ``..name`` tail of a list pattern, until pat_list takes it."""

    name: str
    span: Span


@dataclass
class _Handler:
    """The ``else (error, kind) { ... }`` of an atomic block, until stmt_atomic takes it."""

    error_name: str | None
    kind_name: str | None
    body: ast.Block
    span: Span


_scanner: Callable[[BasicLexer], Scanner] = cache(build_scanner)


def _tokens(lexer: BasicLexer, text: str) -> Iterator[Lexeme]:
    """The tokens of Lark's basic lexer (same types, positions and lexer callbacks), read
    with one regular expression scan instead of its per-token layers; raises `NoParse`
    where it would fail."""
    return map(Lexeme._make, _token_tuples(lexer, text))


def _token_tuples(lexer: BasicLexer, text: str) -> Iterator[tuple[Any, ...]]:
    """`_tokens` as plain tuples (quicker to make), in `Lexeme`'s order."""
    scanner = _scanner(lexer)
    # A lexeme's type depends on its text alone (which terminal matches it first, then
    # Lark's callbacks: keywords out of NAME, the checks given to Lark), so each distinct
    # text is looked at once, where it first appears. "" stands for a type that takes the
    # long way: ignored, or a lexeme that may span lines (`slow` holds its type).
    types: dict[str, str] = {}
    slow: dict[str, str] = {}
    ignore, newline = lexer.ignore_types, lexer.newline_types
    # The offset of the current line's first character, less one: a column is pos - before.
    pos, line, before = 0, 1, -1
    for blank, value in scanner.pairs.findall(text):
        if blank:
            if "\n" in blank:
                line += blank.count("\n")
                before = pos + blank.rindex("\n")
            pos += len(blank)
        kind = types.get(value)
        if kind is None:
            kind = _lexeme_type(lexer, scanner, value, pos, line, pos - before)
            if kind in ignore or (kind in newline and "\n" in value):
                slow[value] = kind
                kind = ""
            types[value] = kind
        column = pos - before
        if kind:
            yield (line, column, line, column + len(value), kind, value, pos)
        else:
            kind, start_line = slow[value], line
            if kind in newline and "\n" in value:
                line += value.count("\n")
                before = pos + value.rindex("\n")
            if kind not in ignore:
                yield (start_line, column, line, pos + len(value) - before, kind, value, pos)
        pos += len(value)
    if not scanner.blanks.fullmatch(text, pos):
        raise NoParse


def _lexeme_type(
    lexer: BasicLexer, scanner: Scanner, value: str, pos: int, line: int, column: int
) -> str:
    """The type Lark's lexer gives ``value`` where it first appears, at ``pos``; raises
    `NoParse` if no terminal matches there, or what a callback raises."""
    found = scanner.token.match(value)
    if found is None or found.end() != len(value):
        raise NoParse
    kind = scanner.kinds[found.lastindex]
    callback = lexer.callback.get(kind)
    if callback is None:
        return kind
    lines = value.count("\n") if kind in lexer.newline_types else 0
    end_column = len(value) - value.rindex("\n") if lines else column + len(value)
    token = Token(kind, value, pos, line, column, line + lines, end_column, pos + len(value))
    return str(callback(token).type)


_SPAN_FIELDS = ("file", "line", "col", "end_line", "end_col")


def _quick_span(
    filename: str, line: int, col: int, end_line: int | None, end_col: int | None
) -> Span:
    span = object.__new__(Span)
    fields = span.__dict__  # made on first use, sharing its keys with every other span's
    fields["file"] = filename
    fields["line"] = line
    fields["col"] = col
    fields["end_line"] = end_line
    fields["end_col"] = end_col
    return span


@cache
def _quick_spans() -> bool:
    """Whether a span can be made without `Span`'s own ``__init__``, which sets its five
    frozen fields one call at a time (a parse makes a span per node, and made that way a
    span cost more than its node): by writing them into its dictionary, which needs `Span`
    to be the plain frozen dataclass of these fields."""
    try:
        works = _quick_span("f", 1, 2, 3, 4) == Span("f", 1, 2, 3, 4)
    except (AttributeError, TypeError):  # a Span with slots has no __dict__
        works = False
    return works and tuple(f.name for f in dataclasses.fields(Span)) == _SPAN_FIELDS


def _span_maker(filename: str) -> Callable[[int, int, int | None, int | None], Span]:
    """Spans in ``filename``, made quickly when `_quick_spans` allows."""
    return partial(_quick_span if _quick_spans() else Span, filename)


@cache
def _driver(parser: Lark) -> Driver:
    return load(parser, _quick_spans())


class AstBuilder:
    def __init__(self, filename: str, parser: Lark) -> None:
        self.filename = filename
        self.parser = parser
        # The first error found while building; raised once the whole text has parsed, so a
        # syntax error anywhere is still reported first.
        self.deferred: DiagnosticError | None = None
        # The height of the parse counted in node-making reductions (tokens 0, a node one
        # more than its tallest child): the AST is at most twice as deep (an `else if` adds
        # a block), which spares most programs a walk.
        self.height = 0
        # Literal lexeme -> its value (a lexeme's kind, so how to read it, follows from its
        # text): a literal written many times is read once.
        self._literals: dict[str, Any] = {}
        self._span = _span_maker(filename)

    def transform(self, source: str) -> ast.Module:
        """The AST of ``source``, built while the LALR automaton of ``parser`` reads its
        tokens; raises `NoParse` where Lark's own parser would raise a syntax error."""
        driver = _driver(self.parser)
        reducers = driver.reducers(
            self, self._span, driver.gotos, self.filename, object.__new__, Span
        )
        actions, chains, accept = driver.actions, driver.chains, driver.accept
        count = len(actions)
        state = driver.start
        stack: list[Any] = [state, None, None]  # (state, value, bounds) triples
        # A token with no action in the state: the text does not parse. (The KeyError is
        # looked for once around the loop, not at each step.)
        try:
            for token in _token_tuples(self.parser.parser.lexer, source):
                kind = token[4]  # its type
                while True:
                    action = actions[state][kind]
                    if action < 0:
                        state = reducers[~action](stack)  # type: ignore[misc]
                    elif action < count:
                        state = action
                        stack += (state, token, token)
                        break
                    else:  # a chain of reductions passing the top value up
                        state = stack[-3] = chains[action][stack[-6]]
            while True:  # the end of the text
                action = actions[state]["$END"]
                if count > action >= 0:
                    raise NoParse
                if action < 0:
                    state = reducers[~action](stack)  # type: ignore[misc]
                    if state == accept:
                        return self._accepted(stack[-2], stack[-1][4])
                else:
                    state = stack[-3] = chains[action][stack[-6]]
        except KeyError:
            raise NoParse from None

    def _accepted(self, module: ast.Module, height: int) -> ast.Module:
        if self.deferred is not None:
            raise self.deferred
        self.height = height
        return module

    def _literal(self, read: Callable[[str], Any], token: Lexeme) -> Any:
        text = token[TEXT]
        value = self._literals.get(text)
        if value is None:
            value = self._literals[text] = read(text)
        return value

    def _token_span(self, token: Lexeme) -> Span:
        return self._span(token[0], token[1], token[2], token[3])

    # ------------------------------------------------------------ items

    def start(self, span: Span, *items: ast.Item) -> ast.Module:
        return ast.Module(list(items), span)

    def item_behavior(
        self, span: Span, name: Lexeme, *members: ast.FieldDef | ast.Clause
    ) -> ast.BehaviorDef:
        fields: list[ast.FieldDef] = []
        clauses: list[ast.Clause] = []
        for member in members:
            if isinstance(member, ast.Clause):
                clauses.append(member)
            elif clauses:
                if self.deferred is None:
                    self.deferred = DiagnosticError(
                        error(
                            f"field '{member.name}' comes after a clause: "
                            "fields must come before the behavior's clauses",
                            member.span,
                        )
                    )
            else:
                fields.append(member)
        return ast.BehaviorDef(name[TEXT], fields, clauses, span, name_span=self._token_span(name))

    def item_extern(self, span: Span, name: Lexeme) -> ast.ExternBehavior:
        return ast.ExternBehavior(name[TEXT], span, name_span=self._token_span(name))

    def item_fn(self, span: Span, name: Lexeme, *rest: Lexeme | ast.Block) -> ast.FunctionDef:
        *params, body = rest
        return ast.FunctionDef(
            name[TEXT],
            [ast.Param(p[TEXT], self._token_span(p)) for p in params],  # type: ignore[arg-type]
            body,  # type: ignore[arg-type]
            span,
            name_span=self._token_span(name),
        )

    def item_main(self, span: Span, body: ast.Block) -> ast.MainDef:
        return ast.MainDef(body, span)

    def item_test(self, span: Span, name: Lexeme, body: ast.Block) -> ast.TestDef:
        span, name_span = span, self._token_span(name)
        return ast.TestDef(string_value(name[TEXT]), body, span, name_span=name_span)

    def member_field(self, span: Span, name: Lexeme, default: ast.Expr) -> ast.FieldDef:
        return ast.FieldDef(name[TEXT], default, span, name_span=self._token_span(name))

    def member_clause(
        self, span: Span, pattern: ast.Pattern, guard: ast.Expr | None, body: ast.Block
    ) -> ast.Clause:
        return ast.Clause(pattern, guard, body, span)

    # ------------------------------------------------------------ statements

    def block(self, span: Span, *stmts: ast.Stmt) -> ast.Block:
        return ast.Block(list(stmts), span)

    def stmt_let(self, span: Span, name: Lexeme, value: ast.Expr) -> ast.Let:
        return ast.Let(name[TEXT], value, span, name_span=self._token_span(name))

    def stmt_assign(self, span: Span, name: Lexeme, op: Lexeme, value: ast.Expr) -> ast.Assign:
        # "+=" is stored as "+"; a plain "=" has no operator.
        operator = op[TEXT][:-1] or None
        return ast.Assign(name[TEXT], value, operator, span)

    def stmt_if(
        self,
        span: Span,
        cond: ast.Expr,
        then: ast.Block,
        otherwise: ast.Block | ast.If | None,
    ) -> ast.If:
        if isinstance(otherwise, ast.If):
            otherwise = ast.Block([otherwise], otherwise.span)
        return ast.If(cond, then, otherwise, span)

    def stmt_while(self, span: Span, cond: ast.Expr, body: ast.Block) -> ast.While:
        return ast.While(cond, body, span)

    def stmt_for(self, span: Span, var: Lexeme, iterable: ast.Expr, body: ast.Block) -> ast.For:
        return ast.For(var[TEXT], iterable, body, span, name_span=self._token_span(var))

    def stmt_match(self, span: Span, subject: ast.Expr, *arms: ast.MatchArm) -> ast.Match:
        return ast.Match(subject, list(arms), span)

    def match_arm(
        self, span: Span, pattern: ast.Pattern, guard: ast.Expr | None, body: ast.Block
    ) -> ast.MatchArm:
        return ast.MatchArm(pattern, guard, body, span)

    def stmt_return(self, span: Span, value: ast.Expr | None) -> ast.Return:
        return ast.Return(value, span)

    def stmt_break(self, span: Span) -> ast.Break:
        return ast.Break(span)

    def stmt_continue(self, span: Span) -> ast.Continue:
        return ast.Continue(span)

    def stmt_fail(self, span: Span, message: ast.Expr) -> ast.Fail:
        return ast.Fail(message, span)

    def stmt_atomic(
        self,
        span: Span,
        controller: ast.Expr | None,
        body: ast.Block,
        handler: _Handler | None,
    ) -> ast.Atomic:
        if handler is None:
            return ast.Atomic(controller, body, None, None, span, None)
        return ast.Atomic(
            controller, body, handler.body, handler.error_name, span, handler.kind_name
        )

    def atomic_handler(
        self, span: Span, name: Lexeme | None, kind: Lexeme | None, body: ast.Block
    ) -> _Handler:
        return _Handler(
            name[TEXT] if name is not None else None,
            kind[TEXT] if kind is not None else None,
            body,
            span,
        )

    def stmt_assert(self, span: Span, cond: ast.Expr, message: ast.Expr | None) -> ast.Assert:
        return ast.Assert(cond, message, span)

    def stmt_expect_fail(
        self, span: Span, kind: Lexeme | None, message: Lexeme | None, body: ast.Block
    ) -> ast.ExpectFail:
        expected = None if message is None else string_value(message[TEXT])
        kind_name = None if kind is None else kind[TEXT]
        return ast.ExpectFail(kind_name, expected, body, span)

    def stmt_expr(self, span: Span, expr: ast.Expr) -> ast.ExprStmt:
        return ast.ExprStmt(expr, span)

    # ------------------------------------------------------------ expressions

    def expr_binop(self, span: Span, left: ast.Expr, op: Lexeme, right: ast.Expr) -> ast.BinOp:
        return ast.BinOp(op[TEXT], left, right, span)

    def expr_not(self, span: Span, operand: ast.Expr) -> ast.Not:
        return ast.Not(operand, span)

    def expr_just(self, span: Span, value: ast.Expr) -> ast.JustExpr:
        return ast.JustExpr(value, span)

    def expr_create(self, span: Span, name: Lexeme, controller: ast.Expr | None) -> ast.Create:
        return ast.Create(name[TEXT], controller, span, name_span=self._token_span(name))

    def expr_index(self, span: Span, base: ast.Expr, index: ast.Expr) -> ast.Index:
        return ast.Index(base, index, span)

    def expr_slice(
        self, span: Span, base: ast.Expr, start: ast.Expr | None, end: ast.Expr | None
    ) -> ast.Slice:
        return ast.Slice(base, start, end, span)

    def expr_call(self, span: Span, name: Lexeme, bang: Lexeme | None, *args: ast.Expr) -> ast.Call:
        span, name_span = span, self._token_span(name)
        return ast.Call(name[TEXT], list(args), bang is not None, False, span, name_span=name_span)

    def expr_unsafe_call(
        self, span: Span, name: Lexeme, bang: Lexeme | None, *args: ast.Expr
    ) -> ast.Call:
        span, name_span = span, self._token_span(name)
        return ast.Call(name[TEXT], list(args), bang is not None, True, span, name_span=name_span)

    def expr_name(self, span: Span, name: Lexeme) -> ast.Name:
        return ast.Name(name[TEXT], span)

    def expr_nat(self, span: Span, token: Lexeme) -> ast.Literal:
        return ast.Literal(self._literal(nat_value, token), span)

    def expr_string(self, span: Span, token: Lexeme) -> ast.Literal:
        return ast.Literal(self._literal(string_value, token), span)

    def expr_objref(self, span: Span, token: Lexeme) -> ast.Literal:
        return ast.Literal(self._literal(ref_value, token), span)

    expr_txref = expr_objref

    def expr_true(self, span: Span) -> ast.Literal:
        return ast.Literal(True, span)

    def expr_false(self, span: Span) -> ast.Literal:
        return ast.Literal(False, span)

    def expr_nothing(self, span: Span) -> ast.Literal:
        return ast.Literal(NOTHING, span)

    def expr_self(self, span: Span) -> ast.ContextExpr:
        return ast.ContextExpr("self", span)

    def expr_input(self, span: Span) -> ast.ContextExpr:
        return ast.ContextExpr("input", span)

    def expr_sender(self, span: Span) -> ast.ContextExpr:
        return ast.ContextExpr("sender", span)

    def expr_list(self, span: Span, *items: ast.Expr) -> ast.ListExpr:
        return ast.ListExpr(list(items), span)

    def expr_pair(self, span: Span, first: ast.Expr, second: ast.Expr) -> ast.PairExpr:
        return ast.PairExpr(first, second, span)

    # ------------------------------------------------------------ patterns

    def pat_name(self, span: Span, name: Lexeme) -> ast.PWildcard | ast.PBind:
        if name[TEXT] == "_":
            return ast.PWildcard(span)
        return ast.PBind(name[TEXT], span)

    def pat_nat(self, span: Span, token: Lexeme) -> ast.PLiteral:
        return ast.PLiteral(self._literal(nat_value, token), span)

    def pat_string(self, span: Span, token: Lexeme) -> ast.PLiteral:
        return ast.PLiteral(self._literal(string_value, token), span)

    def pat_true(self, span: Span) -> ast.PLiteral:
        return ast.PLiteral(True, span)

    def pat_false(self, span: Span) -> ast.PLiteral:
        return ast.PLiteral(False, span)

    def pat_nothing(self, span: Span) -> ast.PLiteral:
        return ast.PLiteral(NOTHING, span)

    def pat_just(self, span: Span, inner: ast.Pattern) -> ast.PJust:
        return ast.PJust(inner, span)

    def pat_pair(self, span: Span, first: ast.Pattern, second: ast.Pattern) -> ast.PPair:
        return ast.PPair(first, second, span)

    def pat_list(self, span: Span, *items: ast.Pattern | _Rest) -> ast.PList:
        rest = items[-1].name if items and isinstance(items[-1], _Rest) else None
        patterns = [p for p in items if not isinstance(p, _Rest)]
        return ast.PList(patterns, rest, span)  # type: ignore[arg-type]

    def pat_rest(self, span: Span, name: Lexeme) -> _Rest:
        return _Rest(name[TEXT], span)
