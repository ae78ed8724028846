"""Static checks on a parsed module: names, arity, patterns, layers and unsafe opt-in.

``check(module)`` returns every error and warning in source order; it does not stop at the
first. Scoping: a block's ``let`` is visible from its declaration to the end of the block;
parameters, pattern bindings, a loop variable and an ``atomic`` handler's error name belong
to the scope of the body they introduce (so a ``let`` there may not redeclare them).

Besides errors, it gives hints for the common slips: a misspelled name gets "did you mean",
the answer of ``call`` (a maybe) used where it never fits gets a warning pointing to
``call!``, and an object given where a controller name is expected is an error.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field

from avm_vm.diagnostics import Diagnostic, Span, error, warning
from avm_vm.errors import ErrorKind
from avm_vm.format.instructions import BY_SOURCE, SYNTAX_INSTRUCTIONS, Instruction
from avm_vm.format.verify import MAX_REGISTERS
from avm_vm.values import ObjectRef

from . import ast
from .builtins import BUILTINS

# Instructions written as calls; create/self/input/sender are keywords with their own syntax.
_CALLABLE = {name: ins for name, ins in BY_SOURCE.items() if name not in SYNTAX_INSTRUCTIONS}
# Instruction parameters that take a pure function, written as the bare name of a fn.
_FUNCTION_PARAMS = frozenset({"predicate", "function"})
_TERMINATORS = (ast.Return, ast.Fail, ast.Break, ast.Continue)
# The kinds a failure reports, which `expect_fail` may name.
_ERROR_KINDS = tuple(kind.qualified_name for kind in ErrorKind)
# Keywords that read as names where a value is expected: candidates for "did you mean".
_VALUE_KEYWORDS = ("self", "input", "sender", "true", "false", "nothing")
# A lone name as a statement may be a misspelled keyword (`retrun x` reads as two names).
_STATEMENT_KEYWORDS = ("return", "fail", "break", "continue", "let", "atomic")

# Where an operand is never a maybe, so the answer of `call` there always fails at run time:
# what the place needs, said for the warning.
_NEEDS_BY_OP = {
    op: needs.format(op=op)
    for ops, needs in [
        (("+", "-", "*", "/", "%"), "'{op}' needs nats"),
        (("<", "<=", ">", ">="), "'{op}' compares nats or strings"),
        (("++",), "'++' joins strings or lists"),
        (("and", "or"), "'{op}' needs bools"),
    ]
    for op in ops
}
_NEEDS_BY_BUILTIN = {
    "len": "len needs a string or a list",
    "fst": "fst needs a pair",
    "snd": "snd needs a pair",
    "append": "append needs a list",
}
_CALL_HINT = (
    "write `call!(...)` for the answer itself (failing when the call fails), or `match` the "
    "maybe against `just v` and `nothing`"
)
_CONTROLLER_HINT = (
    'controllers are names (strings) such as "alice"; `current_controller()` is the name of '
    "the one executing"
)


def _did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """A hint naming the candidate closest to a misspelled ``name``, if one is close."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1)
    return f"did you mean '{close[0]}'?" if close else None


def _is_object(expr: ast.Expr | None) -> bool:
    """``expr`` always evaluates to an object reference."""
    match expr:
        case ast.ContextExpr(which="self" | "sender") | ast.Create():
            return True
        case ast.Literal(value=value):
            return isinstance(value, ObjectRef)
    return False


def _assigned_names(stmts: list[ast.Stmt], into: set[str]) -> None:
    """Add to ``into`` every name assigned anywhere in ``stmts``, nested blocks included."""
    pending = list(stmts)
    while pending:
        match pending.pop():
            case ast.Assign(name=name):
                into.add(name)
            case ast.If(then=then, otherwise=otherwise):
                pending.extend(then.stmts)
                if otherwise is not None:
                    pending.extend(otherwise.stmts)
            case ast.While(body=body) | ast.For(body=body):
                pending.extend(body.stmts)
            case ast.Match(arms=arms):
                pending.extend(stmt for arm in arms for stmt in arm.body.stmts)
            case ast.Atomic(body=body, handler=handler):
                pending.extend(body.stmts)
                if handler is not None:
                    pending.extend(handler.stmts)
            case ast.ExpectFail(body=body):
                pending.extend(body.stmts)


