"""Register type inference: what each virtual register holds for its whole life.

A register's type is the join of the types of every op writing it (two different types
join to ANY); parameters are ANY. Result types are exactly the ones the bytecode verifier
checks: the opcode table's result, the constant's type for LOADK, the source register's
type for MOVE. The fixed point over MOVE chains uses a worklist, so it is linear.
"""

from __future__ import annotations

from collections import defaultdict

from avm_vm.format.opcodes import OPCODES, RegType, const_type
from avmc.ir import LOADK, MOVE, IrFunction, IrProgram

# What each op writes, looked up once per instruction.
_RESULTS = {op: info.result for op, info in OPCODES.items()}


def join(a: RegType | None, b: RegType | None) -> RegType | None:
    """The least type holding both (None: no write seen yet)."""
    if a is None:
        return b
    if b is None or a is b:
        return a
    return RegType.ANY


def infer_types(function: IrFunction) -> dict[int, RegType]:
    """Set and return ``function.reg_types``: every parameter and written register."""
    types: dict[int, RegType | None] = dict.fromkeys(range(function.nparams), RegType.ANY)
    moves_from: defaultdict[int, list[int]] = defaultdict(list)  # source -> MOVE destinations
    for block in function.blocks:
        for instr in block.instrs:
            dst = instr.dst
            if dst is None:
                continue
            op = instr.op
            if op is MOVE:
                moves_from[instr.operands[1]].append(dst)
                types.setdefault(dst, None)
                continue
            written = const_type(instr.operands[1]) if op is LOADK else _RESULTS[op]
            previous = types.get(dst)
            # The commonest case, a register's first write, without a call: join(None, t) is t.
            types[dst] = written if previous is None else join(previous, written)
    work = [reg for reg in moves_from if types.get(reg) is not None]
    while work:
        source = work.pop()
        for dst in moves_from[source]:
            joined = join(types.get(dst), types[source])
            if joined is not types.get(dst):
                types[dst] = joined
                work.append(dst)
    result = {reg: RegType.ANY if t is None else t for reg, t in types.items()}
    function.reg_types = result
    return result


def infer_program_types(program: IrProgram) -> IrProgram:
    for function in program.functions:
        infer_types(function)
    return program
