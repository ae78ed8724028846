"""The names of a parsed module and what each written name refers to.

``index(module, source)`` walks the AST once, with the scoping rules of avmc/checks.py
(docs/language.md, "Scopes"): a ``let`` is visible from its statement to the end of its
block; parameters, pattern bindings, a loop variable and an ``atomic`` handler's error name
belong to the body they introduce; fields belong to their behavior; behaviors and functions
to the whole file. Positions are the AST's spans: lines and columns from 1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from avm_vm.diagnostics import Span
from avm_vm.format.instructions import BY_SOURCE

from .. import ast

Position = tuple[int, int]  # (line, column), both from 1


@dataclass(frozen=True)
class Symbol:
    """Something a program names: a behavior, fn, field, parameter or local."""

    name: str
    kind: str
    span: Span  # where the name is written in its definition
    signature: str
    container: str = ""  # "behavior Account", "fn f", "main"; empty for top-level items

    def markdown(self) -> str:
        where = f" in {self.container}" if self.container else ""
        return f"```avm\n{self.signature}\n```\n\n*{self.kind}*{where}"


@dataclass(frozen=True)
class Use:
    """A name as written, and the symbol it refers to (None: not defined in this file)."""

    span: Span
    name: str
    symbol: Symbol | None


@dataclass
class Index:
    uses: list[Use] = field(default_factory=list)
    items: dict[str, Symbol] = field(default_factory=dict)  # behaviors and functions
    scoped: list[tuple[Symbol, Span]] = field(default_factory=list)  # with where it is visible

    def use_at(self, position: Position) -> Use | None:
        """The innermost written name touching ``position`` (the cursor may be just after it)."""
        around = [use for use in self.uses if _contains(use.span, position)]
        return min(around, key=lambda use: _length(use.span), default=None)

    def visible_at(self, position: Position) -> list[Symbol]:
        """Every name usable at ``position``; an inner one hides an outer one of that name."""
        found = dict(self.items)
        for symbol, region in self.scoped:
            if _contains(region, position):
                found[symbol.name] = symbol
        return list(found.values())


def _end(span: Span) -> Position:
    return (span.end_line or span.line, span.end_col or span.col)


def _contains(span: Span, position: Position) -> bool:
    return (span.line, span.col) <= position <= _end(span)


def _length(span: Span) -> tuple[int, int]:
    end_line, end_col = _end(span)
    return (end_line - span.line, end_col - span.col)


def index(module: ast.Module, source: str) -> Index:
    indexer = _Indexer(source, module.span.file)
    indexer.module(module)
    return indexer.result


class _Indexer:
    def __init__(self, source: str, filename: str) -> None:
        self.lines = source.split("\n")
        self.filename = filename
        self.result = Index()
        self.scopes: list[dict[str, Symbol]] = []
        self.fields: dict[str, Symbol] = {}
        self.container = ""

    # ------------------------------------------------------------ source text

    def text(self, span: Span) -> str:
        """The source of a span, cut at its first line's end (hover shows one line)."""
        line = self.lines[span.line - 1] if 0 < span.line <= len(self.lines) else ""
        end_line, end_col = _end(span)
        if end_line == span.line:
            return line[span.col - 1 : end_col - 1]
        return line[span.col - 1 :].rstrip() + " …"

    def find_name(self, name: str, start: Position, end: Position, before: str = "") -> Span:
        """Where ``name`` is first written, after ``before``, between two positions.

        For the few names the AST does not position itself (an atomic handler's error name
        and a list pattern's ``..rest``); falls back to ``start``.
        """
        pattern = re.compile(rf"{before}\b({re.escape(name)})\b")
        for number in range(start[0], min(end[0], len(self.lines)) + 1):
            line = self.lines[number - 1]
            low = start[1] - 1 if number == start[0] else 0
            high = end[1] - 1 if number == end[0] else len(line)
            match = pattern.search(line, low, high)
            if match:
                col = match.start(1) + 1
                return Span(self.filename, number, col, number, col + len(name))
        return Span(self.filename, start[0], start[1], start[0], start[1])

    # ------------------------------------------------------------ definitions and uses

    def define(self, symbol: Symbol, region: Span | None) -> Symbol:
        """Record a definition (its name is a use of itself, for hover and definition)."""
        self.result.uses.append(Use(symbol.span, symbol.name, symbol))
        if region is not None:
            self.result.scoped.append((symbol, region))
        if self.scopes:
            self.scopes[-1][symbol.name] = symbol
        return symbol

    def local(self, name: str, kind: str, span: Span, signature: str, region: Span) -> None:
        self.define(Symbol(name, kind, span, signature, self.container), region)

    def use(self, name: str, span: Span) -> None:
        symbol = next((s[name] for s in reversed(self.scopes) if name in s), None)
        if symbol is None:
            symbol = self.fields.get(name) or self.result.items.get(name)
        self.result.uses.append(Use(span, name, symbol))

    def use_item(self, name: str, span: Span) -> None:
        """A function called or a behavior created: only items can be meant."""
        self.result.uses.append(Use(span, name, self.result.items.get(name)))

    # ------------------------------------------------------------ items

    def module(self, module: ast.Module) -> None:
        for item in module.items:
            symbol = self._item_symbol(item)
            if symbol is not None:
                self.result.uses.append(Use(symbol.span, symbol.name, symbol))
                self.result.items.setdefault(symbol.name, symbol)  # the first one counts
        for item in module.items:
            match item:
                case ast.BehaviorDef():
                    self._behavior(item)
                case ast.FunctionDef(name=name, params=params, body=body, span=span):
                    self.container = f"fn {name}"
                    self.scopes.append({})
                    for param in params:
                        self.local(param.name, "parameter", param.span, param.name, span)
                    self._block(body)
                    self.scopes.pop()
                case ast.MainDef(body=body):
                    self.container = "main"
                    self._block(body)
                case ast.TestDef(name=name, body=body):
                    self.container = f'test "{name}"'
                    self._block(body)

    def _item_symbol(self, item: ast.Item) -> Symbol | None:
        match item:
            case ast.BehaviorDef(name=name, name_span=span):
                lines = [f"behavior {name}"]
                lines += [f"  {self.text(f.span)}" for f in item.fields]
                for clause in item.clauses:
                    guard = f" if {self.text(clause.guard.span)}" if clause.guard else ""
                    lines.append(f"  on {self.text(clause.pattern.span)}{guard}")
                return Symbol(name, "behavior", span, "\n".join(lines))
            case ast.ExternBehavior(name=name, name_span=span):
                signature = f"extern behavior {name}"
                return Symbol(name, "behavior of another .tape file", span, signature)
            case ast.FunctionDef(name=name, params=params, name_span=span):
                signature = f"fn {name}({', '.join(p.name for p in params)})"
                return Symbol(name, "pure function", span, signature)
        return None

    def _behavior(self, behavior: ast.BehaviorDef) -> None:
        self.container = f"behavior {behavior.name}"
        self.fields = {}
        for field_def in behavior.fields:
            signature = self.text(field_def.span)
            symbol = Symbol(field_def.name, "field", field_def.name_span, signature, self.container)
            self.define(symbol, behavior.span)
            self.fields.setdefault(field_def.name, symbol)
        for clause in behavior.clauses:
            self._arm(clause)
        self.fields = {}

    def _arm(self, arm: ast.Clause | ast.MatchArm) -> None:
        """A clause or match arm: its pattern's bindings are seen by its guard and body."""
        self.scopes.append({})
        self._pattern(arm.pattern, arm.span)
        if arm.guard is not None:
            self._expr(arm.guard)
        self._block(arm.body)
        self.scopes.pop()

    def _pattern(self, pattern: ast.Pattern, region: Span) -> None:
        written = f"bound by the pattern `{self.text(pattern.span)}`"
        pending = [pattern]
        while pending:
            match pending.pop():
                case ast.PBind(name=name, span=span):
                    self.local(name, "pattern binding", span, f"{name}: {written}", region)
                case ast.PList(items=items, rest=rest, span=span):
                    pending.extend(reversed(items))
                    if rest not in (None, "_"):
                        at = self.find_name(rest, (span.line, span.col), _end(span), r"\.\.\s*")
                        self.local(rest, "pattern binding", at, f"{rest}: {written}", region)
                case ast.PPair(first=first, second=second):
                    pending.extend((second, first))
                case ast.PJust(inner=inner):
                    pending.append(inner)

    # ------------------------------------------------------------ statements

    def _block(self, block: ast.Block) -> None:
        self.scopes.append({})
        for stmt in block.stmts:
            self._stmt(stmt, block)
        self.scopes.pop()

    def _stmt(self, stmt: ast.Stmt, block: ast.Block) -> None:
        match stmt:
            case ast.Let(name=name, value=value, span=span, name_span=name_span):
                self._expr(value)
                # Visible after its own statement, to the end of the block.
                region = Span(span.file, *_end(span), *_end(block.span))
                signature = f"let {name} = {self.text(value.span)}"
                self.local(name, "variable", name_span, signature, region)
            case ast.Assign(name=name, value=value, span=span):
                end = span.col + len(name)  # the statement starts with the name
                self.use(name, Span(span.file, span.line, span.col, span.line, end))
                self._expr(value)
            case ast.If(cond=cond, then=then, otherwise=otherwise):
                self._expr(cond)
                self._block(then)
                if otherwise is not None:
                    self._block(otherwise)
            case ast.While(cond=cond, body=body):
                self._expr(cond)
                self._block(body)
            case ast.For(var=var, iterable=iterable, body=body, span=span, name_span=name_span):
                self._expr(iterable)
                self.scopes.append({})
                signature = f"for {var} in {self.text(iterable.span)}"
                self.local(var, "loop variable", name_span, signature, span)
                self._block(body)
                self.scopes.pop()
            case ast.Match(subject=subject, arms=arms):
                self._expr(subject)
                for arm in arms:
                    self._arm(arm)
            case ast.Return(value=value) if value is not None:
                self._expr(value)
            case ast.Fail(message=value) | ast.ExprStmt(expr=value):
                self._expr(value)
            case ast.Atomic():
                self._atomic(stmt)
            case ast.Assert(cond=cond, message=message):
                self._expr(cond)
                if message is not None:
                    self._expr(message)
            case ast.ExpectFail(body=body):
                self._block(body)

    def _atomic(self, stmt: ast.Atomic) -> None:
        if stmt.controller is not None:
            self._expr(stmt.controller)
        self._block(stmt.body)
        if stmt.handler is None:
            return
        self.scopes.append({})
        handler = stmt.handler.span
        after = _end(stmt.body.span)  # the names are written between the body and the handler
        for name, meaning in (
            (stmt.error_name, "the failure message of the atomic block"),
            (stmt.kind_name, 'the error kind of the failure (e.g. "Failed")'),
        ):
            if name is not None:
                at = self.find_name(name, after, (handler.line, handler.col))
                self.local(name, "error name", at, f"{name}: {meaning}", handler)
                after = _end(at)
        self._block(stmt.handler)
        self.scopes.pop()

    # ------------------------------------------------------------ expressions

    def _expr(self, expr: ast.Expr) -> None:
        match expr:
            case ast.Name(name=name, span=span):
                self.use(name, span)
            case ast.Call(name=name, args=args, unwrap=unwrap, name_span=span):
                if unwrap and f"{name}!" in BY_SOURCE:  # `call!` is an instruction of its own
                    name = f"{name}!"
                self.use_item(name, span)
                for arg in args:
                    self._expr(arg)
            case ast.Create(behavior=name, controller=controller, name_span=span):
                self.use_item(name, span)
                if controller is not None:
                    self._expr(controller)
            case ast.ContextExpr(which=which, span=span):
                self.use_item(which, span)
            case ast.ListExpr(items=items):
                for item in items:
                    self._expr(item)
            case ast.PairExpr(first=first, second=second) | ast.BinOp(left=first, right=second):
                self._expr(first)
                self._expr(second)
            case ast.JustExpr(value=inner) | ast.Not(operand=inner):
                self._expr(inner)
            case ast.Index(base=base, index=index):
                self._expr(base)
                self._expr(index)
            case ast.Slice(base=base, start=start, end=end):
                for part in (base, start, end):
                    if part is not None:
                        self._expr(part)
