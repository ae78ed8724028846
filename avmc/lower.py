"""Lowering from the checked AST to Tape IR (DESIGN.md §4).

One IR function per behavior (kind BEHAVIOR: the message in register 0, clauses tried in
order), per `fn` (kind PURE) and for `main` (kind MAIN). Locals live in virtual registers;
fields are `get_state` / `set_state` effects around GETFIELD / SETFIELD.

`atomic` lowers to::

    try err, Lhandler          ; a failure until endtry jumps to Lhandler with err set
    t = effect begin_tx (controller or nothing)
    <body>
    effect commit_tx (t)       ; inside the try: a failing begin or commit runs the handler
    endtry
    jmp Lafter
  Lhandler:
    kind = effect atomic_failed (t)   ; abort t if it is still open (a failed commit rolled
                                      ; it back already, the body may have closed it, begin
                                      ; may have failed); the caught error's kind
    <handler, err and kind bound>  or  effect rethrow (err); fail err

A `return` inside the body commits every enclosing atomic, innermost first, each inside its
own try (commit, endtry), before `ret`.
"""

from __future__ import annotations

from avm_vm.diagnostics import Span
from avm_vm.format.instructions import BY_NAME
from avm_vm.format.opcodes import Op
from avm_vm.format.program import FunctionKind
from avm_vm.values import NOTHING, Just, Pair, Value
from avmc import ast
from avmc.ir import IrBehavior, IrFunction, IrProgram
from avmc.lower_builder import FunctionBuilder, Loop, ModuleInfo
from avmc.lower_expr import effect, lower_cond, lower_expr, lower_fresh
from avmc.lower_patterns import lower_pattern

MAIN_NAME = "main"


def lower(module: ast.Module, filename: str) -> IrProgram:
    """The IR of a module that passed the checker."""
    info = ModuleInfo(
        frozenset(item.name for item in module.items if isinstance(item, ast.FunctionDef))
    )
    functions: list[IrFunction] = []
    behaviors: list[IrBehavior] = []
    main = None
    for item in module.items:
        if isinstance(item, ast.BehaviorDef):
            functions.append(_behavior(item, info))
            behaviors.append(IrBehavior(item.name, item.name, tuple(f.name for f in item.fields)))
        elif isinstance(item, ast.FunctionDef):
            functions.append(_function(item, info))
        elif isinstance(item, ast.MainDef):
            b = FunctionBuilder(MAIN_NAME, FunctionKind.MAIN, 0, info, item.span)
            lower_block(b, item.body)
            functions.append(b.finish(item.span))
            main = MAIN_NAME
    return IrProgram(filename, functions, behaviors, main)


def _function(item: ast.FunctionDef, info: ModuleInfo) -> IrFunction:
    b = FunctionBuilder(item.name, FunctionKind.PURE, len(item.params), info, item.span)
    for index, param in enumerate(item.params):
        b.bind(param.name, index)
    lower_block(b, item.body)
    return b.finish(item.span)


def _behavior(item: ast.BehaviorDef, info: ModuleInfo) -> IrFunction:
    b = FunctionBuilder(item.name, FunctionKind.BEHAVIOR, 1, info, item.span)
    b.fields = {f.name: index for index, f in enumerate(item.fields)}
    b.defaults = tuple(constant_value(f.default) for f in item.fields)
    for clause in item.clauses:
        _alternative(b, clause.pattern, clause.guard, clause.body, 0, None)
    _no_match(b, f"no clause of behavior {item.name} matches the message ", 0, item.span)
    return b.finish(item.span)


def _alternative(
    b: FunctionBuilder,
    pattern: ast.Pattern,
    guard: ast.Expr | None,
    body: ast.Block,
    subject: int,
    done: int | None,
) -> None:
    """One clause or arm: match, check the guard, run the body; a mismatch goes on after it.

    The body ends by jumping to ``done`` or, when ``done`` is None, by returning nothing."""
    mismatch, run = b.label(), b.label()
    b.push_scope()
    lower_pattern(b, pattern, subject, mismatch)
    if guard is not None:
        lower_cond(b, guard, run, mismatch)
    b.start(run)
    lower_block(b, body)
    b.pop_scope()
    if done is not None:
        b.goto(done, body.span)
    elif not b.terminated:
        b.emit(Op.RET, (b.load(NOTHING, body.span),), body.span)
    b.start(mismatch)


def _no_match(b: FunctionBuilder, prefix: str, subject: int, span: Span) -> None:
    text = b.emit_value(Op.TOSTR, (subject,), span, None)
    message = b.emit_value(Op.CONCAT, (b.load(prefix, span), text), span, None)
    b.emit(Op.FAIL, (message,), span)


def constant_value(e: ast.Expr) -> Value:
    """The value of a constant expression (field defaults)."""
    if isinstance(e, ast.Literal):
        return e.value
    if isinstance(e, ast.ListExpr):
        return tuple(constant_value(item) for item in e.items)
    if isinstance(e, ast.PairExpr):
        return Pair(constant_value(e.first), constant_value(e.second))
    if isinstance(e, ast.JustExpr):
        return Just(constant_value(e.value))
    raise AssertionError(f"field default is not a constant: {e!r}")


# ---------------------------------------------------------------- statements


def lower_block(b: FunctionBuilder, block: ast.Block) -> None:
    b.push_scope()
    for stmt in block.stmts:
        _STATEMENTS[type(stmt)](b, stmt)
    b.pop_scope()


