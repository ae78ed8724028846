"""The Tape IR / bytecode instruction set: one table read by every stage.

The IR, the bytecode writer and loader, the verifier, the disassembler, the VM and the JIT
all read `OPCODES`. Each row gives the opcode number (its byte in a `.tape` file), the
operand format, the type of the value written to the destination register, whether the op
can raise a runtime error, and its meaning in Lua's comment style.

Operand letters (see docs/bytecode.md for their encoding):

| letter | operand | IR form | bytecode form |
|---|---|---|---|
| R | register | virtual register number | physical register (u8, or u16 in a wide function) |
| K | constant | the value itself | constant-pool index (varint) |
| J | jump target | block label | instruction index within the function (varint) |
| F | function | function name | function-table index (varint) |
| E | AVM instruction | instruction number | instruction number (u8), instructions.py |
| U | immediate | int | varint |
| L | register list | tuple of registers | varint count, then that many registers |

When an op writes a register, that register is always its first operand.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

from avm_vm.values import NOTHING, Value


class RegType(IntEnum):
    """What a register is known to hold for its whole life; ANY is the safe default."""

    ANY = 0
    NAT = 1
    BOOL = 2
    STR = 3
    LIST = 4


# The value a register of each type holds before its first write: frames start from these,
# so a typed register holds a value of its type at every instant, even in hostile code.
INITIAL_VALUE: dict[RegType, Value] = {
    RegType.ANY: NOTHING,
    RegType.NAT: 0,
    RegType.BOOL: False,
    RegType.STR: "",
    RegType.LIST: (),
}

_CONST_TYPES = {int: RegType.NAT, bool: RegType.BOOL, str: RegType.STR, tuple: RegType.LIST}


def const_type(value: Value) -> RegType:
    """The register type of a constant (``LOADK`` writes it)."""
    return _CONST_TYPES.get(type(value), RegType.ANY)


class Op(IntEnum):
    MOVE = 0
    LOADK = 1
    ADD = 2
    SUB = 3
    MUL = 4
    DIV = 5
    MOD = 6
    EQ = 7
    NE = 8
    LT = 9
    LE = 10
    GT = 11
    GE = 12
    NOT = 13
    CONCAT = 14
    LEN = 15
    INDEX = 16
    SLICE = 17
    APPEND = 18
    MKLIST = 19
    MKPAIR = 20
    MKJUST = 21
    FST = 22
    SND = 23
    UNWRAP = 24
    ISKIND = 25
    ISLEN = 26
    ISLENGE = 27
    DROP = 28
    TOSTR = 29
    GETFIELD = 30
    SETFIELD = 31
    JMP = 32
    JMPT = 33
    JMPF = 34
    CALL = 35
    RET = 36
    EFFECT = 37
    FAIL = 38
    TRY = 39
    ENDTRY = 40


class OpInfo(NamedTuple):
    op: Op
    operands: str  # operand letters, see the module docstring
    result: RegType | None  # type written to the first operand; None: writes no register
    may_fail: bool  # can raise a runtime error (constant folding must then keep it)
    pure: bool  # no effect beyond writing its result (dead-code elimination may drop it)
    semantics: str

    @property
    def name(self) -> str:
        return self.op.name

    @property
    def writes(self) -> bool:
        return self.result is not None

    @property
    def is_jump(self) -> bool:
        return "J" in self.operands and self.op is not Op.TRY

    @property
    def ends_block(self) -> bool:
        """Control never falls through to the next op (RET, FAIL, JMP)."""
        return self.op in (Op.RET, Op.FAIL, Op.JMP)


_T = RegType
_ROWS: list[tuple[Op, str, RegType | None, bool, bool, str]] = [
    # op, operands, result type, may fail, pure, semantics
    (Op.MOVE, "RR", _T.ANY, False, True, "R[A] := R[B]  (result type: that of R[B])"),
    (Op.LOADK, "RK", _T.ANY, False, True, "R[A] := K[B]  (result type: that of the constant)"),
    (Op.ADD, "RRR", _T.NAT, True, True, "R[A] := R[B] + R[C]  (nats; overflow past 2^64-1 fails)"),
    (Op.SUB, "RRR", _T.NAT, True, True, "R[A] := R[B] - R[C]  (nats; a negative result fails)"),
    (Op.MUL, "RRR", _T.NAT, True, True, "R[A] := R[B] * R[C]  (nats; overflow fails)"),
    (Op.DIV, "RRR", _T.NAT, True, True, "R[A] := R[B] // R[C]  (nats; division by zero fails)"),
    (Op.MOD, "RRR", _T.NAT, True, True, "R[A] := R[B] % R[C]  (nats; modulo by zero fails)"),
    (Op.EQ, "RRR", _T.BOOL, False, True, "R[A] := R[B] == R[C]  (structural, kind-exact)"),
    (Op.NE, "RRR", _T.BOOL, False, True, "R[A] := R[B] != R[C]"),
    (Op.LT, "RRR", _T.BOOL, True, True, "R[A] := R[B] < R[C]  (nats, or strings by code point)"),
    (Op.LE, "RRR", _T.BOOL, True, True, "R[A] := R[B] <= R[C]"),
    (Op.GT, "RRR", _T.BOOL, True, True, "R[A] := R[B] > R[C]"),
    (Op.GE, "RRR", _T.BOOL, True, True, "R[A] := R[B] >= R[C]"),
    (Op.NOT, "RR", _T.BOOL, True, True, "R[A] := not R[B]  (bool)"),
    (Op.CONCAT, "RRR", _T.ANY, True, True, "R[A] := R[B] ++ R[C]  (two strings or two lists)"),
    (Op.LEN, "RR", _T.NAT, True, True, "R[A] := length of R[B]  (string: code points; list)"),
    (Op.INDEX, "RRR", _T.ANY, True, True, "R[A] := R[B][R[C]]  (list element or 1-char string)"),
    (Op.SLICE, "RRRR", _T.ANY, True, True, "R[A] := R[B][R[C]:R[D]]  (needs C <= D <= length)"),
    (Op.APPEND, "RRR", _T.LIST, True, True, "R[A] := R[B] with R[C] added at the end  (list)"),
    (Op.MKLIST, "RL", _T.LIST, False, True, "R[A] := [R[l1], ..., R[ln]]"),
    (Op.MKPAIR, "RRR", _T.ANY, False, True, "R[A] := (R[B], R[C])"),
    (Op.MKJUST, "RR", _T.ANY, False, True, "R[A] := just R[B]"),
    (Op.FST, "RR", _T.ANY, True, True, "R[A] := first of the pair R[B]"),
    (Op.SND, "RR", _T.ANY, True, True, "R[A] := second of the pair R[B]"),
    (Op.UNWRAP, "RR", _T.ANY, True, True, "R[A] := v if R[B] = just v, else fail"),
    (Op.ISKIND, "RRU", _T.BOOL, False, True, "R[A] := kind of R[B] == U  (values.Kind)"),
    (Op.ISLEN, "RRU", _T.BOOL, False, True, "R[A] := R[B] is a list of length U"),
    (Op.ISLENGE, "RRU", _T.BOOL, False, True, "R[A] := R[B] is a list of length >= U"),
    (Op.DROP, "RRU", _T.LIST, True, True, "R[A] := R[B] without its first U elements  (list)"),
    (Op.TOSTR, "RR", _T.STR, False, True, "R[A] := R[B] if a string, else its canonical text"),
    (
        Op.GETFIELD,
        "RRUK",
        _T.ANY,
        True,
        True,
        "R[A] := R[B][U] if R[B] is a list longer than U, else K[C][U]  (field read, K = defaults)",
    ),
    (
        Op.SETFIELD,
        "RRURK",
        _T.LIST,
        True,
        True,
        "R[A] := R[B] padded from the defaults K[D] to their length, then [U] := R[C]",
    ),
    (Op.JMP, "J", None, False, False, "pc := J"),
    (Op.JMPT, "RJ", None, True, False, "if R[A] is true then pc := J  (R[A] must be a bool)"),
    (Op.JMPF, "RJ", None, True, False, "if R[A] is false then pc := J  (R[A] must be a bool)"),
    (Op.CALL, "RFL", _T.ANY, True, False, "R[A] := F(R[l1], ..., R[ln])  (pure function call)"),
    (Op.RET, "R", None, False, False, "return R[A]"),
    (
        Op.EFFECT,
        "REL",
        _T.ANY,
        True,
        False,
        "R[A] := answer of AVM instruction E applied to R[l1..ln]  (suspends the frame)",
    ),
    (Op.FAIL, "R", None, True, False, "fail with message R[A]  (the activation fails)"),
    (
        Op.TRY,
        "RJ",
        _T.STR,
        False,
        False,
        "push handler J: a failure until ENDTRY puts its message in R[A] and jumps to J",
    ),
    (Op.ENDTRY, "", None, False, False, "pop the innermost handler"),
]

OPCODES: dict[Op, OpInfo] = {row[0]: OpInfo(*row) for row in _ROWS}
BY_NAME: dict[str, OpInfo] = {info.name: info for info in OPCODES.values()}
