"""Lowering from the checked AST to Tape IR (DESIGN.md §4).

One IR function per behavior (kind BEHAVIOR: the message in register 0, clauses tried in
order; a run of clauses whose patterns start with literal strings is entered through a
binary search on the message's head, `_clauses`), per `fn` (kind PURE) and for `main` (kind
MAIN). Locals live in virtual registers; fields are `get_state` / `set_state` effects around
GETFIELD / SETFIELD.

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

A `test` (only with ``tests=True``) is a MAIN function named ``TEST_PREFIX + name``; its
`assert` is a branch to a `fail` with the rendered expression, and `expect_fail` is a try
whose handler compares the caught kind (`atomic_failed` of no transaction) and message.
"""

from __future__ import annotations

from itertools import groupby

from avm_vm.diagnostics import Span
from avm_vm.format.instructions import BY_NAME
from avm_vm.format.opcodes import Op
from avm_vm.format.program import FunctionKind
from avm_vm.values import NOTHING, Just, Pair, Value, render
from avmc import ast
from avmc.ir import IrBehavior, IrFunction, IrProgram
from avmc.lower_builder import FunctionBuilder, Loop, ModuleInfo
from avmc.lower_expr import (
    BINARY_OPS,
    COMPARISONS,
    effect,
    expr_text,
    field_state,
    lower_cond,
    lower_expr,
    lower_fresh,
)
from avmc.lower_patterns import (
    LINEAR_HEADS,
    dispatch_on_head,
    literal_head,
    lower_pattern,
    without_head,
)

MAIN_NAME = "main"
TEST_PREFIX = "test "  # no function name has a space: a test cannot clash with one
# Distinct literal heads from which a run of clauses is dispatched by a binary search: below,
# trying the clauses in turn costs about as much.
MIN_DISPATCH_HEADS = 2 * LINEAR_HEADS


def lower(module: ast.Module, filename: str, *, tests: bool = False) -> IrProgram:
    """The IR of a module that passed the checker; its tests only when ``tests`` is set."""
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
        elif isinstance(item, ast.TestDef) and tests:
            b = FunctionBuilder(TEST_PREFIX + item.name, FunctionKind.MAIN, 0, info, item.span)
            lower_block(b, item.body)
            functions.append(b.finish(item.span))
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
    _clauses(b, item.clauses, item.span)
    _no_match(b, f"no clause of behavior {item.name} matches the message ", 0, item.span)
    return b.finish(item.span)


def _clauses(b: FunctionBuilder, clauses: list[ast.Clause], span: Span) -> None:
    """A behavior's clauses, the message in register 0: the first whose pattern matches and
    guard holds runs. Each maximal run of clauses whose patterns start with a literal string
    is entered by a binary search on the message's head, which goes to that head's clauses,
    tried in order; when none of them runs (or no head matches), the clauses after the run
    are tried. Other clauses are tried one after the other."""
    for headed, group in groupby(clauses, lambda clause: literal_head(clause.pattern) is not None):
        run = list(group)
        by_head: dict[str, list[ast.Clause]] = {}
        for clause in run if headed else ():
            by_head.setdefault(literal_head(clause.pattern), []).append(clause)  # type: ignore[arg-type]
        if len(by_head) < MIN_DISPATCH_HEADS:
            for clause in run:
                _alternative(b, clause.pattern, clause.guard, clause.body, 0, None)
            continue
        _dispatched(b, by_head, span)


def _dispatched(b: FunctionBuilder, by_head: dict[str, list[ast.Clause]], span: Span) -> None:
    """A run of clauses, grouped by the literal string their patterns start with: a binary
    search on the message's head, then that head's clauses in order; then what follows."""
    after = b.label()
    heads = sorted(by_head)

    def arrive(index: int) -> None:
        clauses = by_head[heads[index]]
        for clause in clauses:
            pattern = without_head(clause.pattern)  # the search matched the head
            last = after if clause is clauses[-1] else None
            _alternative(b, pattern, clause.guard, clause.body, 0, None, last)

    dispatch_on_head(b, 0, heads, arrive, after, span)
    b.start(after)


