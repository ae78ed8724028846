"""Build the AST of avmc/ast.py while Lark's LALR parser reduces grammar/avm.lark.

One method per rule alias of the grammar, called with the rule's span and its children (the
children a Lark tree would hold: anonymous tokens dropped, ``_rule``s inlined, ``None`` for
an absent ``[optional]``). No parse tree is built: `AstBuilder.transform` steps through
Lark's LALR table itself, calling a method at each reduction, and the spans come from the
first and last token or node each reduction covers, as Lark's ``propagate_positions`` would
compute them. Tokens are Lark's, read by one regular expression (avmc/scanner.py) into plain
tuples. Text that does not parse raises `NoParse`: Lark's parser explains the error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from itertools import chain
from typing import Any, NamedTuple

from lark import Lark, Token
from lark.grammar import Rule
from lark.lexer import BasicLexer
from lark.parsers.lalr_analysis import Shift

from avm_vm.diagnostics import DiagnosticError, Span, error
from avm_vm.values import NOTHING

from . import ast
from .literals import nat_value, ref_value, string_value
from .scanner import Scanner, build_scanner

# Where a value of the parser's stack starts and ends: line, column, end line, end column
# (a `Lexeme` begins with its own four).
Bounds = tuple[Any, ...]


class Lexeme(NamedTuple):
    """A token as the AST builder reads it: Lark's token fields, in a plain tuple (a Lark
    `Token` costs several times as much to make), its bounds first."""

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


# The bounds of an empty reduction's value (its span is the file's first position).
_NO_BOUNDS = (1, 1, None, None)

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


def _picker(plan: _Plan, trailing: int, size: int) -> Callable[[list[Any]], list[Any]]:
    """What a reduction's method receives of its children: an inlined ``_rule``'s children
    (a list) spliced in, ``None`` for each absent ``[optional]``."""
    if trailing or any(inline or nones for _, inline, nones in plan):
        if plan and plan[0][1] and not plan[0][2]:
            head, rest = plan[0][0], plan[1:]
            return lambda children: _arguments(children, rest, trailing, head)
        return lambda children: _arguments(children, plan, trailing, None)
    kept = [i for i, _, _ in plan]
    if kept == list(range(size)):
        return _whole
    return lambda children: [children[i] for i in kept]


def _whole(children: list[Any]) -> list[Any]:
    return children


def _arguments(children: list[Any], plan: _Plan, trailing: int, head: int | None) -> list[Any]:
    """The children of ``plan``; when ``head`` is the index of an inlined child that comes
    first, its list is extended in place (every list on the parser's stack is new and held
    nowhere else), so a long repetition stays linear."""
    out = [] if head is None else children[head]
    for i, inline, nones in plan:
        if nones:
            out.extend([None] * nones)
        if inline:
            out.extend(children[i])
        else:
            out.append(children[i])
    if trailing:
        out.extend([None] * trailing)
    return out


class NoParse(Exception):
    """The text does not parse; the tree-building parser explains why."""


@dataclass(frozen=True)
class _Table:
    """A Lark LALR table in a form quick to step through: per state, token or rule name ->
    the next state (a shift or goto, >= 0) or ``~i`` to reduce by ``rules[i]``."""

    states: list[dict[str, int]]  # indexed by state number
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
    rows = table.states
    if sorted(rows) != list(range(len(rows))):
        raise ValueError("Lark's LALR states are not numbered 0 .. n-1")
    states = [
        {
            name: (target if action is Shift else ~index[target])
            for name, (action, target) in rows[state].items()
        }
        for state in range(len(rows))
    ]
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


def _makes_node(rule: Rule) -> bool:
    """Whether reducing by ``rule`` calls a method (not an inlined `_rule`, a `?rule`
    passing its child up, or grouping parentheses)."""
    name = rule.alias or rule.origin.name
    return not name.startswith("_") and not (rule.options.expand1 and not rule.alias)


_scanner: Callable[[BasicLexer], Scanner] = cache(build_scanner)


def _tokens(lexer: BasicLexer, text: str) -> Iterator[Lexeme]:
    """The tokens of Lark's basic lexer (same types, positions and lexer callbacks), read
    with one regular expression scan instead of its per-token layers; raises `NoParse`
    where it would fail."""
    scanner = _scanner(lexer)
    kinds = scanner.kinds
    callbacks = lexer.callback  # keywords out of NAME, then the checks given to Lark
    ignore, newline = lexer.ignore_types, lexer.newline_types
    # Kinds read with nothing more to do than make the token.
    plain = frozenset(kinds) - callbacks.keys() - ignore - newline
    # A callback's verdict depends only on the lexeme (a keyword's type, or a check that
    # passed), so each distinct one is put to Lark's callback once, as a Lark token.
    verdicts: dict[str, dict[str, str]] = {kind: {} for kind in callbacks}
    # Those of the kinds with a callback that hold no newline and are not ignored (names,
    # numbers: half the tokens), which skip the line and ignore bookkeeping.
    one_line = {kind: verdicts[kind] for kind in callbacks.keys() - ignore - newline}
    make = tuple.__new__
    pos, line, line_start = 0, 1, 0
    for found in scanner.token.finditer(text):
        before, start = found.span(1)
        if before != pos:
            raise NoParse
        if start != pos:  # blanks before the token
            count = text.count("\n", pos, start)
            if count:
                line += count
                line_start = text.rindex("\n", pos, start) + 1
        kind, pos = kinds[found.lastindex], found.end()
        value = text[start:pos]
        column = start - line_start + 1
        if kind in plain:
            yield make(Lexeme, (line, column, line, column + len(value), kind, value, start))
            continue
        seen = one_line.get(kind)
        if seen is not None:
            verdict = seen.get(value)
            if verdict is None:
                token = Token(kind, value, start, line, column, line, column + len(value), pos)
                verdict = seen[value] = callbacks[kind](token).type
            if verdict not in ignore:
                yield make(Lexeme, (line, column, line, column + len(value), verdict, value, start))
            continue
        start_line = line
        if kind in newline:
            count = value.count("\n")
            if count:
                line += count
                line_start = start + value.rindex("\n") + 1
        seen = verdicts.get(kind)
        if seen is not None:
            verdict = seen.get(value)
            if verdict is None:
                token = Token(
                    kind, value, start, start_line, column, line, pos - line_start + 1, pos
                )
                verdict = seen[value] = callbacks[kind](token).type
            kind = verdict
        if kind not in ignore:
            yield make(Lexeme, (start_line, column, line, pos - line_start + 1, kind, value, start))
    if not scanner.blanks.fullmatch(text, pos):
        raise NoParse


_SPAN_FIELDS = ("file", "line", "col", "end_line", "end_col")


def _span_maker(filename: str) -> Callable[[int, int, int | None, int | None], Span]:
    """Spans in ``filename`` made without `Span`'s own ``__init__``, which sets its five
    frozen fields one call at a time (a parse makes a span per node, and made that way a
    span cost more than its node). Falls back to that ``__init__`` if `Span` is not the
    plain frozen dataclass of these fields this relies on."""
    new, assign = object.__new__, object.__setattr__

    def make(line: int, col: int, end_line: int | None, end_col: int | None) -> Span:
        span = new(Span)
        assign(
            span,
            "__dict__",
            {"file": filename, "line": line, "col": col, "end_line": end_line, "end_col": end_col},
        )
        return span

    try:
        works = make(1, 2, 3, 4) == Span(filename, 1, 2, 3, 4)
    except (AttributeError, TypeError):  # a Span with slots has no __dict__
        works = False
    if works and tuple(f.name for f in dataclasses.fields(Span)) == _SPAN_FIELDS:
        return make
    return lambda line, col, end_line, end_col: Span(filename, line, col, end_line, end_col)


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
        self._span = _span_maker(filename)

    def transform(self, source: str) -> ast.Module:
        """The AST of ``source``, built while the LALR automaton of ``parser`` reads its
        tokens; raises `NoParse` where Lark's own parser would raise a syntax error."""
        table = _table(self.parser)
        # Per rule: what reducing by it makes, how many values it takes, the rule it makes
        # (for the goto), the level it adds (only a reduction that makes a node does, not an
        # inlined `_rule` or a group), and the method to call with the span and the children
        # as they are, when that is all it does (one call fewer than through the builder).
        rules = [
            (self._reduction(rule), size, origin, int(_makes_node(rule)), self._direct(rule))
            for rule, size, origin in zip(table.rules, table.sizes, table.origins, strict=True)
        ]
        span = self._span
        states, accept = table.states, table.end
        unit_chains, after_unit_reductions = table.unit_chains, table.after_unit_reductions
        state = table.start
        state_stack = [state]
        values: list[Any] = []
        # Per value: its bounds (a group's include its parentheses, which its node's span
        # leaves out, as a Lark tree's meta would) and its height.
        bounds: list[Bounds] = []
        heights: list[int] = []
        end = Lexeme(1, 1, 1, 1, "$END", "", 0)
        for token in chain(_tokens(self.parser.parser.lexer, source), (end,)):
            kind = token[4]  # its type
            while True:
                action = states[state].get(kind)
                if action is None:
                    raise NoParse
                if action >= 0:
                    state = action
                    state_stack.append(state)
                    values.append(token)
                    bounds.append(token)
                    heights.append(0)
                    break
                build, size, origin, level, method = rules[~action]
                if build is None:  # `?rule`s passing their only child up: the value stays
                    key = (state, state_stack[-2], kind)
                    state = unit_chains.get(key)
                    if state is None:
                        state = after_unit_reductions(*key)
                    state_stack[-1] = state
                    continue
                if size == 1:  # the commonest: the value is replaced where it stands
                    b = bounds[-1]  # and so are its bounds
                    if method is None:
                        bounds[-1] = covered = (b[0], b[1], b[2], b[3])
                        values[-1] = value = build([values[-1]], covered)
                    else:
                        values[-1] = value = method(span(b[0], b[1], b[2], b[3]), values[-1])
                    heights[-1] = height = heights[-1] + level
                    state = state_stack[-1] = states[state_stack[-2]][origin]
                    if token is end and state == accept:
                        return self._accepted(value, height)
                    continue
                if size:
                    children = values[-size:]
                    del values[-size:]
                    del state_stack[-size:]
                    first, last = bounds[-size], bounds[-1]
                    covered = (first[0], first[1], last[2], last[3])
                    del bounds[-size:]
                    height = max(heights[-size:]) + level
                    del heights[-size:]
                else:
                    children, covered, height = [], _NO_BOUNDS, level
                if method is None:
                    values.append(build(children, covered))
                else:
                    values.append(method(span(*covered), *children))
                bounds.append(covered)
                heights.append(height)
                state = states[state_stack[-1]][origin]
                state_stack.append(state)
                if token is end and state == accept:
                    return self._accepted(values[-1], height)
        raise NoParse

    def _accepted(self, module: ast.Module, height: int) -> ast.Module:
        if self.deferred is not None:
            raise self.deferred
        self.height = height
        return module

    def _reduction(self, rule: Rule) -> Callable[[list[Any], Bounds], Any] | None:
        """What reducing by ``rule`` makes of its children and their bounds; None when it
        keeps its only child as it is."""
        plan, trailing = _plan(rule)
        pick = _picker(plan, trailing, len(rule.expansion))
        if not _makes_node(rule):
            if _keeps_child(rule):
                return None
            if (rule.alias or rule.origin.name).startswith("_"):
                return lambda children, covered: pick(children)
            if len(plan) != 1 or trailing or plan[0][1] or plan[0][2]:
                raise ValueError(f"grammar rule {rule} has no method in the AST builder")
            kept = plan[0][0]
            return lambda children, covered: children[kept]
        method = getattr(self, rule.alias or rule.origin.name)
        span = self._span
        if not rule.expansion:
            return lambda children, covered: method(span(1, 1, None, None))
        # (When ``pick`` is `_whole`, `transform` calls the method itself: see `_direct`.)
        return lambda children, covered: method(span(*covered), *pick(children))

    def _direct(self, rule: Rule) -> Callable[..., Any] | None:
        """The method reducing by ``rule`` calls with its span and all its children, in
        order, if that is what the reduction does."""
        if not rule.expansion or not _makes_node(rule):
            return None
        plan, trailing = _plan(rule)
        if _picker(plan, trailing, len(rule.expansion)) is not _whole:
            return None
        return getattr(self, rule.alias or rule.origin.name)

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
        return ast.BehaviorDef(name.value, fields, clauses, span, name_span=self._token_span(name))

    def item_extern(self, span: Span, name: Lexeme) -> ast.ExternBehavior:
        return ast.ExternBehavior(name.value, span, name_span=self._token_span(name))

    def item_fn(self, span: Span, name: Lexeme, *rest: Lexeme | ast.Block) -> ast.FunctionDef:
        *params, body = rest
        return ast.FunctionDef(
            name.value,
            [ast.Param(p.value, self._token_span(p)) for p in params],  # type: ignore[arg-type]
            body,  # type: ignore[arg-type]
            span,
            name_span=self._token_span(name),
        )

    def item_main(self, span: Span, body: ast.Block) -> ast.MainDef:
        return ast.MainDef(body, span)

    def item_test(self, span: Span, name: Lexeme, body: ast.Block) -> ast.TestDef:
        span, name_span = span, self._token_span(name)
        return ast.TestDef(string_value(name.value), body, span, name_span=name_span)

    def member_field(self, span: Span, name: Lexeme, default: ast.Expr) -> ast.FieldDef:
        return ast.FieldDef(name.value, default, span, name_span=self._token_span(name))

    def member_clause(
        self, span: Span, pattern: ast.Pattern, guard: ast.Expr | None, body: ast.Block
    ) -> ast.Clause:
        return ast.Clause(pattern, guard, body, span)

    # ------------------------------------------------------------ statements

    def block(self, span: Span, *stmts: ast.Stmt) -> ast.Block:
        return ast.Block(list(stmts), span)

    def stmt_let(self, span: Span, name: Lexeme, value: ast.Expr) -> ast.Let:
        return ast.Let(name.value, value, span, name_span=self._token_span(name))

    def stmt_assign(self, span: Span, name: Lexeme, op: Lexeme, value: ast.Expr) -> ast.Assign:
        # "+=" is stored as "+"; a plain "=" has no operator.
        operator = op.value[:-1] or None
        return ast.Assign(name.value, value, operator, span)

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
        return ast.For(var.value, iterable, body, span, name_span=self._token_span(var))

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
            name.value if name is not None else None,
            kind.value if kind is not None else None,
            body,
            span,
        )

    def stmt_assert(self, span: Span, cond: ast.Expr, message: ast.Expr | None) -> ast.Assert:
        return ast.Assert(cond, message, span)

    def stmt_expect_fail(
        self, span: Span, kind: Lexeme | None, message: Lexeme | None, body: ast.Block
    ) -> ast.ExpectFail:
        expected = None if message is None else string_value(message.value)
        kind_name = None if kind is None else kind.value
        return ast.ExpectFail(kind_name, expected, body, span)

    def stmt_expr(self, span: Span, expr: ast.Expr) -> ast.ExprStmt:
        return ast.ExprStmt(expr, span)

    # ------------------------------------------------------------ expressions

    def expr_binop(self, span: Span, left: ast.Expr, op: Lexeme, right: ast.Expr) -> ast.BinOp:
        return ast.BinOp(op.value, left, right, span)

    def expr_not(self, span: Span, operand: ast.Expr) -> ast.Not:
        return ast.Not(operand, span)

    def expr_just(self, span: Span, value: ast.Expr) -> ast.JustExpr:
        return ast.JustExpr(value, span)

    def expr_create(self, span: Span, name: Lexeme, controller: ast.Expr | None) -> ast.Create:
        return ast.Create(name.value, controller, span, name_span=self._token_span(name))

    def expr_index(self, span: Span, base: ast.Expr, index: ast.Expr) -> ast.Index:
        return ast.Index(base, index, span)

    def expr_slice(
        self, span: Span, base: ast.Expr, start: ast.Expr | None, end: ast.Expr | None
    ) -> ast.Slice:
        return ast.Slice(base, start, end, span)

    def expr_call(self, span: Span, name: Lexeme, bang: Lexeme | None, *args: ast.Expr) -> ast.Call:
        span, name_span = span, self._token_span(name)
        return ast.Call(name.value, list(args), bang is not None, False, span, name_span=name_span)

    def expr_unsafe_call(
        self, span: Span, name: Lexeme, bang: Lexeme | None, *args: ast.Expr
    ) -> ast.Call:
        span, name_span = span, self._token_span(name)
        return ast.Call(name.value, list(args), bang is not None, True, span, name_span=name_span)

    def expr_name(self, span: Span, name: Lexeme) -> ast.Name:
        return ast.Name(name.value, span)

    def expr_nat(self, span: Span, token: Lexeme) -> ast.Literal:
        return ast.Literal(nat_value(token.value), span)

    def expr_string(self, span: Span, token: Lexeme) -> ast.Literal:
        return ast.Literal(string_value(token.value), span)

    def expr_objref(self, span: Span, token: Lexeme) -> ast.Literal:
        return ast.Literal(ref_value(token.value), span)

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
        if name.value == "_":
            return ast.PWildcard(span)
        return ast.PBind(name.value, span)

    def pat_nat(self, span: Span, token: Lexeme) -> ast.PLiteral:
        return ast.PLiteral(nat_value(token.value), span)

    def pat_string(self, span: Span, token: Lexeme) -> ast.PLiteral:
        return ast.PLiteral(string_value(token.value), span)

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
        return _Rest(name.value, span)