def check(module: ast.Module) -> list[Diagnostic]:
    """Errors and warnings for ``module``, sorted by position."""
    checker = _Checker(module)
    try:
        checker.run()
    except RecursionError:
        # The parser refuses programs this deep; only a hand-built AST gets here.
        return [error("program nests too deeply", module.span)]
    return sorted(checker.diagnostics, key=_position)


def _position(diagnostic: Diagnostic) -> tuple[int, int]:
    span = diagnostic.span
    return (span.line, span.col) if span else (0, 0)


@dataclass
class _Body:
    """The fn, clause, main or test whose statements are being checked."""

    kind: str  # "fn", "clause", "main" or "test"
    name: str
    fields: dict[str, ast.FieldDef] = field(default_factory=dict)
    assigned: set[str] = field(default_factory=set)  # names assigned anywhere in the body


def _count(n: int) -> str:
    return f"{n} argument" if n == 1 else f"{n} arguments"


def _is_constant(expr: ast.Expr) -> bool:
    match expr:
        case ast.Literal():
            return True
        case ast.ListExpr(items=items):
            return all(_is_constant(item) for item in items)
        case ast.PairExpr(first=first, second=second):
            return _is_constant(first) and _is_constant(second)
        case ast.JustExpr(value=value):
            return _is_constant(value)
    return False


