"""Lowering of expressions and of branch conditions to Tape IR.

``lower_expr(b, e, dst)`` returns the register holding the value of ``e``. With ``dst`` set the
value lands in ``dst``, written by the last op only, after every operand has been read, so
``x = x + 1`` can target ``x`` directly. Without it the result may be a local variable's own
register: callers copy it when they need a value of their own.
"""

from __future__ import annotations

from collections.abc import Callable

from avm_vm.diagnostics import Span
from avm_vm.format.instructions import BY_NAME, BY_SOURCE, Instruction
from avm_vm.format.opcodes import Op
from avm_vm.values import NOTHING, render
from avmc import ast
from avmc.builtins import BUILTINS
from avmc.lower_builder import FunctionBuilder

BINARY_OPS: dict[str, Op] = {
    "+": Op.ADD,
    "-": Op.SUB,
    "*": Op.MUL,
    "/": Op.DIV,
    "%": Op.MOD,
    "++": Op.CONCAT,
    "==": Op.EQ,
    "!=": Op.NE,
    "<": Op.LT,
    "<=": Op.LE,
    ">": Op.GT,
    ">=": Op.GE,
}

# Instruction parameters that take a pure function, written as its bare name.
FUNCTION_PARAMS = frozenset({"predicate", "function"})


def lower_expr(b: FunctionBuilder, e: ast.Expr, dst: int | None = None) -> int:
    return _LOWER[type(e)](b, e, dst)


def lower_fresh(b: FunctionBuilder, e: ast.Expr) -> int:
    """The value of ``e`` in a register no variable owns (safe to keep while locals change)."""
    return lower_expr(b, e, b.reg() if isinstance(e, ast.Name) else None)


def lower_cond(b: FunctionBuilder, e: ast.Expr, if_true: int, if_false: int) -> None:
    """End the current block with a branch on ``e``, which must be a bool at run time."""
    if isinstance(e, ast.BinOp) and e.op in ("and", "or"):
        middle = b.label()
        if e.op == "and":
            lower_cond(b, e.left, middle, if_false)
        else:
            lower_cond(b, e.left, if_true, middle)
        b.start(middle)
        lower_cond(b, e.right, if_true, if_false)
    elif isinstance(e, ast.Not):
        lower_cond(b, e.operand, if_false, if_true)
    elif isinstance(e, ast.Literal) and type(e.value) is bool:
        b.jump(if_true if e.value else if_false, e.span)
    else:
        b.branch(lower_expr(b, e), if_true, if_false, e.span)


def read_field(b: FunctionBuilder, index: int, span: Span | None, dst: int | None) -> int:
    return b.emit_value(Op.GETFIELD, (field_state(b, span), index, b.defaults), span, dst)


def field_state(b: FunctionBuilder, span: Span | None) -> int:
    """The register with the object's state for a field read or write: read with
    `get_state`, unless the sugar read it already and nothing since could change it (no
    effect, no block boundary), so `count += 1` reads the state once, not twice. A write
    (`set_state`) is an effect like any other: the next field read reads again."""
    if b.state is None:
        b.state = effect(b, BY_NAME["get_state"], (), span)
    return b.state


def effect(
    b: FunctionBuilder,
    instr: Instruction,
    args: tuple[int, ...],
    span: Span | None,
    dst: int | None = None,
) -> int:
    b.state = None  # whatever it does, the state may not be what the sugar read
    return b.emit_value(Op.EFFECT, (instr.number, args), span, dst)


# ---------------------------------------------------------------- one function per node type


def _literal(b: FunctionBuilder, e: ast.Literal, dst: int | None) -> int:
    return b.load(e.value, e.span, dst)


def _name(b: FunctionBuilder, e: ast.Name, dst: int | None) -> int:
    reg = b.lookup(e.name)
    if reg is not None:
        return reg if dst is None or dst == reg else b.emit_value(Op.MOVE, (reg,), e.span, dst)
    index = b.fields.get(e.name)
    if index is None:
        raise AssertionError(f"unresolved name {e.name!r} reached the lowering")
    return read_field(b, index, e.span, dst)


