"""Build the AST of avmc/ast.py while Lark's LALR parser reduces grammar/avm.lark.

One method per rule alias of the grammar, called with the rule's span and its children (the
children a Lark tree would hold: anonymous tokens dropped, ``_rule``s inlined, ``None`` for
an absent ``[optional]``). No parse tree is built: `AstBuilder.transform` steps through
Lark's LALR table itself, calling a method at each reduction, and the spans come from the
first and last token or node each reduction covers, as Lark's ``propagate_positions`` would
compute them. Text that does not parse raises `NoParse`: Lark's parser explains the error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from itertools import chain
from typing import Any

from lark import Lark, Token
from lark.grammar import Rule
from lark.lexer import BasicLexer
from lark.parsers.lalr_analysis import Shift

from avm_vm.diagnostics import DiagnosticError, Span, error
from avm_vm.values import NOTHING

from . import ast
from .literals import nat_value, ref_value, string_value

# Where a value of the parser's stack starts and ends: line, column, end line, end column.
Bounds = tuple[int, int, int, int]


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


class _Seq:
    """The children of an inlined ``_rule`` (or of a Lark repetition), for its parent."""

    __slots__ = ("bounds", "items")

    def __init__(self, items: list[Any], bounds: Bounds) -> None:
        self.items = items
        self.bounds = bounds


class _Grouped:
    """An expression in grouping parentheses: the node keeps its own span, while the rules
    above it see the parentheses as part of their text (as a Lark tree's meta would)."""

    __slots__ = ("bounds", "value")

    def __init__(self, value: Any, bounds: Bounds) -> None:
        self.value = value
        self.bounds = bounds


def _bounds(value: Any) -> Bounds:
    if isinstance(value, Token):
        return value.line, value.column, value.end_line, value.end_column  # type: ignore[return-value]
    if isinstance(value, (_Seq, _Grouped)):
        return value.bounds
    span = value.span
    return span.line, span.col, span.end_line, span.end_col


def _covered(children: list[Any]) -> Bounds:
    first, last = _bounds(children[0]), _bounds(children[-1])
    return first[0], first[1], last[2], last[3]


# A rule's kept children: (index in the expansion, inline it, placeholders before it).
_Plan = list[tuple[int, bool, int]]


def _plan(rule: Rule) -> tuple[_Plan, int]:
    """Which of a reduction's children its method receives (Lark's own child filter), and
    how many placeholders follow the last one."""
    expansion = rule.expansion
    flags = rule.options.empty_indices
    if flags:
        text = "".join(str(int(flag)) for flag in flags)
        empty = [len(ones) for ones in text.split("0")]
    else:
        empty = [0] * (len(expansion) + 1)
    plan: _Plan = []
    nones = 0
    for i, symbol in enumerate(expansion):
        nones += empty[i]
        if not (symbol.is_term and symbol.filter_out):
            inline = not symbol.is_term and symbol.name.startswith("_")
            plan.append((i, inline, nones))
            nones = 0
    return plan, nones + empty[len(expansion)]


def _arguments(children: list[Any], plan: _Plan, trailing: int) -> list[Any]:
    out: list[Any] = []
    for i, inline, nones in plan:
        if nones:
            out.extend([None] * nones)
        child = children[i]
        if inline:
            out.extend(child.items)
        elif type(child) is _Grouped:
            out.append(child.value)
        else:
            out.append(child)
    if trailing:
        out.extend([None] * trailing)
    return out


class NoParse(Exception):
    """The text does not parse; the tree-building parser explains why."""


@dataclass(frozen=True)
class _Table:
    """A Lark LALR table in a form quick to step through: per state, token or rule name ->
    the next state (a shift or goto, >= 0) or ``~i`` to reduce by ``rules[i]``."""

    states: dict[int, dict[str, int]]
    start: int
    end: int
    rules: list[Rule]
    sizes: list[int]
    origins: list[str]
    keeps_child: list[bool]  # the rule is a `?rule` passing its only child up as it is
    # (top state, state below it, token) -> the top state once every reduction by such a
    # rule that this token triggers is done (they change only the top state): filled as met.
    unit_chains: dict[tuple[int, int, str], int]

    def after_unit_reductions(self, top: int, below: int, kind: str) -> int:
        key = (top, below, kind)
        state = self.unit_chains.get(key)
        if state is None:
            state = top
            action = self.states[state].get(kind)
            while action is not None and action < 0 and self.keeps_child[~action]:
                state = self.states[below][self.origins[~action]]
                action = self.states[state].get(kind)
            self.unit_chains[key] = state
        return state


@cache
def _table(parser: Lark) -> _Table:
    # Lark keeps its LALR table on the parser frontend; the table itself is plain data.
    table = parser.parser.parser._parse_table
    rules = list(parser.rules)
    index = {rule: i for i, rule in enumerate(rules)}
    states = {
        state: {
            name: (target if action is Shift else ~index[target])
            for name, (action, target) in row.items()
        }
        for state, row in table.states.items()
    }
    return _Table(
        states,
        table.start_states["start"],
        table.end_states["start"],
        rules,
        [len(rule.expansion) for rule in rules],
        [str(rule.origin.name) for rule in rules],  # some are Tokens, slower as keys
        [_keeps_child(rule) for rule in rules],
        {},
    )


def _keeps_child(rule: Rule) -> bool:
    """A `?rule` alternative of one symbol, which Lark replaces by that symbol's value."""
    return (
        rule.options.expand1
        and not rule.alias
        and not rule.origin.name.startswith("_")
        and len(rule.expansion) == 1
        and _plan(rule) == ([(0, False, 0)], 0)
    )


def _tokens(lexer: BasicLexer, text: str) -> Iterator[Token]:
    """The tokens of Lark's basic lexer (same types, positions and lexer callbacks), read
    with one loop instead of its per-token layers; raises `NoParse` where it would fail."""
    patterns = lexer.scanner._mres  # Lark's alternations of every terminal, in its order
    callbacks = lexer.callback  # keywords out of NAME, then the checks given to Lark
    ignore, newline = lexer.ignore_types, lexer.newline_types
    pos, line, line_start, end = 0, 1, 0, len(text)
    while pos < end:
        for pattern in patterns:
            found = pattern.match(text, pos)
            if found:
                break
        else:
            raise NoParse
        kind, value = found.lastgroup, found.group()
        start_line, column = line, pos - line_start + 1
        if kind in newline:
            count = value.count("\n")
            if count:
                line += count
                line_start = pos + value.rindex("\n") + 1
        after = pos + len(value)
        if kind not in ignore:
            token = Token(kind, value, pos, start_line, column, line, after - line_start + 1, after)
            yield callbacks[kind](token) if kind in callbacks else token
        elif kind in callbacks:  # an ignored token is still checked
            callbacks[kind](
                Token(kind, value, pos, start_line, column, line, after - line_start + 1, after)
            )
        pos = after


class AstBuilder:
    def __init__(self, filename: str, parser: Lark) -> None:
        self.filename = filename
        self.parser = parser
        # The first error found while building; raised once the whole text has parsed, so a
        # syntax error anywhere is still reported first.
        self.deferred: DiagnosticError | None = None

    def transform(self, source: str) -> ast.Module:
        """The AST of ``source``, built while the LALR automaton of ``parser`` reads its
        tokens; raises `NoParse` where Lark's own parser would raise a syntax error."""
        table = _table(self.parser)
        reduce = [self._reduction(rule) for rule in table.rules]
        states, sizes, origins = table.states, table.sizes, table.origins
        state_stack = [table.start]
        values: list[Any] = []
        end = Token("$END", "")
        for token in chain(_tokens(self.parser.parser.lexer, source), (end,)):
            kind = token.type
            while True:
                action = states[state_stack[-1]].get(kind)
                if action is None:
                    raise NoParse
                if action >= 0:
                    state_stack.append(action)
                    values.append(token)
                    break
                rule = ~action
                build = reduce[rule]
                if build is None:  # `?rule`s passing their only child up: the value stays
                    state_stack[-1] = table.after_unit_reductions(
                        state_stack[-1], state_stack[-2], kind
                    )
                    continue
                size = sizes[rule]
                if size:
                    children = values[-size:]
                    del values[-size:]
                    del state_stack[-size:]
                else:
                    children = []
                values.append(build(children))
                state_stack.append(states[state_stack[-1]][origins[rule]])
                if state_stack[-1] == table.end and token is end:
                    if self.deferred is not None:
                        raise self.deferred
                    return values[-1]
        raise NoParse

    def _reduction(self, rule: Rule) -> Callable[[list[Any]], Any] | None:
        """What reducing by ``rule`` makes of its children; None when it keeps its only
        child as it is."""
        plan, trailing = _plan(rule)
        name = rule.alias or rule.origin.name
        if name.startswith("_"):
            return lambda children: _Seq(_arguments(children, plan, trailing), _covered(children))
        if _keeps_child(rule):
            return None
        if rule.options.expand1 and not rule.alias:
            if len(plan) != 1 or trailing or plan[0][1] or plan[0][2]:
                raise ValueError(f"grammar rule {rule} has no method in the AST builder")
            kept = plan[0][0]

            def group(children: list[Any]) -> _Grouped:
                inner = children[kept]
                value = inner.value if type(inner) is _Grouped else inner
                return _Grouped(value, _covered(children))

            return group
        method = getattr(self, name)
        filename = self.filename

        def build(children: list[Any]) -> Any:
            if not children:
                return method(Span(filename, 1, 1))
            line, col, end_line, end_col = _covered(children)
            span = Span(filename, line, col, end_line, end_col)
            return method(span, *_arguments(children, plan, trailing))

        return build

    def _token_span(self, token: Token) -> Span:
        return Span(self.filename, token.line, token.column, token.end_line, token.end_column)

    # ------------------------------------------------------------ items

    def start(self, span: Span, *items: ast.Item) -> ast.Module:
        return ast.Module(list(items), span)

    def item_behavior(
        self, span: Span, name: Token, *members: ast.FieldDef | ast.Clause
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
        return ast.BehaviorDef(str(name), fields, clauses, span, name_span=self._token_span(name))

    def item_extern(self, span: Span, name: Token) -> ast.ExternBehavior:
        return ast.ExternBehavior(str(name), span, name_span=self._token_span(name))

    def item_fn(self, span: Span, name: Token, *rest: Token | ast.Block) -> ast.FunctionDef:
        *params, body = rest
        return ast.FunctionDef(
            str(name),
            [ast.Param(str(p), self._token_span(p)) for p in params],  # type: ignore[arg-type]
            body,  # type: ignore[arg-type]
            span,
            name_span=self._token_span(name),
        )

    def item_main(self, span: Span, body: ast.Block) -> ast.MainDef:
        return ast.MainDef(body, span)

    def item_test(self, span: Span, name: Token, body: ast.Block) -> ast.TestDef:
        span, name_span = span, self._token_span(name)
        return ast.TestDef(string_value(str(name)), body, span, name_span=name_span)

    def member_field(self, span: Span, name: Token, default: ast.Expr) -> ast.FieldDef:
        return ast.FieldDef(str(name), default, span, name_span=self._token_span(name))

    def member_clause(
        self, span: Span, pattern: ast.Pattern, guard: ast.Expr | None, body: ast.Block
    ) -> ast.Clause:
        return ast.Clause(pattern, guard, body, span)

    # ------------------------------------------------------------ statements

    def block(self, span: Span, *stmts: ast.Stmt) -> ast.Block:
        return ast.Block(list(stmts), span)

    def stmt_let(self, span: Span, name: Token, value: ast.Expr) -> ast.Let:
        return ast.Let(str(name), value, span, name_span=self._token_span(name))

    def stmt_assign(self, span: Span, name: Token, op: Token, value: ast.Expr) -> ast.Assign:
        # "+=" is stored as "+"; a plain "=" has no operator.
        operator = str(op)[:-1] or None
        return ast.Assign(str(name), value, operator, span)

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

    def stmt_for(self, span: Span, var: Token, iterable: ast.Expr, body: ast.Block) -> ast.For:
        return ast.For(str(var), iterable, body, span, name_span=self._token_span(var))

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
        self, span: Span, name: Token | None, kind: Token | None, body: ast.Block
    ) -> _Handler:
        return _Handler(
            str(name) if name is not None else None,
            str(kind) if kind is not None else None,
            body,
            span,
        )

    def stmt_assert(self, span: Span, cond: ast.Expr, message: ast.Expr | None) -> ast.Assert:
        return ast.Assert(cond, message, span)

    def stmt_expect_fail(
        self, span: Span, kind: Token | None, message: Token | None, body: ast.Block
    ) -> ast.ExpectFail:
        expected = None if message is None else string_value(str(message))
        kind_name = None if kind is None else str(kind)
        return ast.ExpectFail(kind_name, expected, body, span)

    def stmt_expr(self, span: Span, expr: ast.Expr) -> ast.ExprStmt:
        return ast.ExprStmt(expr, span)

    # ------------------------------------------------------------ expressions

    def expr_binop(self, span: Span, left: ast.Expr, op: Token, right: ast.Expr) -> ast.BinOp:
        return ast.BinOp(str(op), left, right, span)

    def expr_not(self, span: Span, operand: ast.Expr) -> ast.Not:
        return ast.Not(operand, span)

    def expr_just(self, span: Span, value: ast.Expr) -> ast.JustExpr:
        return ast.JustExpr(value, span)

    def expr_create(self, span: Span, name: Token, controller: ast.Expr | None) -> ast.Create:
        return ast.Create(str(name), controller, span, name_span=self._token_span(name))

    def expr_index(self, span: Span, base: ast.Expr, index: ast.Expr) -> ast.Index:
        return ast.Index(base, index, span)

    def expr_slice(
        self, span: Span, base: ast.Expr, start: ast.Expr | None, end: ast.Expr | None
    ) -> ast.Slice:
        return ast.Slice(base, start, end, span)

    def expr_call(self, span: Span, name: Token, bang: Token | None, *args: ast.Expr) -> ast.Call:
        span, name_span = span, self._token_span(name)
        return ast.Call(str(name), list(args), bang is not None, False, span, name_span=name_span)

    def expr_unsafe_call(
        self, span: Span, name: Token, bang: Token | None, *args: ast.Expr
    ) -> ast.Call:
        span, name_span = span, self._token_span(name)
        return ast.Call(str(name), list(args), bang is not None, True, span, name_span=name_span)

    def expr_name(self, span: Span, name: Token) -> ast.Name:
        return ast.Name(str(name), span)

    def expr_nat(self, span: Span, token: Token) -> ast.Literal:
        return ast.Literal(nat_value(str(token)), span)

    def expr_string(self, span: Span, token: Token) -> ast.Literal:
        return ast.Literal(string_value(str(token)), span)

    def expr_objref(self, span: Span, token: Token) -> ast.Literal:
        return ast.Literal(ref_value(str(token)), span)

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

    def pat_name(self, span: Span, name: Token) -> ast.PWildcard | ast.PBind:
        if name == "_":
            return ast.PWildcard(span)
        return ast.PBind(str(name), span)

    def pat_nat(self, span: Span, token: Token) -> ast.PLiteral:
        return ast.PLiteral(nat_value(str(token)), span)

    def pat_string(self, span: Span, token: Token) -> ast.PLiteral:
        return ast.PLiteral(string_value(str(token)), span)

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

    def pat_rest(self, span: Span, name: Token) -> _Rest:
        return _Rest(str(name), span)