def _let(b: FunctionBuilder, s: ast.Let) -> None:
    reg = b.reg()
    lower_expr(b, s.value, reg)
    b.bind(s.name, reg)  # after the value: `let x = x + 1` reads the outer x


def _assign(b: FunctionBuilder, s: ast.Assign) -> None:
    value = s.value
    if s.op is not None:
        value = ast.BinOp(s.op, ast.Name(s.name, s.span), s.value, s.span)
    reg = b.lookup(s.name)
    if reg is not None:
        lower_expr(b, value, reg)
        return
    new = lower_expr(b, value)
    state = effect(b, BY_NAME["get_state"], (), s.span)
    updated = b.emit_value(Op.SETFIELD, (state, b.fields[s.name], new, b.defaults), s.span, None)
    effect(b, BY_NAME["set_state"], (updated,), s.span)


def _if(b: FunctionBuilder, s: ast.If) -> None:
    then, done = b.label(), b.label()
    otherwise = done if s.otherwise is None else b.label()
    lower_cond(b, s.cond, then, otherwise)
    b.start(then)
    lower_block(b, s.then)
    if s.otherwise is not None:
        b.goto(done, s.span)
        b.start(otherwise)
        lower_block(b, s.otherwise)
    b.start(done)


def _while(b: FunctionBuilder, s: ast.While) -> None:
    head, body, done = b.label(), b.label(), b.label()
    b.start(head)
    lower_cond(b, s.cond, body, done)
    b.start(body)
    b.loops.append(Loop(head, done))
    lower_block(b, s.body)
    b.loops.pop()
    b.goto(head, s.span)
    b.start(done)


def _for(b: FunctionBuilder, s: ast.For) -> None:
    items = lower_fresh(b, s.iterable)  # evaluated once, unaffected by the body
    count = b.emit_value(Op.LEN, (items,), s.span, None)
    index = b.load(0, s.span)
    head, body, step, done = b.label(), b.label(), b.label(), b.label()
    b.start(head)
    b.branch(b.emit_value(Op.LT, (index, count), s.span, None), body, done, s.span)
    b.start(body)
    b.push_scope()
    b.bind(s.var, b.emit_value(Op.INDEX, (items, index), s.span, None))
    b.loops.append(Loop(step, done))
    lower_block(b, s.body)
    b.loops.pop()
    b.pop_scope()
    b.start(step)
    b.emit_value(Op.ADD, (index, b.load(1, s.span)), s.span, index)
    b.jump(head, s.span)
    b.start(done)


def _match(b: FunctionBuilder, s: ast.Match) -> None:
    subject = lower_expr(b, s.subject)
    done = b.label()
    for arm in s.arms:
        _alternative(b, arm.pattern, arm.guard, arm.body, subject, done)
    _no_match(b, "no match arm matches the value ", subject, s.span)
    b.start(done)


def _return(b: FunctionBuilder, s: ast.Return) -> None:
    value = b.load(NOTHING, s.span) if s.value is None else lower_expr(b, s.value)
    for tx in reversed(b.atomics):  # innermost first, each commit inside its own try
        _commit(b, tx, s.span)
    b.emit(Op.RET, (value,), s.span)


def _commit(b: FunctionBuilder, tx: int, span: Span) -> None:
    """Commit an atomic's transaction and leave its try: a failing commit runs its handler."""
    effect(b, BY_NAME["commit_tx"], (tx,), span)
    b.emit(Op.ENDTRY, (), span)


def _break(b: FunctionBuilder, s: ast.Break) -> None:
    b.jump(b.loops[-1].break_label, s.span)


def _continue(b: FunctionBuilder, s: ast.Continue) -> None:
    b.jump(b.loops[-1].continue_label, s.span)


def _fail(b: FunctionBuilder, s: ast.Fail) -> None:
    b.emit(Op.FAIL, (lower_expr(b, s.message),), s.span)


def _atomic(b: FunctionBuilder, s: ast.Atomic) -> None:
    error, handler, done, tx = b.reg(), b.label(), b.label(), b.reg()
    b.emit(Op.TRY, (error, handler), s.span)
    controller = b.load(NOTHING, s.span) if s.controller is None else lower_expr(b, s.controller)
    effect(b, BY_NAME["begin_tx"], (controller,), s.span, tx)
    b.atomics.append(tx)
    lower_block(b, s.body)
    b.atomics.pop()
    if not b.terminated:
        _commit(b, tx, s.span)
        b.jump(done, s.span)
    b.start(handler)
    kind = effect(b, BY_NAME["atomic_failed"], (tx,), s.span)
    if s.handler is None:  # fail again, as the body did, once the transaction is rolled back
        effect(b, BY_NAME["rethrow"], (error,), s.span)
        b.emit(Op.FAIL, (error,), s.span)  # not reached: rethrow always fails
    else:
        b.push_scope()
        if s.error_name is not None:
            b.bind(s.error_name, error)
        if s.kind_name is not None:
            b.bind(s.kind_name, kind)
        lower_block(b, s.handler)
        b.pop_scope()
    b.start(done)


def _expr_stmt(b: FunctionBuilder, s: ast.ExprStmt) -> None:
    lower_expr(b, s.expr)


_STATEMENTS = {
    ast.Let: _let,
    ast.Assign: _assign,
    ast.If: _if,
    ast.While: _while,
    ast.For: _for,
    ast.Match: _match,
    ast.Return: _return,
    ast.Break: _break,
    ast.Continue: _continue,
    ast.Fail: _fail,
    ast.Atomic: _atomic,
    ast.ExprStmt: _expr_stmt,
}
