"""Lowering of patterns: tests that branch away on a mismatch, then bindings.

Each test ends the current block with ``JMPF test, on_fail; JMP next`` and matching goes on in
``next``; parts of the subject are taken only after the test that makes taking them safe.
Bound names go into the builder's current scope; the caller opens a scope per clause or arm.
"""

from __future__ import annotations

from avm_vm.diagnostics import Span
from avm_vm.format.opcodes import Op
from avm_vm.values import NOTHING, Kind
from avmc import ast
from avmc.lower_builder import FunctionBuilder


def lower_pattern(b: FunctionBuilder, p: ast.Pattern, subject: int, on_fail: int) -> None:
    """Match the value in ``subject`` against ``p``; jump to ``on_fail`` when it does not match."""
    if isinstance(p, ast.PWildcard):
        return
    if isinstance(p, ast.PBind):
        b.bind(p.name, b.emit_value(Op.MOVE, (subject,), p.span, None))
    elif isinstance(p, ast.PLiteral):
        if p.value is NOTHING:
            _test(b, Op.ISKIND, (subject, int(Kind.NOTHING)), p.span, on_fail)
        else:
            _test(b, Op.EQ, (subject, b.load(p.value, p.span)), p.span, on_fail)
    elif isinstance(p, ast.PList):
        count = len(p.items)
        op = Op.ISLEN if p.rest is None else Op.ISLENGE
        _test(b, op, (subject, count), p.span, on_fail)
        for index, item in enumerate(p.items):
            if not isinstance(item, ast.PWildcard):
                _part(b, item, Op.INDEX, (subject, b.load(index, item.span)), on_fail)
        if p.rest not in (None, "_"):
            b.bind(p.rest, b.emit_value(Op.DROP, (subject, count), p.span, None))  # type: ignore[arg-type]
    elif isinstance(p, ast.PPair):
        _test(b, Op.ISKIND, (subject, int(Kind.PAIR)), p.span, on_fail)
        _part(b, p.first, Op.FST, (subject,), on_fail)
        _part(b, p.second, Op.SND, (subject,), on_fail)
    elif isinstance(p, ast.PJust):
        _test(b, Op.ISKIND, (subject, int(Kind.JUST)), p.span, on_fail)
        _part(b, p.inner, Op.UNWRAP, (subject,), on_fail)
    else:
        raise AssertionError(f"unknown pattern {p!r}")


def _test(b: FunctionBuilder, op: Op, operands: tuple, span: Span, on_fail: int) -> None:
    matched = b.label()
    b.branch(b.emit_value(op, operands, span, None), matched, on_fail, span)
    b.start(matched)


def _part(b: FunctionBuilder, p: ast.Pattern, op: Op, operands: tuple, on_fail: int) -> None:
    """Take a part of the subject with ``op`` and match it against ``p``."""
    if isinstance(p, ast.PWildcard):
        return
    part = b.emit_value(op, operands, p.span, None)
    if isinstance(p, ast.PBind):
        b.bind(p.name, part)  # the part is a fresh register: bind it without a copy
    else:
        lower_pattern(b, p, part, on_fail)