def _list(b: FunctionBuilder, e: ast.ListExpr, dst: int | None) -> int:
    items = tuple(lower_expr(b, item) for item in e.items)
    return b.emit_value(Op.MKLIST, (items,), e.span, dst)


def _pair(b: FunctionBuilder, e: ast.PairExpr, dst: int | None) -> int:
    first = lower_expr(b, e.first)
    second = lower_expr(b, e.second)
    return b.emit_value(Op.MKPAIR, (first, second), e.span, dst)


def _just(b: FunctionBuilder, e: ast.JustExpr, dst: int | None) -> int:
    return b.emit_value(Op.MKJUST, (lower_expr(b, e.value),), e.span, dst)


def _binop(b: FunctionBuilder, e: ast.BinOp, dst: int | None) -> int:
    op = BINARY_OPS.get(e.op)
    if op is None:  # `and` / `or` as a value: branch, then load the outcome on each path
        return _materialize(b, e, dst)
    left = lower_expr(b, e.left)
    right = lower_expr(b, e.right)
    return b.emit_value(op, (left, right), e.span, dst)


def _materialize(b: FunctionBuilder, e: ast.Expr, dst: int | None) -> int:
    target = b.reg() if dst is None else dst
    if_true, if_false, done = b.label(), b.label(), b.label()
    lower_cond(b, e, if_true, if_false)
    for label, value in ((if_true, True), (if_false, False)):
        b.start(label)
        b.load(value, e.span, target)
        b.jump(done, e.span)
    b.start(done)
    return target


def _not(b: FunctionBuilder, e: ast.Not, dst: int | None) -> int:
    return b.emit_value(Op.NOT, (lower_expr(b, e.operand),), e.span, dst)


def _index(b: FunctionBuilder, e: ast.Index, dst: int | None) -> int:
    base = lower_expr(b, e.base)
    index = lower_expr(b, e.index)
    return b.emit_value(Op.INDEX, (base, index), e.span, dst)


def _slice(b: FunctionBuilder, e: ast.Slice, dst: int | None) -> int:
    base = lower_expr(b, e.base)
    start = b.load(0, e.span) if e.start is None else lower_expr(b, e.start)
    end = b.emit_value(Op.LEN, (base,), e.span, None) if e.end is None else lower_expr(b, e.end)
    return b.emit_value(Op.SLICE, (base, start, end), e.span, dst)


def _call(b: FunctionBuilder, e: ast.Call, dst: int | None) -> int:
    if e.unwrap and e.name == "call":  # the answer itself, or the callee's own failure
        return _instruction(b, BY_NAME["call_unwrap"], e.args, e.span, dst)
    target = None if e.unwrap else dst
    if e.name in b.module.functions:
        args = tuple(lower_expr(b, arg) for arg in e.args)
        result = b.emit_value(Op.CALL, (e.name, args), e.span, target)
    elif e.name in BUILTINS:
        args = tuple(lower_expr(b, arg) for arg in e.args)
        result = b.emit_value(BUILTINS[e.name].op, args, e.span, target)
    else:
        result = _instruction(b, BY_SOURCE[e.name], e.args, e.span, target)
    if e.unwrap:
        return b.emit_value(Op.UNWRAP, (result,), e.span, dst)
    return result


def _instruction(
    b: FunctionBuilder, instr: Instruction, args: list[ast.Expr], span: Span, dst: int | None
) -> int:
    regs = []
    for param, arg in zip(instr.params, args + [None] * (instr.arity - len(args)), strict=True):
        if arg is None:  # an optional argument left out
            regs.append(b.load(NOTHING, span))
        elif param in FUNCTION_PARAMS and _names_function(b, arg):
            regs.append(b.load(arg.name, arg.span))  # type: ignore[union-attr]
        else:
            regs.append(lower_expr(b, arg))
    return effect(b, instr, tuple(regs), span, dst)


