"""Assembly: IR into the loaded-program form of `avm_vm.format.program`, each register renamed
to its frame register (the compiler renames here, from the register allocation, rather than
building the allocated IR first).

Blocks are laid out in IR order. A final ``JMP`` to the block laid out next is dropped; when
a block ends ``JMPT r, A; JMP B`` and A comes next, the branch is inverted to ``JMPF r, B``
(both fail alike on a non-bool). The last block keeps its terminator, so code never runs
off the end of a function. Constants are pooled with kind-exact equality: 1 and true differ.
"""

from __future__ import annotations

from avm_vm.format.opcodes import OPCODES, Op, RegType
from avm_vm.format.program import Behavior, Function, Instr, Program
from avm_vm.values import Value, value_hash, values_equal
from avmc.ir import (
    JMP,
    JMPF,
    JMPT,
    LOADK,
    MOVE,
    Allocation,
    BasicBlock,
    IrFunction,
    IrInstr,
    IrProgram,
)
from avmc.passes.analysis import has_moves
from avmc.regalloc import ALL_REGISTERS

_INVERSE = {Op.JMPT: Op.JMPF, Op.JMPF: Op.JMPT}


class ConstantPool:
    """Constants in first-use order, each once (by kind-exact structural equality)."""

    def __init__(self) -> None:
        self.values: list[Value] = []
        self._index: dict[_Key, int] = {}
        # Nats, bools and strings, the bulk of constants, keyed by their Python type and
        # value (kind-exact as well: 1 and True differ in type); no other value equals one.
        self._scalars: dict[tuple[type, Value], int] = {}
        # Containers met before, by identity (hashing one walks it): a behavior's field
        # defaults are one tuple named by each of its field reads and writes. Each entry
        # holds its value, so no other value can take its id while the pool lives.
        self._seen: dict[int, tuple[Value, int]] = {}

    def index(self, value: Value) -> int:
        kind = type(value)
        if kind is int or kind is str or kind is bool:
            scalar = (kind, value)
            found = self._scalars.get(scalar)
            if found is None:
                found = self._scalars[scalar] = self._add(value)
            return found
        seen = self._seen.get(id(value))
        if seen is not None and seen[0] is value:
            return seen[1]
        key = _Key(value)
        found = self._index.get(key)
        if found is None:
            found = self._index[key] = self._add(value)
        self._seen[id(value)] = (value, found)
        return found

    def _add(self, value: Value) -> int:
        self.values.append(value)
        return len(self.values) - 1


class _Key:
    """Hashes and compares a value as the VM does, not as Python does (1 == True)."""

    __slots__ = ("hash", "value")

    def __init__(self, value: Value) -> None:
        self.value = value
        self.hash = value_hash(value)

    def __hash__(self) -> int:
        return self.hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Key) and values_equal(self.value, other.value)


def assemble(program: IrProgram) -> Program:
    """``program``, each function over frame registers (as `regalloc.allocate_program` leaves
    it) or over virtual registers with its allocation, renamed through it as it is assembled:
    the same program either way, without building the allocated IR. A copy of a register
    to itself does nothing and is left out."""
    pool = ConstantPool()
    function_index = {function.name: i for i, function in enumerate(program.functions)}
    functions = tuple(_function(function, pool, function_index) for function in program.functions)
    behaviors = tuple(
        Behavior(b.name, function_index[b.function], b.fields) for b in program.behaviors
    )
    main = None if program.main is None else function_index[program.main]
    return Program(program.source_name, tuple(pool.values), functions, behaviors, main)


class _Identity(dict[int, int]):
    """Every register to itself: the allocation of a function already over frame registers."""

    def __missing__(self, reg: int) -> int:
        return reg


def _allocation(function: IrFunction) -> Allocation:
    """The function's allocation; for a function over frame registers, each register named
    (or a parameter's) to itself."""
    if function.allocation is not None:
        return function.allocation
    count = max(function.registers(), default=-1) + 1
    untyped = RegType.ANY
    return _Identity(), [function.reg_types.get(reg, untyped) for reg in range(count)]


