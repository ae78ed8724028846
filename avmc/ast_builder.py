"""Turn the Lark parse tree of grammar/avm.lark into the AST of avmc/ast.py.

One method per rule alias of the grammar. The transformer is non-recursive, so deeply
nested input cannot exhaust the Python stack here.
"""

from __future__ import annotations

from dataclasses import dataclass

from lark import Token, Transformer_NonRecursive, v_args
from lark.tree import Meta

from avm_vm.diagnostics import DiagnosticError, Span, error
from avm_vm.values import NOTHING

from . import ast
from .literals import nat_value, ref_value, string_value


@dataclass
class _Rest:
    """The ``..name`` tail of a list pattern, until pat_list takes it."""

    name: str


@v_args(meta=True, inline=True)
class AstBuilder(Transformer_NonRecursive):
    def __init__(self, filename: str) -> None:
        super().__init__()
        self.filename = filename

    def _span(self, meta: Meta) -> Span:
        if meta.empty:
            return Span(self.filename, 1, 1)
        return Span(self.filename, meta.line, meta.column, meta.end_line, meta.end_column)

    def _token_span(self, token: Token) -> Span:
        return Span(self.filename, token.line, token.column, token.end_line, token.end_column)

    # ------------------------------------------------------------ items

    def start(self, meta: Meta, *items: ast.Item) -> ast.Module:
        return ast.Module(list(items), self._span(meta))

    def item_behavior(
        self, meta: Meta, name: Token, *members: ast.FieldDef | ast.Clause
    ) -> ast.BehaviorDef:
        fields: list[ast.FieldDef] = []
        clauses: list[ast.Clause] = []
        for member in members:
            if isinstance(member, ast.Clause):
                clauses.append(member)
            elif clauses:
                raise DiagnosticError(
                    error(
                        f"field '{member.name}' comes after a clause: "
                        "fields must come before the behavior's clauses",
                        member.span,
                    )
                )
            else:
                fields.append(member)
        return ast.BehaviorDef(
            str(name), fields, clauses, self._span(meta), name_span=self._token_span(name)
        )

    def item_extern(self, meta: Meta, name: Token) -> ast.ExternBehavior:
        return ast.ExternBehavior(str(name), self._span(meta), name_span=self._token_span(name))

    def item_fn(self, meta: Meta, name: Token, *rest: Token | ast.Block) -> ast.FunctionDef:
        *params, body = rest
        return ast.FunctionDef(
            str(name),
            [ast.Param(str(p), self._token_span(p)) for p in params],  # type: ignore[arg-type]
            body,  # type: ignore[arg-type]
            self._span(meta),
            name_span=self._token_span(name),
        )

    def item_main(self, meta: Meta, body: ast.Block) -> ast.MainDef:
        return ast.MainDef(body, self._span(meta))

    def member_field(self, meta: Meta, name: Token, default: ast.Expr) -> ast.FieldDef:
        return ast.FieldDef(str(name), default, self._span(meta), name_span=self._token_span(name))

    def member_clause(
        self, meta: Meta, pattern: ast.Pattern, guard: ast.Expr | None, body: ast.Block
    ) -> ast.Clause:
        return ast.Clause(pattern, guard, body, self._span(meta))

    # ------------------------------------------------------------ statements

    def block(self, meta: Meta, *stmts: ast.Stmt) -> ast.Block:
        return ast.Block(list(stmts), self._span(meta))

    def stmt_let(self, meta: Meta, name: Token, value: ast.Expr) -> ast.Let:
        return ast.Let(str(name), value, self._span(meta), name_span=self._token_span(name))

    def stmt_assign(self, meta: Meta, name: Token, op: Token, value: ast.Expr) -> ast.Assign:
        # "+=" is stored as "+"; a plain "=" has no operator.
        operator = str(op)[:-1] or None
        return ast.Assign(str(name), value, operator, self._span(meta))

    def stmt_if(
        self,
        meta: Meta,
        cond: ast.Expr,
        then: ast.Block,
        otherwise: ast.Block | ast.If | None,
    ) -> ast.If:
        if isinstance(otherwise, ast.If):
            otherwise = ast.Block([otherwise], otherwise.span)
        return ast.If(cond, then, otherwise, self._span(meta))

    def stmt_while(self, meta: Meta, cond: ast.Expr, body: ast.Block) -> ast.While:
        return ast.While(cond, body, self._span(meta))

    def stmt_for(self, meta: Meta, var: Token, iterable: ast.Expr, body: ast.Block) -> ast.For:
        return ast.For(str(var), iterable, body, self._span(meta), name_span=self._token_span(var))

    def stmt_match(self, meta: Meta, subject: ast.Expr, *arms: ast.MatchArm) -> ast.Match:
        return ast.Match(subject, list(arms), self._span(meta))

    def match_arm(
        self, meta: Meta, pattern: ast.Pattern, guard: ast.Expr | None, body: ast.Block
    ) -> ast.MatchArm:
        return ast.MatchArm(pattern, guard, body, self._span(meta))

    def stmt_return(self, meta: Meta, value: ast.Expr | None) -> ast.Return:
        return ast.Return(value, self._span(meta))

    def stmt_break(self, meta: Meta) -> ast.Break:
        return ast.Break(self._span(meta))

    def stmt_continue(self, meta: Meta) -> ast.Continue:
        return ast.Continue(self._span(meta))

    def stmt_fail(self, meta: Meta, message: ast.Expr) -> ast.Fail:
        return ast.Fail(message, self._span(meta))

    def stmt_atomic(
        self,
        meta: Meta,
        controller: ast.Expr | None,
        body: ast.Block,
        handler: tuple[str | None, str | None, ast.Block] | None,
    ) -> ast.Atomic:
        error_name, kind_name, handler_block = handler if handler else (None, None, None)
        return ast.Atomic(controller, body, handler_block, error_name, self._span(meta), kind_name)

    def atomic_handler(
        self, meta: Meta, name: Token | None, kind: Token | None, body: ast.Block
    ) -> tuple[str | None, str | None, ast.Block]:
        return (
            str(name) if name is not None else None,
            str(kind) if kind is not None else None,
            body,
        )

    def stmt_expr(self, meta: Meta, expr: ast.Expr) -> ast.ExprStmt:
        return ast.ExprStmt(expr, self._span(meta))

    # ------------------------------------------------------------ expressions

    def expr_binop(self, meta: Meta, left: ast.Expr, op: Token, right: ast.Expr) -> ast.BinOp:
        return ast.BinOp(str(op), left, right, self._span(meta))

    def expr_not(self, meta: Meta, operand: ast.Expr) -> ast.Not:
        return ast.Not(operand, self._span(meta))

    def expr_just(self, meta: Meta, value: ast.Expr) -> ast.JustExpr:
        return ast.JustExpr(value, self._span(meta))

    def expr_create(self, meta: Meta, name: Token, controller: ast.Expr | None) -> ast.Create:
        return ast.Create(str(name), controller, self._span(meta), name_span=self._token_span(name))

    def expr_index(self, meta: Meta, base: ast.Expr, index: ast.Expr) -> ast.Index:
        return ast.Index(base, index, self._span(meta))

    def expr_slice(
        self, meta: Meta, base: ast.Expr, start: ast.Expr | None, end: ast.Expr | None
    ) -> ast.Slice:
        return ast.Slice(base, start, end, self._span(meta))

    def expr_call(self, meta: Meta, name: Token, bang: Token | None, *args: ast.Expr) -> ast.Call:
        span, name_span = self._span(meta), self._token_span(name)
        return ast.Call(str(name), list(args), bang is not None, False, span, name_span=name_span)

    def expr_unsafe_call(
        self, meta: Meta, name: Token, bang: Token | None, *args: ast.Expr
    ) -> ast.Call:
        span, name_span = self._span(meta), self._token_span(name)
        return ast.Call(str(name), list(args), bang is not None, True, span, name_span=name_span)

    def expr_name(self, meta: Meta, name: Token) -> ast.Name:
        return ast.Name(str(name), self._span(meta))

    def expr_nat(self, meta: Meta, token: Token) -> ast.Literal:
        return ast.Literal(nat_value(str(token)), self._span(meta))

    def expr_string(self, meta: Meta, token: Token) -> ast.Literal:
        return ast.Literal(string_value(str(token)), self._span(meta))

    def expr_objref(self, meta: Meta, token: Token) -> ast.Literal:
        return ast.Literal(ref_value(str(token)), self._span(meta))

    expr_txref = expr_objref

    def expr_true(self, meta: Meta) -> ast.Literal:
        return ast.Literal(True, self._span(meta))

    def expr_false(self, meta: Meta) -> ast.Literal:
        return ast.Literal(False, self._span(meta))

    def expr_nothing(self, meta: Meta) -> ast.Literal:
        return ast.Literal(NOTHING, self._span(meta))

    def expr_self(self, meta: Meta) -> ast.ContextExpr:
        return ast.ContextExpr("self", self._span(meta))

    def expr_input(self, meta: Meta) -> ast.ContextExpr:
        return ast.ContextExpr("input", self._span(meta))

    def expr_sender(self, meta: Meta) -> ast.ContextExpr:
        return ast.ContextExpr("sender", self._span(meta))

    def expr_list(self, meta: Meta, *items: ast.Expr) -> ast.ListExpr:
        return ast.ListExpr(list(items), self._span(meta))

    def expr_pair(self, meta: Meta, first: ast.Expr, second: ast.Expr) -> ast.PairExpr:
        return ast.PairExpr(first, second, self._span(meta))

    # ------------------------------------------------------------ patterns

    def pat_name(self, meta: Meta, name: Token) -> ast.PWildcard | ast.PBind:
        if name == "_":
            return ast.PWildcard(self._span(meta))
        return ast.PBind(str(name), self._span(meta))

    def pat_nat(self, meta: Meta, token: Token) -> ast.PLiteral:
        return ast.PLiteral(nat_value(str(token)), self._span(meta))

    def pat_string(self, meta: Meta, token: Token) -> ast.PLiteral:
        return ast.PLiteral(string_value(str(token)), self._span(meta))

    def pat_true(self, meta: Meta) -> ast.PLiteral:
        return ast.PLiteral(True, self._span(meta))

    def pat_false(self, meta: Meta) -> ast.PLiteral:
        return ast.PLiteral(False, self._span(meta))

    def pat_nothing(self, meta: Meta) -> ast.PLiteral:
        return ast.PLiteral(NOTHING, self._span(meta))

    def pat_just(self, meta: Meta, inner: ast.Pattern) -> ast.PJust:
        return ast.PJust(inner, self._span(meta))

    def pat_pair(self, meta: Meta, first: ast.Pattern, second: ast.Pattern) -> ast.PPair:
        return ast.PPair(first, second, self._span(meta))

    def pat_list(self, meta: Meta, *items: ast.Pattern | _Rest) -> ast.PList:
        rest = items[-1].name if items and isinstance(items[-1], _Rest) else None
        patterns = [p for p in items if not isinstance(p, _Rest)]
        return ast.PList(patterns, rest, self._span(meta))  # type: ignore[arg-type]

    def pat_rest(self, meta: Meta, name: Token) -> _Rest:
        return _Rest(str(name))
