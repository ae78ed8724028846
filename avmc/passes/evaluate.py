"""Compile-time evaluation of pure ops on constant operands, for constant folding.

The fallible ops use the VM's own semantics (`avm_vm.vm.ops`), so folding can never disagree
with the VM; an op that would raise returns None here and stays in the code, keeping its
runtime error. So does an op whose result would be too big a constant: nested deeper than a
`.tape` constant may be, or larger than `FOLD_BUDGET` (doubling a string in a chain of
`s = s ++ s` must not grow the compiler's memory, or the file, exponentially).
"""

from __future__ import annotations

from collections.abc import Callable

from avm_vm.errors import AvmError
from avm_vm.format.opcodes import Op
from avm_vm.format.verify import MAX_DEPTH
from avm_vm.values import Just, Pair, Value, kind_of, to_text, values_equal
from avm_vm.vm import ops

FOLD_BUDGET = 1 << 20  # values plus string characters in one folded constant

# Operands come in the op's order after the destination: register operands as their constant
# values, L operands as a tuple of values, U operands as ints.
_SEMANTICS: dict[Op, Callable[..., Value]] = {
    Op.MOVE: lambda v: v,
    Op.ADD: ops.add,
    Op.SUB: ops.sub,
    Op.MUL: ops.mul,
    Op.DIV: ops.div,
    Op.MOD: ops.mod,
    Op.EQ: values_equal,
    Op.NE: lambda a, b: not values_equal(a, b),
    Op.LT: ops.lt,
    Op.LE: ops.le,
    Op.GT: ops.gt,
    Op.GE: ops.ge,
    Op.NOT: lambda v: not ops.truth(v),
    Op.CONCAT: ops.concat,
    Op.LEN: ops.length,
    Op.INDEX: ops.index,
    Op.SLICE: ops.slice_,
    Op.APPEND: ops.append,
    Op.MKLIST: lambda items: items,
    Op.MKPAIR: Pair,
    Op.MKJUST: Just,
    Op.FST: ops.first,
    Op.SND: ops.second,
    Op.UNWRAP: ops.unwrap,
    Op.ISKIND: lambda v, kind: kind_of(v) == kind,
    Op.ISLEN: lambda v, n: type(v) is tuple and len(v) == n,
    Op.ISLENGE: lambda v, n: type(v) is tuple and len(v) >= n,
    Op.DROP: ops.drop,
    Op.TOSTR: to_text,
}

FOLDABLE = frozenset(_SEMANTICS)


def evaluate(op: Op, args: list) -> Value | None:
    """The result of ``op`` on ``args``, or None when it would fail at run time."""
    try:
        result = _SEMANTICS[op](*args)
    except AvmError:
        return None
    return result if _fits(result) else None


def _fits(value: Value) -> bool:
    """Whether ``value`` nests at most `MAX_DEPTH` containers deep and stays within
    `FOLD_BUDGET`; the walk stops as soon as it knows, so it costs at most the budget."""
    budget = FOLD_BUDGET
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        budget -= 1 + (len(item) if kind is str else 0)
        if budget < 0:
            return False
        if kind is tuple or kind is Pair or kind is Just:
            if depth >= MAX_DEPTH:
                return False
            if kind is tuple:
                children = item
            else:
                children = (item.first, item.second) if kind is Pair else (item.value,)
            stack.extend((child, depth + 1) for child in children)
    return True