def layout(blocks: list[BasicBlock]) -> list[list[IrInstr]]:
    """Each block's ops as laid out: jumps to the next block dropped or inverted away (a
    block laid out as it is gives its own list, to be read only)."""
    result = []
    for position, block in enumerate(blocks):
        instrs = block.instrs
        following = blocks[position + 1].label if position + 1 < len(blocks) else None
        last = instrs[-1]
        if last.op is JMP and last.operands[0] == following:
            instrs = instrs[:-1]
        elif (
            last.op is JMP
            and len(instrs) > 1
            and instrs[-2].op in _INVERSE
            and instrs[-2].operands[1] == following
        ):
            branch = instrs[-2]
            inverted = IrInstr(
                _INVERSE[branch.op], (branch.operands[0], last.operands[0]), branch.span
            )
            instrs = [*instrs[:-2], inverted]
        result.append(instrs)
    return result


# Per op, its operands the assembler rewrites (registers, constants, jump targets,
# functions), with their letters; the others are written as they are.
_REWRITTEN = {
    op: tuple((i, letter) for i, letter in enumerate(info.operands) if letter in "RLKJF")
    for op, info in OPCODES.items()
}


def _function(function: IrFunction, pool: ConstantPool, function_index: dict[str, int]) -> Function:
    # Every frame register of the allocation is a parameter's or named by the code: the
    # allocator makes one only for a register the code names (a copy dropped below names
    # its source's frame register, which the source's write names too).
    mapping, kinds = _allocation(function)
    frame = mapping.__getitem__
    blocks = function.blocks
    if has_moves(function):
        # A copy between two registers that share a frame register does nothing: dropped
        # before the layout, which counts the ops of each block.
        blocks = [
            BasicBlock(
                block.label,
                [
                    instr
                    for instr in block.instrs
                    if not (
                        instr.op is MOVE and frame(instr.operands[0]) == frame(instr.operands[1])
                    )
                ],
            )
            for block in blocks
        ]
    laid_out = layout(blocks)
    starts: dict[int, int] = {}
    count = 0
    for block, instrs in zip(blocks, laid_out, strict=True):
        starts[block.label] = count
        count += len(instrs)
    code: list[Instr] = []
    lines: list[tuple[int, int]] = []
    # The previous op's span and position: ops in a row often come from one node.
    last_span: object = None
    position = (0, 0)
    constant = pool.index
    for instrs in laid_out:
        for instr in instrs:
            op = instr.op
            if op in ALL_REGISTERS:  # most ops: renamed in one step
                code.append((op, *map(frame, instr.operands)))
            elif op is LOADK:  # the commonest of the others, and the branches, spelled out
                code.append((op, frame(instr.operands[0]), constant(instr.operands[1])))
            elif op is JMP:
                code.append((op, starts[instr.operands[0]]))
            elif op is JMPF or op is JMPT:
                code.append((op, frame(instr.operands[0]), starts[instr.operands[1]]))
            else:
                rewritten = list(instr.operands)
                for i, letter in _REWRITTEN[op]:
                    operand = rewritten[i]
                    if letter == "R":
                        rewritten[i] = frame(operand)
                    elif letter == "L":
                        rewritten[i] = tuple(map(frame, operand))
                    elif letter == "K":
                        rewritten[i] = pool.index(operand)
                    elif letter == "J":
                        rewritten[i] = starts[operand]
                    else:
                        rewritten[i] = function_index[operand]
                code.append((op, *rewritten))
            span = instr.span
            if span is not last_span:
                last_span = span
                position = (span.line, span.col) if span is not None else (0, 0)
            lines.append(position)
    return Function(
        function.name,
        function.kind,
        function.nparams,
        tuple(kinds),
        tuple(code),
        tuple(lines),
    )
