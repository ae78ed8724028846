"""Tape IR: functions of basic blocks of flat register ops (DESIGN.md §4).

An op's operands follow its row in `avm_vm.format.opcodes.OPCODES`, in IR form: registers are
virtual register numbers, K operands are the constant values themselves, J operands are
block labels, F operands are function names, E operands instruction numbers, U operands
ints and L operands tuples of registers. A block ends with exactly one of JMP, RET or FAIL;
JMPT/JMPF may only appear as the op before a final JMP (the branch's fall-through edge is
that explicit JMP, which keeps every successor visible in the block itself).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from operator import attrgetter, itemgetter

from avm_vm.diagnostics import Span
from avm_vm.format.instructions import INSTRUCTIONS
from avm_vm.format.opcodes import OPCODES, Op, RegType
from avm_vm.format.program import FunctionKind
from avm_vm.values import render


def _positions(wanted: str) -> dict[Op, tuple[tuple[int, bool], ...]]:
    """Per op, the operand positions whose letter is in ``wanted`` (a register is never the
    written first operand here), each flagged True when it holds a register list."""
    table = {}
    for op, info in OPCODES.items():
        start = 1 if info.writes and "R" in wanted else 0
        table[op] = tuple(
            (i, letter == "L")
            for i, letter in enumerate(info.operands)
            if i >= start and letter in wanted
        )
    return table


def _gather(places: tuple[tuple[int, bool], ...]) -> Callable[[tuple], tuple[int, ...]]:
    """The operands at ``places`` of an op (a register list's items spliced in), as a tuple."""
    if any(is_list for _, is_list in places):

        def read(operands: tuple) -> tuple[int, ...]:
            regs: list[int] = []
            for i, is_list in places:
                if is_list:
                    regs.extend(operands[i])
                else:
                    regs.append(operands[i])
            return tuple(regs)

        return read
    # The others get a getter that runs in C (a slice of the operands is a tuple).
    if not places:
        return itemgetter(slice(0, 0))
    if len(places) == 1:
        only = places[0][0]
        return itemgetter(slice(only, only + 1))
    return itemgetter(*(i for i, _ in places))


# An enum member is looked up anew each time it is named, at several times the cost of a
# plain name: the compiler's loops over every instruction compare ops with these.
MOVE, LOADK, JMP, JMPT, JMPF = Op.MOVE, Op.LOADK, Op.JMP, Op.JMPT, Op.JMPF

# Computed once: the passes ask every op for its reads many times.
_READS = _positions("RL")
_READERS = {op: _gather(places) for op, places in _READS.items()}
_TARGETS = {op: _gather(places) for op, places in _positions("J").items()}
_WRITES = {op: info.writes for op, info in OPCODES.items()}


# Slots: instructions are made and read by the ten thousand, quicker without a __dict__.
@dataclass(init=False, slots=True)
class IrInstr:
    op: Op
    operands: tuple
    span: Span | None = field(default=None, compare=False)
    # Derived once, as instructions are never changed (passes replace them): the register
    # this op writes, if any (always its first operand), and the registers it reads.
    dst: int | None = field(repr=False, compare=False)
    reads: tuple[int, ...] = field(repr=False, compare=False)

    # Written out (one call, where a dataclass's own would make two): every pass and the
    # register allocator make instructions by the thousand.
    def __init__(self, op: Op, operands: tuple, span: Span | None = None) -> None:
        self.op = op
        self.operands = operands
        self.span = span
        self.dst = operands[0] if _WRITES[op] else None
        self.reads = _READERS[op](operands)

    @property
    def info(self):  # -> OpInfo
        return OPCODES[self.op]

    def uses(self) -> tuple[int, ...]:
        """Registers this op reads."""
        return self.reads

    def map_uses(self, rename: dict[int, int]) -> IrInstr:
        """A copy whose read registers are renamed through ``rename`` (others kept)."""
        new = list(self.operands)
        for i, is_list in _READS[self.op]:
            if is_list:
                new[i] = tuple(rename.get(r, r) for r in new[i])
            else:
                new[i] = rename.get(new[i], new[i])
        return IrInstr(self.op, tuple(new), self.span)

    def targets(self) -> tuple[int, ...]:
        """Block labels this op may jump to (TRY's handler included)."""
        return _TARGETS[self.op](self.operands)


# A function's registers: virtual register -> frame register, and each frame register's type.
Allocation = tuple[dict[int, int], list[RegType]]


@dataclass
class BasicBlock:
    label: int
    instrs: list[IrInstr] = field(default_factory=list)

    @property
    def terminator(self) -> IrInstr:
        return self.instrs[-1]

    def successors(self) -> list[int]:
        seen: list[int] = []
        for instr in self.instrs:
            for target in instr.targets():
                if target not in seen:
                    seen.append(target)
        return seen


# An op's fields and a block's ops, read in C over many of them at once (`IrFunction.ops`).
op_of = attrgetter("op")
dst_of = attrgetter("dst")
reads_of = attrgetter("reads")
_instrs_of = attrgetter("instrs")


@dataclass
class IrFunction:
    name: str
    kind: FunctionKind
    nparams: int  # parameters are virtual registers 0 .. nparams-1
    blocks: list[BasicBlock]  # the entry block first
    reg_types: dict[int, RegType] = field(default_factory=dict)  # missing: ANY
    span: Span | None = field(default=None, compare=False)
    # Once registers are assigned (`regalloc.assign_registers`): each virtual register's
    # frame register and each frame register's type. The assembler renames through it.
    allocation: Allocation | None = field(default=None, compare=False, repr=False)

    def ops(self) -> Iterator[IrInstr]:
        """Every op of every block, in order: the blocks' lists chained in C, which the
        passes' counts read at C speed too (`op_of`, `dst_of`, `reads_of`)."""
        return chain.from_iterable(map(_instrs_of, self.blocks))

    def block(self, label: int) -> BasicBlock:
        for block in self.blocks:
            if block.label == label:
                return block
        raise KeyError(label)

    def registers(self) -> set[int]:
        regs = set(range(self.nparams))
        for block in self.blocks:
            for instr in block.instrs:
                if instr.dst is not None:
                    regs.add(instr.dst)
                regs.update(instr.uses())
        return regs


@dataclass
class IrBehavior:
    name: str
    function: str  # name of its BEHAVIOR function
    fields: tuple[str, ...]


@dataclass
class IrProgram:
    source_name: str
    functions: list[IrFunction]
    behaviors: list[IrBehavior]
    main: str | None  # name of the MAIN function

    def function(self, name: str) -> IrFunction:
        for function in self.functions:
            if function.name == name:
                return function
        raise KeyError(name)


# ---------------------------------------------------------------- text form


def format_operand(letter: str, operand: object) -> str:
    if letter == "R":
        return f"r{operand}"
    if letter == "K":
        return render(operand)  # type: ignore[arg-type]
    if letter == "J":
        return f"L{operand}"
    if letter == "E":
        return INSTRUCTIONS[operand].name  # type: ignore[index]
    if letter == "L":
        return "(" + ", ".join(f"r{r}" for r in operand) + ")"  # type: ignore[attr-defined]
    return str(operand)


def format_instr(instr: IrInstr) -> str:
    info = OPCODES[instr.op]
    parts = [
        format_operand(letter, operand)
        for letter, operand in zip(info.operands, instr.operands, strict=True)
    ]
    if info.writes:
        return f"{parts[0]} = {info.name.lower()} {' '.join(parts[1:])}".rstrip()
    return f"{info.name.lower()} {' '.join(parts)}".rstrip()


def format_function(function: IrFunction) -> str:
    params = ", ".join(f"r{i}" for i in range(function.nparams))
    lines = [f"{function.kind.name.lower()} {function.name}({params}) {{"]
    for block in function.blocks:
        lines.append(f"  L{block.label}:")
        for instr in block.instrs:
            text = format_instr(instr)
            reg_type = function.reg_types.get(instr.dst) if instr.dst is not None else None
            if reg_type is not None and reg_type is not RegType.ANY:
                text += f"    ; {reg_type.name.lower()}"
            lines.append(f"    {text}")
    lines.append("}")
    return "\n".join(lines)


def format_program(program: IrProgram) -> str:
    parts = []
    for behavior in program.behaviors:
        fields = ", ".join(behavior.fields)
        parts.append(f"behavior {behavior.name} -> {behavior.function} fields({fields})")
    parts.extend(format_function(f) for f in program.functions)
    return "\n\n".join(parts) + "\n"
