"""Lowering of patterns: tests that branch away on a mismatch, then bindings.

Each test ends the current block with ``JMPF test, on_fail; JMP next`` and matching goes on in
``next``; parts of the subject are taken only after the test that makes taking them safe.
Bound names go into the builder's current scope; the caller opens a scope per clause or arm.

`dispatch_on_head` serves clauses whose patterns start with a literal string: it finds the
clauses a message may match by a binary search on the string at its head.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

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


# Heads at most as many as this are tested one after the other at the leaves of the search.
LINEAR_HEADS = 4


def literal_head(p: ast.Pattern) -> str | None:
    """The string a matching value's first item must equal, when ``p`` is a list pattern
    starting with a string literal."""
    if isinstance(p, ast.PList) and p.items and isinstance(p.items[0], ast.PLiteral):
        head = p.items[0].value
        return head if type(head) is str else None
    return None


def without_head(p: ast.Pattern) -> ast.Pattern:
    """``p`` (with a `literal_head`) with its head matching anything: for a value whose
    head is known to match."""
    assert isinstance(p, ast.PList)
    return replace(p, items=[ast.PWildcard(p.items[0].span), *p.items[1:]])


def dispatch_on_head(
    b: FunctionBuilder,
    subject: int,
    heads: Sequence[str],
    arrive: Callable[[int], None],
    on_none: int,
    span: Span,
) -> None:
    """Branch on the string heading the list in ``subject``: ``arrive(i)`` emits the code
    run when it is ``heads[i]`` (``heads`` sorted and distinct); ``on_none`` is where control
    goes when ``subject`` is not a list starting with one of them. A balanced binary search
    down to `LINEAR_HEADS` heads, tried in turn: at most log2(len(heads)) + LINEAR_HEADS
    string comparisons."""
    _test(b, Op.ISLENGE, (subject, 1), span, on_none)
    head = b.emit_value(Op.INDEX, (subject, b.load(0, span)), span, None)
    _test(b, Op.ISKIND, (head, int(Kind.STR)), span, on_none)  # `<` needs strings
    _search(b, head, heads, arrive, range(len(heads)), on_none, span)


def _search(
    b: FunctionBuilder,
    head: int,
    heads: Sequence[str],
    arrive: Callable[[int], None],
    within: range,
    on_none: int,
    span: Span,
) -> None:
    """Find ``head`` among the ``heads`` indexed by ``within`` (recursion depth: log2 of
    their number)."""
    if len(within) <= LINEAR_HEADS:  # each head in turn: fewer instructions than a tree
        for index in within:
            other = on_none if index == within[-1] else b.label()
            _test(b, Op.EQ, (head, b.load(heads[index], span)), span, other)
            arrive(index)
            if other != on_none:
                b.start(other)
        return
    middle = within[len(within) // 2]
    upper = b.label()
    _test(b, Op.LT, (head, b.load(heads[middle], span)), span, upper)
    _search(b, head, heads, arrive, range(within.start, middle), on_none, span)
    b.start(upper)
    _search(b, head, heads, arrive, range(middle, within.stop), on_none, span)


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
