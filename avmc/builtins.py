"""The language's builtin pure functions: source name, arity and the opcode that computes it.

The checker reads arities from here and the lowering reads opcodes, so a builtin is defined
in exactly one place. Each opcode takes its arguments in order after its destination.
"""

from __future__ import annotations

from dataclasses import dataclass

from avm_vm.format.opcodes import Op


@dataclass(frozen=True)
class Builtin:
    name: str
    arity: int
    op: Op
    doc: str


BUILTINS: dict[str, Builtin] = {
    b.name: b
    for b in (
        Builtin("len", 1, Op.LEN, "length of a string (code points) or a list"),
        Builtin("append", 2, Op.APPEND, "the list with a value added at the end"),
        Builtin("fst", 1, Op.FST, "first part of a pair"),
        Builtin("snd", 1, Op.SND, "second part of a pair"),
        Builtin("str", 1, Op.TOSTR, "a string unchanged, any other value as canonical text"),
        Builtin("unwrap", 1, Op.UNWRAP, "v for just v; fails on anything else"),
    )
}