class _Checker:
    def __init__(self, module: ast.Module) -> None:
        self.module = module
        self.diagnostics: list[Diagnostic] = []
        self.items: dict[str, ast.Item] = {}
        self.functions: dict[str, ast.FunctionDef] = {}
        self.field_owner: dict[str, str] = {}
        self.scopes: list[dict[str, Span]] = []
        self.flow: list[str] = []  # enclosing "loop" and "atomic" constructs, innermost last
        self.body = _Body("main", "main")
        # `let` declarations (by span) whose value is the answer of `call`: a maybe.
        self.call_answers: set[Span] = set()

    def _error(self, message: str, span: Span, hint: str | None = None) -> None:
        self.diagnostics.append(error(message, span, hint=hint))

    # ------------------------------------------------------------ items

    def run(self) -> None:
        self._declare_items()
        for item in self.module.items:
            match item:
                case ast.BehaviorDef():
                    self._behavior(item)
                case ast.FunctionDef():
                    if len(item.params) > MAX_REGISTERS:
                        self._error(
                            f"function {item.name} has {len(item.params)} parameters, more "
                            f"than the {MAX_REGISTERS} a .tape function can take",
                            item.span,
                        )
                    self._enter(_Body("fn", item.name), item.body)
                    self._scoped(self._params(item.params), item.body)
                case ast.MainDef():
                    self._enter(_Body("main", "main"), item.body)
                    self._scoped({}, item.body)
                case ast.TestDef():
                    self._enter(_Body("test", item.name), item.body)
                    self._scoped({}, item.body)

    def _declare_items(self) -> None:
        main: ast.MainDef | None = None
        tests: dict[str, ast.TestDef] = {}
        for item in self.module.items:
            if isinstance(item, ast.TestDef):  # tests have names of their own, not items'
                first_test = tests.setdefault(item.name, item)
                if first_test is not item:
                    where = f"the first is at line {first_test.span.line}"
                    self._error(f'duplicate test "{item.name}" ({where})', item.name_span)
                continue
            if isinstance(item, ast.MainDef):
                if main is None:
                    main = item
                else:
                    line = main.span.line
                    self._error(f"duplicate main (the first is at line {line})", item.span)
                continue
            self._not_reserved(item.name, item.span)
            first = self.items.setdefault(item.name, item)
            if first is not item:
                self._error(
                    f"duplicate definition of '{item.name}' (first defined at line "
                    f"{first.span.line})",
                    item.span,
                )
                continue
            if isinstance(item, ast.FunctionDef):
                self.functions[item.name] = item
            elif isinstance(item, ast.BehaviorDef):
                for field_def in item.fields:
                    self.field_owner.setdefault(field_def.name, item.name)

    def _not_reserved(self, name: str, span: Span) -> None:
        if name in BUILTINS:
            self._error(f"'{name}' is reserved (a builtin function): choose another name", span)
        elif name in BY_SOURCE:
            self._error(f"'{name}' is reserved (an AVM instruction): choose another name", span)

    def _behavior(self, behavior: ast.BehaviorDef) -> None:
        fields: dict[str, ast.FieldDef] = {}
        for field_def in behavior.fields:
            self._not_reserved(field_def.name, field_def.span)
            if field_def.name in fields:
                self._error(
                    f"duplicate field '{field_def.name}' in behavior {behavior.name}",
                    field_def.span,
                )
            fields.setdefault(field_def.name, field_def)
            if not _is_constant(field_def.default):
                self._error(
                    "a field default must be a constant: a literal, or a list, pair or just "
                    "of constants",
                    field_def.default.span,
                )
        if not behavior.clauses:
            self.diagnostics.append(
                warning(
                    f"behavior {behavior.name} has no clauses: every call to it fails",
                    behavior.span,
                )
            )
        for clause in behavior.clauses:
            self._enter(_Body("clause", behavior.name, fields), clause.body)
            self._scoped(self._bindings(clause.pattern), clause.body, clause.guard)

    def _params(self, params: list[ast.Param]) -> dict[str, Span]:
        names: dict[str, Span] = {}
        for param in params:
            self._not_reserved(param.name, param.span)
            if param.name in names:
                self._error(f"duplicate parameter '{param.name}'", param.span)
            names.setdefault(param.name, param.span)
        return names

    def _bindings(self, pattern: ast.Pattern) -> dict[str, Span]:
        names: dict[str, Span] = {}

        def bind(name: str, span: Span) -> None:
            self._not_reserved(name, span)
            if name in names:
                self._error(f"'{name}' is bound twice in this pattern", span)
            names.setdefault(name, span)

        pending = [pattern]
        while pending:
            match pending.pop():
                case ast.PBind(name=name, span=span):
                    bind(name, span)
                case ast.PList(items=items, rest=rest, span=span):
                    pending.extend(reversed(items))
                    if rest not in (None, "_"):
                        bind(rest, span)  # type: ignore[arg-type]
                case ast.PPair(first=first, second=second):
                    pending.extend((second, first))
                case ast.PJust(inner=inner):
                    pending.append(inner)
        return names

    # ------------------------------------------------------------ statements

    def _enter(self, body: _Body, block: ast.Block) -> None:
        _assigned_names(block.stmts, body.assigned)
        self.body = body
        self.flow = []

    def _scoped(
        self, names: dict[str, Span], block: ast.Block, guard: ast.Expr | None = None
    ) -> None:
        self.scopes.append(dict(names))
        if guard is not None:
            self._expr(guard)
        self._stmts(block.stmts)
        self.scopes.pop()

    def _stmts(self, stmts: list[ast.Stmt]) -> None:
        warned = False
        for index, stmt in enumerate(stmts):
            self._stmt(stmt)
            if isinstance(stmt, _TERMINATORS) and index + 1 < len(stmts) and not warned:
                self.diagnostics.append(warning("unreachable code", stmts[index + 1].span))
                warned = True

    def _stmt(self, stmt: ast.Stmt) -> None:
        match stmt:
            case ast.Let(name=name, value=value, span=span):
                self._expr(value)
                self._not_reserved(name, span)
                if name in self.scopes[-1]:
                    self._error(f"'{name}' is already declared in this block", span)
                self.scopes[-1][name] = span
                if self._call_answer(value) is not None:
                    self.call_answers.add(span)
            case ast.Assign(name=name, value=value, span=span):
                self._expr(value)
                self._assignable(name, span)
            case ast.If(cond=cond, then=then, otherwise=otherwise):
                self._value(cond, "a condition needs a bool")
                self._scoped({}, then)
                if otherwise is not None:
                    self._scoped({}, otherwise)
            case ast.While(cond=cond, body=body):
                self._value(cond, "a condition needs a bool")
                self._loop({}, body)
            case ast.For(var=var, iterable=iterable, body=body, span=span):
                self._value(iterable, "'for' goes over a list or a string")
                self._not_reserved(var, span)
                self._loop({var: span}, body)
            case ast.Match(subject=subject, arms=arms):
                self._expr(subject)
                for arm in arms:
                    self._scoped(self._bindings(arm.pattern), arm.body, arm.guard)
            case ast.Return(value=value, span=span):
                if value is not None:
                    self._expr(value)
                if "expect_fail" in self.flow:  # it would skip the check of the failure
                    self._error("return cannot leave an expect_fail block", span)
            case ast.Break(span=span):
                self._loop_exit("break", span)
            case ast.Continue(span=span):
                self._loop_exit("continue", span)
            case ast.Fail(message=message):
                self._expr(message)
            case ast.Atomic():
                self._atomic(stmt)
            case ast.Assert(cond=cond, message=message, span=span):
                self._only_in_test("assert", span)
                self._value(cond, "assert needs a bool")
                if message is not None:
                    self._expr(message)
            case ast.ExpectFail():
                self._expect_fail(stmt)
            case ast.ExprStmt(expr=ast.Name() as name):
                self._name(name, _STATEMENT_KEYWORDS)
            case ast.ExprStmt(expr=expr):
                self._expr(expr)

    def _loop(self, names: dict[str, Span], body: ast.Block) -> None:
        self.flow.append("loop")
        self._scoped(names, body)
        self.flow.pop()

    def _loop_exit(self, word: str, span: Span) -> None:
        if "loop" not in self.flow:
            self._error(f"{word} outside a loop", span)
        elif self.flow[-1] != "loop":
            self._error(f"{word} cannot leave an {self.flow[-1]} block", span)

    def _atomic(self, stmt: ast.Atomic) -> None:
        if self.body.kind == "fn":
            self._error(
                f"atomic uses transaction instructions, and fn {self.body.name} is pure: "
                "instructions may only appear in behaviors and main",
                stmt.span,
            )
        if stmt.controller is not None:
            self._controller(stmt.controller, "`atomic under`")
        self.flow.append("atomic")
        self._scoped({}, stmt.body)
        self.flow.pop()
        if stmt.handler is not None:
            names = {}
            for bound in (stmt.error_name, stmt.kind_name):
                if bound is not None:
                    self._not_reserved(bound, stmt.handler.span)
                    if bound in names:
                        self._error(f"'{bound}' is bound twice by this else", stmt.handler.span)
                    names[bound] = stmt.handler.span
            self._scoped(names, stmt.handler)

    def _only_in_test(self, word: str, span: Span) -> None:
        if self.body.kind != "test":
            self._error(
                f'{word} is only allowed in a test: write it inside `test "name" {{ ... }}`',
                span,
            )

    def _expect_fail(self, stmt: ast.ExpectFail) -> None:
        self._only_in_test("expect_fail", stmt.span)
        if stmt.kind is not None and stmt.kind not in _ERROR_KINDS:
            self._error(
                f"unknown error kind '{stmt.kind}': expect_fail takes the kind a failure "
                'reports, such as Failed or TxConflict, before its optional "message"',
                stmt.span,
                _did_you_mean(stmt.kind, _ERROR_KINDS),
            )
        self.flow.append("expect_fail")
        self._scoped({}, stmt.body)
        self.flow.pop()

    def _is_local(self, name: str) -> bool:
        for scope in self.scopes:  # noqa: SIM110 (any() makes a generator per name: slower)
            if name in scope:
                return True
        return False

    def _assignable(self, name: str, span: Span) -> None:
        if self._is_local(name) or name in self.body.fields:
            return
        if name in self.field_owner:
            self._field_outside(name, span)
        else:
            self._error(
                f"assignment to undeclared variable '{name}' (declare it with `let {name} = ...`)",
                span,
                _did_you_mean(name, self._variables()),
            )

    def _variables(self) -> list[str]:
        """The names a value may be read from here: locals and the behavior's fields."""
        return [name for scope in self.scopes for name in scope] + list(self.body.fields)

    def _field_outside(self, name: str, span: Span) -> None:
        self._error(
            f"'{name}' is a field of behavior {self.field_owner[name]} "
            "and cannot be used outside it",
            span,
        )

    # ------------------------------------------------------------ expressions

    def _expr(self, expr: ast.Expr) -> None:
        match expr:  # the commonest kinds first: each case is a type test
            case ast.Name():
                self._name(expr)
            case ast.Literal():
                pass  # a constant is always fine
            case ast.BinOp(op=op, left=left, right=right):
                needs = _NEEDS_BY_OP.get(op)
                self._value(left, needs)
                self._value(right, needs)
            case ast.ListExpr(items=items):
                for item in items:
                    self._expr(item)
            case ast.PairExpr(first=first, second=second):
                self._expr(first)
                self._expr(second)
            case ast.JustExpr(value=inner):
                self._expr(inner)
            case ast.Not(operand=inner):
                self._value(inner, "'not' needs a bool")
            case ast.Index(base=base, index=index):
                self._value(base, "indexing needs a list or a string")
                self._value(index, "an index is a nat")
            case ast.Slice(base=base, start=start, end=end):
                self._value(base, "slicing needs a list or a string")
                for part in (start, end):
                    if part is not None:
                        self._value(part, "a slice bound is a nat")
            case ast.Call():
                self._call(expr)
            case ast.Create(behavior=behavior, controller=controller, span=span):
                self._no_instruction_in_fn("create", span)
                item = self.items.get(behavior)
                if item is None:
                    behaviors = [
                        name
                        for name, other in self.items.items()
                        if isinstance(other, ast.BehaviorDef | ast.ExternBehavior)
                    ]
                    hint = _did_you_mean(behavior, behaviors)
                    self._error(f"undefined behavior '{behavior}'", span, hint)
                elif not isinstance(item, ast.BehaviorDef | ast.ExternBehavior):
                    self._error(f"'{behavior}' is not a behavior", span)
                if controller is not None:
                    self._controller(controller, "`create ... under`")
            case ast.ContextExpr(which=which, span=span):
                self._no_instruction_in_fn(which, span)

    def _name(self, expr: ast.Name, keywords: tuple[str, ...] = _VALUE_KEYWORDS) -> None:
        """Check a name read as a value; ``keywords`` are what it may be a misspelling of."""
        name, span = expr.name, expr.span
        if self._is_local(name) or name in self.body.fields:
            return
        if name in self.field_owner:
            self._field_outside(name, span)
        elif name in self.functions:
            self._error(f"'{name}' is a function: call it as {name}(...)", span)
        elif isinstance(self.items.get(name), ast.BehaviorDef | ast.ExternBehavior):
            self._error(f"'{name}' is a behavior: write `create {name}` to make an object", span)
        elif name in BUILTINS or name in _CALLABLE:
            self._error(f"'{name}' is a builtin: call it as {name}(...)", span)
        else:
            hint = _did_you_mean(name, [*self._variables(), *keywords])
            self._error(f"undefined name '{name}'", span, hint)

    def _value(self, expr: ast.Expr, needs: str | None) -> None:
        """Check ``expr``, used where ``needs`` says what fits (None: anything does)."""
        self._expr(expr)
        if needs is None or not (self.call_answers or isinstance(expr, ast.Call)):
            return  # no `call` answer can be here (see `_call_answer`): the common case
        answer = self._call_answer(expr)
        if answer is None:
            return
        what = "the answer of `call`" if answer == "call" else f"'{answer}' (a `call` answer)"
        self.diagnostics.append(
            warning(
                f"{needs}, but {what} is a maybe (`just` v, or `nothing` when the call "
                "fails): this fails when it runs",
                expr.span,
                hint=_CALL_HINT,
            )
        )

    def _call_answer(self, expr: ast.Expr) -> str | None:
        """Whether ``expr`` is the answer of `call`: "call" for a `call(...)` itself, the
        variable's name for a variable that only ever holds one (declared from it, never
        assigned), else None."""
        match expr:
            case ast.Call(name="call", unwrap=False):
                return "call"
            case ast.Name(name=name) if self.call_answers and name not in self.body.assigned:
                for scope in reversed(self.scopes):  # the innermost declaration
                    if name in scope:
                        return name if scope[name] in self.call_answers else None
        return None

    def _controller(self, expr: ast.Expr, where: str) -> None:
        """Check an expression given as a controller, which must be a name, not an object."""
        self._expr(expr)
        if _is_object(expr):
            self._error(
                f"the controller of {where} must be a name (a string), not an object",
                expr.span,
                _CONTROLLER_HINT,
            )

    def _call(self, call: ast.Call) -> None:
        name = call.name
        if name in _CALLABLE:
            self._instruction(call, _CALLABLE[name])
            return
        if name in self.functions:
            self._arity(call, len(self.functions[name].params), 0)
        elif name in BUILTINS:
            self._arity(call, BUILTINS[name].arity, 0)
        elif self._is_local(name) or name in self.body.fields:
            self._error(f"'{name}' is a variable, not a function", call.span)
        else:
            callables = [*self.functions, *BUILTINS, *filter(str.isidentifier, _CALLABLE)]
            hint = _did_you_mean(name, callables)
            self._error(f"undefined function '{name}'", call.span, hint)
        if call.unsafe:
            self._error(
                f"`unsafe` is only for unsafe instructions, and {name} is not an instruction",
                call.span,
            )
        needs = _NEEDS_BY_BUILTIN.get(name)  # no fn can take a builtin's name
        for index, arg in enumerate(call.args):
            self._value(arg, needs if index == 0 else None)

    def _instruction(self, call: ast.Call, instruction: Instruction) -> None:
        name = call.name
        self._no_instruction_in_fn(name, call.span)
        if not instruction.safe and not call.unsafe:
            self._error(
                f"{name} is an unsafe instruction (it looks past the objects a behavior is "
                f"given): write `unsafe {name}(...)` to opt in",
                call.span,
            )
        elif instruction.safe and call.unsafe:
            self._error(f"{name} is a safe instruction: remove `unsafe`", call.span)
        self._arity(call, instruction.arity, instruction.optional)
        for index, arg in enumerate(call.args):
            param = instruction.params[index] if index < instruction.arity else ""
            if param in _FUNCTION_PARAMS:
                self._function_argument(name, param, arg)
            elif param == "controller":
                self._controller(arg, name)
            else:
                self._expr(arg)

    def _function_argument(self, instruction: str, param: str, arg: ast.Expr) -> None:
        if isinstance(arg, ast.Name) and arg.name in self.functions:
            return
        if isinstance(arg, ast.Name):
            self._error(
                f"'{arg.name}' is not a fn of this file: the {param} of {instruction} "
                "must name one",
                arg.span,
                _did_you_mean(arg.name, self.functions),
            )
        else:
            self._error(
                f"the {param} of {instruction} must be the bare name of a fn of this file",
                arg.span,
            )

    def _arity(self, call: ast.Call, arity: int, optional: int) -> None:
        given, least = len(call.args), arity - optional
        if least <= given <= arity:
            return
        if optional == 0:
            expected = _count(arity)
        elif optional == 1:
            expected = f"{least} or {arity} arguments"
        else:
            expected = f"{least} to {arity} arguments"
        were = "was" if given == 1 else "were"
        self._error(f"{call.name} takes {expected}, but {given} {were} given", call.span)

    def _no_instruction_in_fn(self, name: str, span: Span) -> None:
        if self.body.kind == "fn":
            self._error(
                f"{name} is an AVM instruction, and fn {self.body.name} is pure: "
                "instructions may only appear in behaviors and main",
                span,
            )
