"""A small assembler for VM tests: readable instruction tuples to a `Program`.

An instruction is ``("ADD", 2, 0, 1)``: the op name, then operands in `OPCODES` order, with
K operands given as values (pooled), J operands as label names (a string ``"loop:"`` in the
code defines a label), F operands as function names and E operands as instruction names.
Register types are a string of letters, one per register: A(ny) N(at) B(ool) S(tring) L(ist).
Instruction ``pc`` of a function gets source position ``(line + pc, pc + 1)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from avm_vm.format.instructions import BY_NAME
from avm_vm.format.opcodes import OPCODES, Op, RegType, const_type
from avm_vm.format.program import Function, FunctionKind, Program
from avm_vm.values import Value, values_equal
from avm_vm.vm.interpreter import Fault, Fuel, Interpreter, Ret, Vis

_TYPES = {
    "A": RegType.ANY,
    "N": RegType.NAT,
    "B": RegType.BOOL,
    "S": RegType.STR,
    "L": RegType.LIST,
}


@dataclass
class Fn:
    name: str
    code: Sequence[tuple | str]
    params: int = 0
    regs: str = ""  # empty: every register used is ANY
    kind: FunctionKind = FunctionKind.PURE
    line: int = 1


def assemble(*fns: Fn) -> Program:
    names = {f.name: index for index, f in enumerate(fns)}
    pool: list[Value] = []
    functions = tuple(_function(f, names, pool) for f in fns)
    main = next((i for i, f in enumerate(fns) if f.kind is FunctionKind.MAIN), None)
    return Program("test.avm", tuple(pool), functions, (), main)


def _constant(value: Value, pool: list[Value]) -> int:
    for index, known in enumerate(pool):
        if type(known) is type(value) and values_equal(known, value):
            return index
    pool.append(value)
    return len(pool) - 1


def _function(f: Fn, names: dict[str, int], pool: list[Value]) -> Function:
    labels: dict[str, int] = {}
    instrs: list[tuple] = []
    for item in f.code:
        if isinstance(item, str):
            labels[item.rstrip(":")] = len(instrs)
        else:
            instrs.append(item)
    code = []
    used = 0
    for name, *operands in instrs:
        op = Op[name]
        resolved: list[object] = [op]
        for letter, operand in zip(OPCODES[op].operands, operands, strict=True):
            if letter == "K":
                operand = _constant(operand, pool)
            elif letter == "J" and isinstance(operand, str):
                operand = labels[operand]
            elif letter == "F":
                operand = names[operand]
            elif letter == "E":
                operand = BY_NAME[operand].number
            if letter == "R":
                used = max(used, operand + 1)
            elif letter == "L":
                used = max(used, *(r + 1 for r in operand), 0)
            resolved.append(operand)
        code.append(tuple(resolved))
    types = tuple(_TYPES[letter] for letter in f.regs) or (RegType.ANY,) * max(used, f.params)
    lines = tuple((f.line + pc, pc + 1) for pc in range(len(code)))
    return Function(f.name, f.kind, f.params, types, tuple(code), lines)


def run(
    program: Program, name: str, *args: Value, fuel: int = 10**7, max_frames: int = 100_000
) -> Ret | Vis | Fault:
    vm = Interpreter(program)
    index = next(i for i, f in enumerate(program.functions) if f.name == name)
    return vm.run([vm.frame(index, args)], Fuel(fuel), max_frames)


def evaluate(op: str, *inputs: Value, imm: Sequence[object] = (), typed: bool = False) -> Value:
    """Run one op on ``inputs`` and return what it writes (or raise its AvmError).

    The inputs sit in registers 0..n-1, the result in register n. Untyped: they arrive as
    parameters (ANY registers); typed: LOADK puts them in registers of their constants'
    types, so the VM may take its typed fast paths. Operands after the destination are
    filled from the letters: R takes the next input register, U and K the next of ``imm``,
    L all the input registers.
    """
    n = len(inputs)
    registers = iter(range(n))
    extra = iter(imm)
    operands: list[object] = [n]
    for letter in OPCODES[Op[op]].operands[1:]:
        if letter == "R":
            operands.append(next(registers))
        elif letter == "L":
            operands.append(tuple(range(n)))
        else:
            operands.append(next(extra))
    body = [(op, *operands), ("RET", n)]
    if typed:
        loads = [("LOADK", r, value) for r, value in enumerate(inputs)]
        letters = "".join(const_type(v).name[0] for v in inputs)
        fn = Fn("op", loads + body, regs=letters + "A")
    else:
        fn = Fn("op", body, params=n, regs="A" * (n + 1))
    vm = Interpreter(assemble(fn))
    return vm.call_function(0, () if typed else inputs, Fuel(100))


# -- sample programs shared by the VM tests

SUM_TO = Fn(  # sum of 0 .. n-1: 3 + 5n + 3 instructions
    "sum",
    [
        ("LOADK", 1, 0),
        ("LOADK", 2, 0),
        ("LOADK", 4, 1),
        "loop:",
        ("LT", 3, 2, 0),
        ("JMPF", 3, "done"),
        ("ADD", 1, 1, 2),
        ("ADD", 2, 2, 4),
        ("JMP", "loop"),
        "done:",
        ("RET", 1),
    ],
    params=1,
    regs="ANNBN",
)


COUNTDOWN = Fn(  # countdown(n) = if n == 0 then "done" else countdown(n - 1)
    "countdown",
    [
        ("LOADK", 1, 0),
        ("EQ", 2, 0, 1),
        ("JMPF", 2, "recurse"),
        ("LOADK", 3, "done"),
        ("RET", 3),
        "recurse:",
        ("LOADK", 1, 1),
        ("SUB", 3, 0, 1),
        ("CALL", 3, "countdown", (3,)),
        ("RET", 3),
    ],
    params=1,
    regs="ANBA",
)


EVEN_ODD = [  # mutual recursion: the calls between two functions go through the trampoline
    Fn(
        name,
        [
            ("LOADK", 1, 0),
            ("EQ", 2, 0, 1),
            ("JMPF", 2, "recurse"),
            ("LOADK", 3, name == "even"),
            ("RET", 3),
            "recurse:",
            ("LOADK", 1, 1),
            ("SUB", 3, 0, 1),
            ("CALL", 3, other, (3,)),
            ("RET", 3),
        ],
        params=1,
        regs="ANBA",
    )
    for name, other in [("even", "odd"), ("odd", "even")]
]