def _names_function(b: FunctionBuilder, arg: ast.Expr) -> bool:
    return (
        isinstance(arg, ast.Name) and b.lookup(arg.name) is None and arg.name in b.module.functions
    )


def _create(b: FunctionBuilder, e: ast.Create, dst: int | None) -> int:
    name = ast.Literal(e.behavior, e.span)
    args = [name] if e.controller is None else [name, e.controller]
    return _instruction(b, BY_NAME["create_obj"], args, e.span, dst)


def _context(b: FunctionBuilder, e: ast.ContextExpr, dst: int | None) -> int:
    return effect(b, BY_SOURCE[e.which], (), e.span, dst)


_LOWER: dict[type, Callable[[FunctionBuilder, ast.Expr, int | None], int]] = {
    ast.Literal: _literal,
    ast.Name: _name,
    ast.ListExpr: _list,
    ast.PairExpr: _pair,
    ast.JustExpr: _just,
    ast.BinOp: _binop,
    ast.Not: _not,
    ast.Index: _index,
    ast.Slice: _slice,
    ast.Call: _call,
    ast.Create: _create,
    ast.ContextExpr: _context,
}


# ---------------------------------------------------------------- source text of an expression

# Binding strength of each binary operator (grammar/avm.lark, loosest first); `not` binds at
# 3, `just` and `create` at 8, postfix forms at 9 and atoms at 10.
_STRENGTH = {
    "or": 1,
    "and": 2,
    **dict.fromkeys(("==", "!=", "<", "<=", ">", ">="), 4),
    "++": 5,
    "+": 6,
    "-": 6,
    "*": 7,
    "/": 7,
    "%": 7,
}
COMPARISONS = frozenset(("==", "!=", "<", "<=", ">", ">="))


def expr_text(e: ast.Expr) -> str:
    """``e`` written as source, with only the parentheses it needs (assertion messages)."""
    return _text(e, 0)


def _text(e: ast.Expr, context: int) -> str:
    text, strength = _shown(e)
    return f"({text})" if strength < context else text


def _shown(e: ast.Expr) -> tuple[str, int]:
    match e:
        case ast.Literal(value=value):
            return render(value), 10
        case ast.Name(name=name) | ast.ContextExpr(which=name):
            return name, 10
        case ast.ListExpr(items=items):
            return f"[{', '.join(_text(item, 0) for item in items)}]", 10
        case ast.PairExpr(first=first, second=second):
            return f"({_text(first, 0)}, {_text(second, 0)})", 10
        case ast.JustExpr(value=value):
            return f"just {_text(value, 8)}", 8
        case ast.Create(behavior=behavior, controller=controller):
            under = "" if controller is None else f" under {_text(controller, 9)}"
            return f"create {behavior}{under}", 8
        case ast.Not(operand=operand):
            return f"not {_text(operand, 3)}", 3
        case ast.BinOp(op=op, left=left, right=right):
            strength = _STRENGTH[op]
            # Left-associative, except comparisons, which do not chain.
            left_context = strength + 1 if op in COMPARISONS else strength
            return f"{_text(left, left_context)} {op} {_text(right, strength + 1)}", strength
        case ast.Index(base=base, index=index):
            return f"{_text(base, 9)}[{_text(index, 0)}]", 9
        case ast.Slice(base=base, start=start, end=end):
            bounds = ":".join("" if part is None else _text(part, 0) for part in (start, end))
            return f"{_text(base, 9)}[{bounds}]", 9
        case ast.Call(name=name, args=args, unwrap=unwrap, unsafe=unsafe):
            prefix = "unsafe " if unsafe else ""
            bang = "!" if unwrap else ""
            return f"{prefix}{name}{bang}({', '.join(_text(arg, 0) for arg in args)})", 9
    raise AssertionError(f"not an expression: {e!r}")