def _alternative(
    b: FunctionBuilder,
    pattern: ast.Pattern,
    guard: ast.Expr | None,
    body: ast.Block,
    subject: int,
    done: int | None,
    mismatch: int | None = None,
) -> None:
    """One clause or arm: match, check the guard, run the body; a mismatch goes on after it
    (or to ``mismatch`` when given).

    The body ends by jumping to ``done`` or, when ``done`` is None, by returning nothing."""
    after = mismatch is None
    if mismatch is None:
        mismatch = b.label()
    b.push_scope()
    lower_pattern(b, pattern, subject, mismatch)
    if guard is not None:
        run = b.label()
        lower_cond(b, guard, run, mismatch)
        b.start(run)
    lower_block(b, body)
    b.pop_scope()
    if done is not None:
        b.goto(done, body.span)
    elif not b.terminated:
        b.emit(Op.RET, (b.load(NOTHING, body.span),), body.span)
    if after:
        b.start(mismatch)


def _no_match(b: FunctionBuilder, prefix: str, subject: int, span: Span) -> None:
    _fail_with(b, [prefix, subject], span)


def _fail_with(b: FunctionBuilder, parts: list[str | int], span: Span) -> None:
    """Fail with the text of ``parts`` joined: strings as they are, registers through str()."""
    message = None
    for part in parts:
        if isinstance(part, str):
            text = b.load(part, span)
        else:
            text = b.emit_value(Op.TOSTR, (part,), span, None)
        message = text if message is None else b.emit_value(Op.CONCAT, (message, text), span, None)
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
    state = field_state(b, s.span)
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


def _assert(b: FunctionBuilder, s: ast.Assert) -> None:
    holds, broken = b.label(), b.label()
    parts: list[str | int] = [f"assertion failed: {expr_text(s.cond)}"]
    cond = s.cond
    if isinstance(cond, ast.BinOp) and cond.op in COMPARISONS:  # keep both sides to show them
        left, right = lower_expr(b, cond.left), lower_expr(b, cond.right)
        outcome = b.emit_value(BINARY_OPS[cond.op], (left, right), cond.span, None)
        b.branch(outcome, holds, broken, s.span)
        b.start(broken)
        shown = [_canonical(b, side, cond.span) for side in (left, right)]
        parts += [" (left: ", shown[0], ", right: ", shown[1], ")"]
    else:
        lower_cond(b, cond, holds, broken)
        b.start(broken)
    if s.message is not None:
        parts += [": ", lower_expr(b, s.message)]
    _fail_with(b, parts, s.span)
    b.start(holds)


def _canonical(b: FunctionBuilder, value: int, span: Span) -> int:
    """The canonical text of a value, strings quoted (str() leaves a string as it is): the
    text of the one-item list ``[value]`` without its brackets."""
    listed = b.emit_value(Op.MKLIST, ((value,),), span, None)
    text = b.emit_value(Op.TOSTR, (listed,), span, None)
    length = b.emit_value(Op.LEN, (text,), span, None)
    end = b.emit_value(Op.SUB, (length, b.load(1, span)), span, None)
    return b.emit_value(Op.SLICE, (text, b.load(1, span), end), span, None)


def _expect_fail(b: FunctionBuilder, s: ast.ExpectFail) -> None:
    error, handler, done = b.reg(), b.label(), b.label()
    wanted = "a failure"
    if s.kind is not None:
        wanted += f" of kind {s.kind}"
    if s.message is not None:
        wanted += f" with message {render(s.message)}"
    b.emit(Op.TRY, (error, handler), s.span)
    lower_block(b, s.body)
    if not b.terminated:
        b.emit(Op.ENDTRY, (), s.span)
        _fail_with(b, [f"expect_fail: expected {wanted}, but the block did not fail"], s.span)
    b.start(handler)
    kind = effect(b, BY_NAME["atomic_failed"], (b.load(NOTHING, s.span),), s.span)
    wrong = b.label()
    for expected, caught in ((s.kind, kind), (s.message, error)):
        if expected is not None:
            right = b.label()
            same = b.emit_value(Op.EQ, (caught, b.load(expected, s.span)), s.span, None)
            b.branch(same, right, wrong, s.span)
            b.start(right)
    b.jump(done, s.span)
    if s.kind is not None or s.message is not None:
        b.start(wrong)
        got = [", but the block failed with ", kind, ": ", error]
        _fail_with(b, [f"expect_fail: expected {wanted}", *got], s.span)
    b.start(done)


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
    ast.Assert: _assert,
    ast.ExpectFail: _expect_fail,
}
