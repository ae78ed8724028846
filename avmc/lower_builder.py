"""The state of lowering one function: blocks under construction, registers and scopes.

Blocks are appended to the function in the order they are started, so the IR's block order
follows the source and most jumps go to the next block (assembly then drops them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from avm_vm.diagnostics import Span
from avm_vm.format.opcodes import OPCODES, Op
from avm_vm.format.program import FunctionKind
from avm_vm.values import NOTHING, Value
from avmc.ir import JMP, JMPF, LOADK, BasicBlock, IrFunction, IrInstr
from avmc.passes.simplify import remove_unreachable

_ENDS_BLOCK = frozenset(op for op, info in OPCODES.items() if info.ends_block)


@dataclass(frozen=True)
class ModuleInfo:
    """What every function's lowering needs to know about the whole module."""

    functions: frozenset[str]  # names of the module's `fn`s


@dataclass
class Loop:
    continue_label: int
    break_label: int


@dataclass
class FunctionBuilder:
    name: str
    kind: FunctionKind
    nparams: int
    module: ModuleInfo
    span: Span | None = None
    fields: dict[str, int] = field(default_factory=dict)  # field name -> state-list index
    defaults: tuple[Value, ...] = ()  # field defaults, in state-list order
    blocks: list[BasicBlock] = field(default_factory=list)
    scopes: list[dict[str, int]] = field(default_factory=lambda: [{}])
    loops: list[Loop] = field(default_factory=list)
    atomics: list[int] = field(default_factory=list)  # tx registers of enclosing atomic bodies
    # The register holding the object's state as the field sugar last read it, while no
    # effect and no block boundary has come since (nothing can have changed it): the next
    # field read or write reuses it instead of reading the state again.
    state: int | None = None
    # The ops of the block being emitted into, and whether it has ended (return, fail, a
    # jump): kept at hand, as every op emitted asks.
    _current: list[IrInstr] = field(default_factory=list, init=False)
    terminated: bool = field(default=False, init=False)
    _next_reg: int = 0
    _next_label: int = 0

    def __post_init__(self) -> None:
        self._next_reg = self.nparams
        self.start(self.label())

    # ------------------------------------------------------------ registers and scopes

    def reg(self) -> int:
        self._next_reg += 1
        return self._next_reg - 1

    def lookup(self, name: str) -> int | None:
        for scope in reversed(self.scopes):
            reg = scope.get(name)
            if reg is not None:
                return reg
        return None

    def bind(self, name: str, reg: int) -> None:
        self.scopes[-1][name] = reg

    def push_scope(self) -> None:
        self.scopes.append({})

    def pop_scope(self) -> None:
        self.scopes.pop()

    # ------------------------------------------------------------ blocks

    def label(self) -> int:
        self._next_label += 1
        return self._next_label - 1

    def start(self, label: int) -> None:
        """Continue emitting into a new block with this label (falling through to it)."""
        if self.blocks and not self.terminated:
            self.jump(label, None)
        block = BasicBlock(label)
        self.blocks.append(block)
        self._current = block.instrs
        self.terminated = False
        self.state = None  # other paths lead here

    def emit(self, op: Op, operands: tuple, span: Span | None) -> None:
        if self.terminated:
            # Code after return/fail/break: keep the block rules; it is removed as unreachable.
            self.start(self.label())
        self._current.append(IrInstr(op, operands, span))
        if op in _ENDS_BLOCK:
            self.terminated = True

    def emit_value(self, op: Op, operands: tuple, span: Span | None, dst: int | None) -> int:
        """Emit an op that writes a register (``dst``, or a fresh one); return that register."""
        if dst is None:  # `reg()`, inline: most values go to a fresh register
            dst = self._next_reg
            self._next_reg = dst + 1
        # `emit`, inline (most ops write a value), where an op that writes never ends a block.
        if self.terminated:
            self.start(self.label())
        self._current.append(IrInstr(op, (dst, *operands), span))
        return dst

    def load(self, value: Value, span: Span | None, dst: int | None = None) -> int:
        return self.emit_value(LOADK, (value,), span, dst)

    def jump(self, target: int, span: Span | None) -> None:
        self.emit(JMP, (target,), span)

    def goto(self, target: int, span: Span | None) -> None:
        """Jump to ``target`` unless the block already ended (return, fail, break...)."""
        if not self.terminated:
            self.jump(target, span)

    def branch(self, reg: int, if_true: int, if_false: int, span: Span | None) -> None:
        """End the block: go to ``if_true`` when ``reg`` is true, else to ``if_false``."""
        self.emit(JMPF, (reg, if_false), span)
        self.emit(JMP, (if_true,), span)

    # ------------------------------------------------------------ result

    def finish(self, span: Span | None) -> IrFunction:
        if not self.terminated:
            self.emit(Op.RET, (self.load(NOTHING, span),), span)
        function = IrFunction(self.name, self.kind, self.nparams, self.blocks, span=self.span)
        remove_unreachable(function)
        return function
