"""A compiled program as the VM sees it: exactly what a `.tape` file holds.

The compiler's last stage builds a `Program`; `bytecode.encode` writes it, and
`bytecode.decode` reads it back (verifying everything) for the VM. Code is a tuple of
instructions, each a tuple ``(Op, operand, ...)`` in the operand order of `opcodes.OPCODES`:
registers, constant-pool indices, instruction indices (jump targets), function indices,
instruction numbers and immediates are ints; a register list (L) is a tuple of ints.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

from avm_vm.format.opcodes import RegType
from avm_vm.values import Value

Instr = tuple  # (Op, *operands)


class FunctionKind(IntEnum):
    PURE = 0  # a `fn`: no effects; also registered as a pure function (spec §6.6)
    BEHAVIOR = 1  # a behavior's clauses: one parameter, the message
    MAIN = 2  # the `main` program: no parameters


class Function(NamedTuple):
    name: str
    kind: FunctionKind
    nparams: int  # parameters arrive in registers 0 .. nparams-1
    reg_types: tuple[RegType, ...]  # one per register; its length is the register count
    code: tuple[Instr, ...]
    lines: tuple[tuple[int, int], ...]  # (line, column) of each instruction; (0, 0) unknown

    @property
    def nregs(self) -> int:
        return len(self.reg_types)


class Behavior(NamedTuple):
    name: str
    function: int  # index into Program.functions (a BEHAVIOR function)
    fields: tuple[str, ...]  # persistent field names, in state-list order


class Program(NamedTuple):
    source_name: str  # the .avm file it was compiled from, for error messages
    constants: tuple[Value, ...]
    functions: tuple[Function, ...]
    behaviors: tuple[Behavior, ...]
    main: int | None  # index of the MAIN function, if the program has one

    def function_named(self, name: str) -> Function | None:
        for function in self.functions:
            if function.name == name:
                return function
        return None

    def behavior_named(self, name: str) -> Behavior | None:
        for behavior in self.behaviors:
            if behavior.name == name:
                return behavior
        return None
