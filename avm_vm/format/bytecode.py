"""The `.tape` file: `encode` a `Program` to bytes, `decode` bytes back (verifying everything).

The format is specified byte by byte in docs/bytecode.md: a fixed header (magic, version,
body length, sha256 of the body), then a body of constants, functions, behaviors, the main
function and the source name. Every instruction's operands are written and read by one loop
over its operand letters in `opcodes.OPCODES`. The reader checks every count against the
bytes left before it allocates anything and decodes nested constants without recursion, so
a hostile file can only ever raise `TapeError`. The encoding is canonical (minimal varints,
merged line runs, the wide form exactly when needed): a file decodes to one program, and that
program encodes back to the same bytes.

`code_hash` and `behavior_hash` identify code independently of table order and line
numbers, so two versions of a behavior can be told apart.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable, MutableSequence
from itertools import compress
from operator import ne
from typing import NoReturn

from avm_vm.format.opcodes import OPCODES, OpInfo, RegType
from avm_vm.format.program import Behavior, Function, FunctionKind, Instr, Program
from avm_vm.format.verify import (
    MAX_DEPTH,
    MAX_LINE,
    MAX_REGISTERS,
    WIDE_ABOVE,
    Offsets,
    TapeError,
    quote_name,
    verify,
)
from avm_vm.values import NAT_MAX, NOTHING, Just, Kind, ObjectRef, Pair, TxRef, Value, kind_of

# A non-ASCII first byte catches 7-bit channels; CR LF, ^Z and LF catch text-mode conversion.
MAGIC = b"\x89AVM\r\n\x1a\n"
VERSION = 1
_HEADER = struct.Struct("<8sHI32s")  # magic, version, body length, sha256 of the body
HEADER_SIZE = _HEADER.size
_VERSION_AT, _HASH_AT = 8, 14

_BY_BYTE: list[OpInfo | None] = [OPCODES.get(byte) for byte in range(256)]  # type: ignore[call-overload]
_REG_TYPES = tuple(RegType)
_KINDS = tuple(FunctionKind)


# ---------------------------------------------------------------------------------- writing


def encode(program: Program) -> bytes:
    """The `.tape` bytes of ``program``; raises `TapeError` if it breaks a verifier rule."""
    verify(program, program.source_name)
    body = _encode_body(program)
    if len(body) > 0xFFFFFFFF:
        raise TapeError(program.source_name, f"program body of {len(body)} bytes exceeds 4 GiB")
    return _wrap(body)


def _wrap(body: bytes) -> bytes:
    """The header for ``body`` (its hash included) followed by the body."""
    return _HEADER.pack(MAGIC, VERSION, len(body), hashlib.sha256(body).digest()) + body


def content_hash(program: Program) -> bytes:
    """The sha256 a `.tape` file of ``program`` carries in its header."""
    return hashlib.sha256(_encode_body(program)).digest()


def _encode_body(program: Program) -> bytes:
    """The body without verification (tests use it to build hostile files)."""
    out = bytearray()
    _varint(out, len(program.constants))
    for constant in program.constants:
        _value(out, constant)
    _varint(out, len(program.functions))
    narrow = _NarrowCode()
    for function in program.functions:
        _function_head(out, function)
        _code(out, function, _varint, _same, narrow)
        _lines(out, function.lines)
    _varint(out, len(program.behaviors))
    for behavior in program.behaviors:
        _string(out, behavior.name)
        _varint(out, behavior.function)
        _strings(out, behavior.fields)
    _varint(out, 0 if program.main is None else program.main + 1)
    _string(out, program.source_name)
    return bytes(out)


def _varint(out: MutableSequence[int], n: int) -> None:
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)


def _same(index: int) -> int:
    return index


def _string(out: bytearray, text: str) -> None:
    raw = text.encode("utf-8")
    _varint(out, len(raw))
    out += raw


def _strings(out: bytearray, texts: tuple[str, ...]) -> None:
    _varint(out, len(texts))
    for text in texts:
        _string(out, text)


def _value(out: bytearray, value: Value) -> None:
    """A tag byte (the value's `Kind`), then its payload; containers in prefix order."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = kind_of(item)
        out.append(kind)
        if kind is Kind.NAT:
            _varint(out, item)
        elif kind is Kind.BOOL:
            out.append(1 if item else 0)
        elif kind is Kind.STR:
            _string(out, item)
        elif kind is Kind.LIST:
            _varint(out, len(item))
            stack.extend(reversed(item))
        elif kind is Kind.PAIR:
            stack += (item.second, item.first)
        elif kind is Kind.JUST:
            stack.append(item.value)
        elif kind is Kind.OBJECT or kind is Kind.TX:
            _varint(out, item.id)


def _function_head(out: bytearray, function: Function) -> None:
    _string(out, function.name)
    out.append(function.kind)
    out.append(function.nregs > WIDE_ABOVE)
    _varint(out, function.nparams)
    _varint(out, function.nregs)
    out += bytes(function.reg_types)
    _varint(out, len(function.code))


def _code(
    out: bytearray,
    function: Function,
    constant: Callable[[bytearray, int], None],
    callee: Callable[[int], int],
    narrow: dict[Instr, bytes] | None = None,
) -> None:
    """The instructions; ``constant`` writes a K operand and ``callee`` renumbers an F one.
    ``narrow``, a `_NarrowCode` (a new one if None), encodes the ops of a narrow function
    whose constants and callees are written as they are (as in a file)."""
    wide = function.nregs > WIDE_ABOVE
    if not wide and constant is _varint and callee is _same:
        encoded = _NarrowCode() if narrow is None else narrow
        out += b"".join(map(encoded.__getitem__, function.code))
        return
    for instr in function.code:
        _instr(out, instr, wide, constant, callee)


class _NarrowCode(dict[Instr, bytes]):
    """Each op of a narrow function as written in a file, encoded once: a program repeats
    its ops (a large one may have a few distinct ops in a hundred), so one of these serves
    all the functions of an encoding."""

    def __missing__(self, instr: Instr) -> bytes:
        out = bytearray()
        _instr(out, instr, False, _varint, _same)
        self[instr] = encoded = bytes(out)
        return encoded


def _instr(
    out: bytearray,
    instr: Instr,
    wide: bool,
    constant: Callable[[bytearray, int], None],
    callee: Callable[[int], int],
) -> None:
    """One instruction, operand by operand."""
    op = instr[0]
    out.append(op)
    for letter, operand in zip(OPCODES[op].operands, instr[1:], strict=True):
        if letter == "R":
            out += operand.to_bytes(2, "little") if wide else bytes((operand,))
        elif letter == "L":
            _varint(out, len(operand))
            for register in operand:
                out += register.to_bytes(2, "little") if wide else bytes((register,))
        elif letter == "K":
            constant(out, operand)
        elif letter == "F":
            _varint(out, callee(operand))
        elif letter == "E":
            out.append(operand)
        else:  # J, U
            _varint(out, operand)


def _lines(out: bytearray, lines: tuple[tuple[int, int], ...]) -> None:
    """Runs of instructions sharing one (line, column): count, line, column."""
    if not lines:
        out.append(0)  # no runs
        return
    # Where each run starts (found in C: ops in a row often share a position).
    starts = [0, *compress(range(1, len(lines)), map(ne, lines[1:], lines))]
    _varint(out, len(starts))
    encoded: list[int] = []  # the bytes, made into bytes at the end (quicker than bytearray)
    for first, after in zip(starts, [*starts[1:], len(lines)], strict=True):
        count = after - first
        line, column = lines[first]
        if count < 0x80 and column < 0x80 and 0x80 <= line < 0x4000:  # the commonest
            encoded += (count, line & 0x7F | 0x80, line >> 7, column)
        else:
            _varint(encoded, count)
            _varint(encoded, line)
            _varint(encoded, column)
    out += bytes(encoded)


# ---------------------------------------------------------------------------------- reading


def load(path: str | os.PathLike[str]) -> Program:
    """Read, decode and verify a `.tape` file; any problem, unreadable file included, is a
    `TapeError`."""
    filename = os.fspath(path)
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise TapeError(filename, f"cannot read the file: {exc.strerror or exc}") from None
    return decode(data, filename)


def decode(data: bytes, filename: str = "<bytes>") -> Program:
    """The verified program in ``data``; raises `TapeError` naming the file and offset."""
    data = bytes(data)
    _check_header(data, filename)
    program, offsets = _Reader(data, filename).program()
    verify(program, filename, offsets)
    return program


def _check_header(data: bytes, filename: str) -> None:
    def fail(reason: str, offset: int) -> NoReturn:
        raise TapeError(filename, reason, offset)

    size = len(data)
    if not data.startswith(MAGIC):
        if size < len(MAGIC) and MAGIC.startswith(data):
            fail(f"truncated file: expected at least {HEADER_SIZE} bytes found {size}", size)
        fail("bad magic: not a .tape file (or damaged by a text-mode transfer)", 0)
    if size < HEADER_SIZE:
        fail(f"truncated file: expected at least {HEADER_SIZE} bytes found {size}", size)
    _, version, length, digest = _HEADER.unpack_from(data)
    if version != VERSION:
        fail(f"unsupported version {version} (this loader reads version {VERSION})", _VERSION_AT)
    expected = HEADER_SIZE + length
    if size < expected:
        fail(f"truncated file: expected {expected} bytes found {size}", size)
    if size > expected:
        fail(f"trailing bytes: {size - expected} bytes after the end of the body", expected)
    if hashlib.sha256(memoryview(data)[HEADER_SIZE:]).digest() != digest:
        fail("content hash mismatch: the body is damaged", _HASH_AT)


class _Reader:
    """A cursor over the whole file (so positions are file offsets) reading the body."""

    __slots__ = ("data", "end", "filename", "pos")

    def __init__(self, data: bytes, filename: str) -> None:
        self.data = data
        self.end = len(data)
        self.filename = filename
        self.pos = HEADER_SIZE

    def fail(self, reason: str, at: int | None = None) -> NoReturn:
        raise TapeError(self.filename, reason, self.pos if at is None else at)

    def byte(self) -> int:
        pos = self.pos
        if pos >= self.end:
            self.fail("unexpected end of the body")
        self.pos = pos + 1
        return self.data[pos]

    def u16(self) -> int:
        pos = self.pos
        if pos + 2 > self.end:
            self.fail("unexpected end of the body")
        self.pos = pos + 2
        return self.data[pos] | self.data[pos + 1] << 8

    def varint(self) -> int:
        """Unsigned LEB128: at most 10 bytes, minimal, at most 2**64-1."""
        data, pos = self.data, self.pos
        if pos < self.end and data[pos] < 0x80:  # the common one-byte case
            self.pos = pos + 1
            return data[pos]
        start, result, shift = pos, 0, 0
        while True:
            if pos >= self.end:
                self.fail("unexpected end of the body inside a number", start)
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            shift += 7
            if shift >= 70:
                self.fail("number longer than 10 bytes", start)
        if byte == 0:
            self.fail("number not minimally encoded (a redundant final zero byte)", start)
        if result > NAT_MAX:
            self.fail(f"number {result} is larger than 2**64-1", start)
        self.pos = pos
        return result

    def count(self, what: str, size: int = 1) -> int:
        """A count of items of at least ``size`` bytes each, checked against the bytes left."""
        start = self.pos
        n = self.varint()
        left = self.end - self.pos
        if n * size > left:
            self.fail(f"{what} count {n} needs at least {n * size} bytes, {left} remain", start)
        return n

    def string(self, what: str) -> str:
        n = self.count(f"{what} byte")
        pos = self.pos
        self.pos = pos + n
        try:
            return str(self.data[pos : pos + n], "utf-8")
        except UnicodeDecodeError as exc:
            self.fail(f"{what} is not valid UTF-8", pos + exc.start)

    def value(self) -> Value:
        """One constant, nested containers kept on an explicit stack (no recursion)."""
        stack: list[tuple[int, int, list]] = []  # open containers: tag, size, items so far
        while True:
            start = self.pos
            tag = self.byte()
            if tag == Kind.NAT:
                value: Value = self.varint()
            elif tag == Kind.BOOL:
                flag = self.byte()
                if flag > 1:
                    self.fail(f"bool byte {flag} is neither 0 nor 1", start + 1)
                value = flag == 1
            elif tag == Kind.STR:
                value = self.string("string constant")
            elif tag == Kind.NOTHING:
                value = NOTHING
            elif tag == Kind.OBJECT:
                value = ObjectRef(self.varint())
            elif tag == Kind.TX:
                value = TxRef(self.varint())
            elif tag == Kind.LIST or tag == Kind.PAIR or tag == Kind.JUST:
                if len(stack) >= MAX_DEPTH:
                    self.fail(f"constant nests containers deeper than {MAX_DEPTH} levels", start)
                if tag == Kind.LIST:
                    size = self.count("list element")
                else:
                    size = 2 if tag == Kind.PAIR else 1
                if size:
                    stack.append((tag, size, []))
                    continue
                value = ()
            else:
                self.fail(f"unknown value tag {tag}", start)
            # Hand the finished value to the innermost open container, closing full ones.
            while stack:
                tag, size, items = stack[-1]
                items.append(value)
                if len(items) < size:
                    break
                stack.pop()
                if tag == Kind.LIST:
                    value = tuple(items)
                else:
                    value = Pair(*items) if tag == Kind.PAIR else Just(items[0])
            else:
                return value

    def function(self) -> tuple[Function, list[int]]:
        name = self.string("function name")
        q = quote_name(name)
        kind = self.byte()
        if kind >= len(_KINDS):
            self.fail(f"function {q} has unknown kind {kind}", self.pos - 1)
        flags_at = self.pos
        flags = self.byte()
        nparams = self.varint()
        nregs = self.count("register type")
        if nregs > MAX_REGISTERS:
            self.fail(f"function {q} has {nregs} registers (the limit is {MAX_REGISTERS})")
        wide = nregs > WIDE_ABOVE
        if flags != wide:
            reason = f"function {q} has flags {flags}, expected {int(wide)}"
            self.fail(f"{reason} for {nregs} registers (bit 0: the wide form)", flags_at)
        types_at = self.pos
        raw = self.data[types_at : types_at + nregs]
        self.pos = types_at + nregs
        if raw and max(raw) >= len(_REG_TYPES):
            bad = next(i for i, t in enumerate(raw) if t >= len(_REG_TYPES))
            self.fail(f"unknown register type {raw[bad]}", types_at + bad)
        ncode = self.count("instruction")
        code, offsets = self.code(ncode, wide)
        lines = self.lines(ncode)
        reg_types = tuple(map(_REG_TYPES.__getitem__, raw))
        function = Function(name, _KINDS[kind], nparams, reg_types, code, lines)
        return function, offsets

    def code(self, n: int, wide: bool) -> tuple[tuple[Instr, ...], list[int]]:
        register = self.u16 if wide else self.byte
        code: list[Instr] = []
        offsets: list[int] = []
        for _ in range(n):
            start = self.pos
            offsets.append(start)
            info = _BY_BYTE[self.byte()]
            if info is None:
                self.fail(f"unknown opcode {self.data[start]}", start)
            instr: list = [info.op]
            for letter in info.operands:
                if letter == "R":
                    instr.append(register())
                elif letter == "L":
                    size = self.count("register list", 2 if wide else 1)
                    instr.append(tuple([register() for _ in range(size)]))
                elif letter == "E":
                    instr.append(self.byte())
                else:  # K, J, F, U
                    instr.append(self.varint())
            code.append(tuple(instr))
        return tuple(code), offsets

    def lines(self, n: int) -> tuple[tuple[int, int], ...]:
        runs = self.count("line table run", 3)
        lines: list[tuple[int, int]] = []
        previous = None
        for _ in range(runs):
            start = self.pos
            size, line, column = self.varint(), self.varint(), self.varint()
            if not 0 < size <= n - len(lines):
                self.fail(f"line table run of {size} does not fit {n} instructions", start)
            if line > MAX_LINE or column > MAX_LINE:
                self.fail(f"line table position {line}:{column} is out of range", start)
            position = (line, column)
            if position == previous:
                self.fail("line table run repeats the previous position", start)
            lines.extend([position] * size)
            previous = position
        if len(lines) != n:
            self.fail(f"line table covers {len(lines)} of {n} instructions")
        return tuple(lines)

    def program(self) -> tuple[Program, Offsets]:
        offsets = Offsets([], [], [], [], 0, 0)
        constants = []
        for _ in range(self.count("constant")):
            offsets.constants.append(self.pos)
            constants.append(self.value())
        functions = []
        for _ in range(self.count("function")):
            offsets.functions.append(self.pos)
            function, code_offsets = self.function()
            functions.append(function)
            offsets.code.append(code_offsets)
        behaviors = []
        for _ in range(self.count("behavior")):
            offsets.behaviors.append(self.pos)
            name, function = self.string("behavior name"), self.varint()
            fields = tuple([self.string("field name") for _ in range(self.count("field"))])
            behaviors.append(Behavior(name, function, fields))
        offsets.main = self.pos
        main = self.varint()
        offsets.source = self.pos
        source = self.string("source name")
        if self.pos != self.end:
            self.fail(f"{self.end - self.pos} unexpected bytes after the last section")
        program = Program(
            source, tuple(constants), tuple(functions), tuple(behaviors), main - 1 if main else None
        )
        return program, offsets


# ---------------------------------------------------------------------------------- hashing


def callee_order(program: Program, function_index: int) -> list[int]:
    """The function and every function it transitively CALLs, in order of discovery (a
    breadth-first walk): positions in this list do not depend on the table's layout."""
    order = [function_index]
    seen = {function_index}
    for index in order:  # grows as callees are found
        for instr in program.functions[index].code:
            for letter, operand in zip(OPCODES[instr[0]].operands, instr[1:], strict=True):
                if letter == "F" and operand not in seen:
                    seen.add(operand)
                    order.append(operand)
    return order


def code_hash(program: Program, function_index: int) -> bytes:
    """sha256 of a function's code and of every function it transitively CALLs.

    Constants are inlined as values and callees renumbered in order of discovery, so the
    hash ignores table layout and line numbers but sees any change to names, kinds,
    parameter and register counts, register types or code. ``program`` must be verified.
    """
    order = callee_order(program, function_index)
    position = {index: number for number, index in enumerate(order)}

    def constant(out: bytearray, k: int) -> None:
        _value(out, program.constants[k])

    out = bytearray(b"avm code v1\0")
    for index in order:
        function = program.functions[index]
        _function_head(out, function)
        _code(out, function, constant, position.__getitem__)
    return hashlib.sha256(out).digest()


def behavior_hash(program: Program, behavior: Behavior) -> bytes:
    """sha256 of a behavior's name, field names and `code_hash` of its function."""
    out = bytearray(b"avm behavior v1\0")
    _string(out, behavior.name)
    _strings(out, behavior.fields)
    out += code_hash(program, behavior.function)
    return hashlib.sha256(out).digest()
