"""The verifier: every rule a `Program` must satisfy before the VM may run it.

`bytecode.decode` runs it on every file it reads, and `bytecode.encode` on every program it
writes, so the VM and the JIT can trust what they get: every operand is in range, control
never runs off the end of a function, calls match their callee, and every register holds a
value of its declared type at every instant (a write must produce that type, and frames
start from `opcodes.INITIAL_VALUE`). It also accepts a program built in memory, where it
checks the Python types as well (a file can only hold well-typed data). Rules and limits
are listed in docs/bytecode.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from avm_vm.diagnostics import DiagnosticError, error
from avm_vm.format.instructions import INSTRUCTIONS
from avm_vm.format.opcodes import OPCODES, Op, RegType, const_type
from avm_vm.format.program import Function, FunctionKind, Program
from avm_vm.values import NAT_MAX, Just, Kind, NothingType, ObjectRef, Pair, TxRef, Value

MAX_DEPTH = 200  # containers nested in one constant; decoding and checking stay iterative
MAX_REGISTERS = 65535  # a wide function's u16 register operands
WIDE_ABOVE = 256  # a function with more registers than this uses the wide form
MAX_LINE = 2**32 - 1  # line and column numbers in the line table


class TapeError(DiagnosticError):
    """A `.tape` file (or an in-memory program) that must not run; names file and offset."""

    def __init__(
        self, filename: str, reason: str, offset: int | None = None, where: str | None = None
    ) -> None:
        self.filename = filename
        self.reason = reason
        self.offset = offset
        self.where = where  # the part of an in-memory program, when there is no offset
        location = f"offset {offset}" if offset is not None else where
        text = f"{filename}: {location}: {reason}" if location else f"{filename}: {reason}"
        super().__init__(error(text))


@dataclass
class Offsets:
    """Byte offsets (from the start of the file) of a decoded program's parts."""

    constants: list[int]
    functions: list[int]  # each function's entry
    code: list[list[int]]  # each instruction, per function
    behaviors: list[int]
    main: int
    source: int


def verify(program: Program, filename: str = "<program>", offsets: Offsets | None = None) -> None:
    """Raise `TapeError` on the first broken rule; offsets make messages point into a file."""
    _Verifier(program, filename, offsets).run()


def _value_problem(value: object) -> str | None:
    """Why ``value`` cannot be a constant (not a value, nat out of range, too deep), or None."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is int:
            if not 0 <= item <= NAT_MAX:
                return f"nat {item} is outside 0..2**64-1"
        elif kind is str:
            if not _encodable(item):
                return "string is not encodable as UTF-8"
        elif kind is ObjectRef or kind is TxRef:
            if type(item.id) is not int or not 0 <= item.id <= NAT_MAX:
                return f"reference id {item.id!r} is outside 0..2**64-1"
        elif kind is tuple or kind is Pair or kind is Just:
            if depth >= MAX_DEPTH:
                return f"constant nests containers deeper than {MAX_DEPTH} levels"
            children = item if kind is tuple else _children(item)
            stack.extend((child, depth + 1) for child in children)
        elif kind is not bool and kind is not NothingType:
            return f"{item!r} is not an AVM value"
    return None


def _children(item: Pair | Just) -> tuple[Value, ...]:
    return (item.first, item.second) if type(item) is Pair else (item.value,)


def _encodable(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def quote_name(name: str) -> str:
    """A name as messages show it: quoted, escaped, and cut short if a hostile file made it long."""
    return repr(name if len(name) <= 60 else name[:57] + "...")


def _is_nat(x: object, limit: int = NAT_MAX) -> bool:
    return type(x) is int and 0 <= x <= limit


def _is_name(x: object) -> bool:
    return type(x) is str and _encodable(x)


def _unique_name(
    name: object, what: str, index: int, seen: set[str], fail: Callable[[str], NoReturn]
) -> str:
    """``name`` quoted for messages, after checking it is a valid name not seen before."""
    if not _is_name(name):
        fail(f"{what} {index} has no valid name")
    q = quote_name(name)  # type: ignore[arg-type]
    if name in seen:
        fail(f"duplicate {what} name {q}")
    seen.add(name)  # type: ignore[arg-type]
    return q


# Per op: its operand letters with their positions in an instruction tuple, and what it
# writes: None (nothing), a `RegType`, or the op itself for LOADK and MOVE (the constant's
# type, the source register's). Read once per instruction, so kept in plain tuples.
_PLACES = {op: tuple(enumerate(info.operands, start=1)) for op, info in OPCODES.items()}
_PRODUCES = {
    op: op if op is Op.LOADK or op is Op.MOVE else info.result for op, info in OPCODES.items()
}
# The ops with a rule of their own besides operand ranges and register types.
_OWN_RULES = frozenset((Op.CALL, Op.EFFECT, Op.ISKIND, Op.GETFIELD, Op.SETFIELD))
# The ops `check_code`'s quick path takes (scalar operands, no rule of their own), with
# their operands' places: other ops always get the full checks.
_QUICK = {
    op: (len(places) + 1, places)
    for op, places in _PLACES.items()
    if op not in _OWN_RULES and all(letter != "L" for _, letter in places)
}
# Named once per instruction: an enum member costs a lookup each time it is named.
_LOADK, _MOVE, _EFFECT = Op.LOADK, Op.MOVE, Op.EFFECT
_ANY = RegType.ANY
_NO_ENTRY = object()  # before a function's first line table entry
_JUST_REG_TYPE = frozenset((RegType,))


def _operand_problem(
    instr: object, limits: dict[str, tuple[int, str, str]], bounds: dict[str, int]
) -> str | None:
    """Why ``instr`` is not an op with its table's operands, each within its limit (``bounds``
    holds the limits' first items), or None."""
    if type(instr) is not tuple or not instr or type(instr[0]) is not Op:
        return f"unknown opcode in {instr!r}"
    places = _PLACES[instr[0]]
    if len(instr) != 1 + len(places):
        name = instr[0].name
        return f"{name} takes {len(places)} operands, not {len(instr) - 1}"
    for i, letter in places:
        operand = instr[i]
        if letter == "L":
            if type(operand) is not tuple:
                return f"{instr[0].name} needs a register list, not {operand!r}"
            bound = bounds["R"]
            for x in operand:
                if type(x) is not int or not 0 <= x < bound:
                    _, what, within = limits["R"]
                    return f"{what} {x!r} is outside {within}"
        elif type(operand) is not int or not 0 <= operand < bounds[letter]:
            _, what, within = limits[letter]
            return f"{what} {operand!r} is outside {within}"
    return None


def _limits(bounds: dict[str, int], q: str) -> dict[str, tuple[int, str, str]]:
    """Per operand letter of function ``q``'s code: its bound, what it is, and what it must
    lie within, as messages say."""
    return {
        "R": (bounds["R"], "register", f"function {q} ({bounds['R']} registers)"),
        "K": (bounds["K"], "constant", f"the constant pool ({bounds['K']} constants)"),
        "J": (bounds["J"], "jump target", f"function {q} ({bounds['J']} instructions)"),
        "F": (bounds["F"], "function", f"the function table ({bounds['F']} functions)"),
        "E": (bounds["E"], "AVM instruction", f"the instruction set ({bounds['E']} instructions)"),
        "U": (bounds["U"], "immediate", "0..2**64-1"),
    }


class _Verifier:
    def __init__(self, program: Program, filename: str, offsets: Offsets | None) -> None:
        self.program = program
        self.filename = filename
        self.offsets = offsets
        self.constant_types: tuple[RegType, ...] = ()  # set by `run` once constants are checked

    def fail(self, reason: str, where: str | None, offset: Callable[[Offsets], int]) -> NoReturn:
        at = offset(self.offsets) if self.offsets is not None else None
        raise TapeError(self.filename, reason, at, where)

    def run(self) -> None:
        program = self.program
        if not _is_name(program.source_name):
            self.fail("the source name is not a valid string", None, lambda o: o.source)
        for k, constant in enumerate(program.constants):
            problem = _value_problem(constant)
            if problem:
                self.fail(f"constant {k}: {problem}", None, lambda o, k=k: o.constants[k])
        # Each constant's register type (what a LOADK of it writes), worked out once.
        self.constant_types = tuple(map(const_type, program.constants))
        seen: set[str] = set()
        for index, function in enumerate(program.functions):
            self.check_header(index, function, seen)
        for index, function in enumerate(program.functions):
            self.check_code(index, function)
        self.check_behaviors()
        self.check_main()

    def check_header(self, index: int, function: Function, seen: set[str]) -> None:
        def fail(reason: str) -> NoReturn:
            self.fail(reason, f"function {index}", lambda o: o.functions[index])

        q = _unique_name(function.name, "function", index, seen, fail)
        if type(function.kind) is not FunctionKind:
            fail(f"function {q} has an unknown kind {function.kind!r}")
        types = function.reg_types
        if not _JUST_REG_TYPE.issuperset(map(type, types)):  # each a RegType (checked in C)
            fail(f"function {q} has an unknown register type")
        if len(types) > MAX_REGISTERS:
            fail(f"function {q} has {len(types)} registers (the limit is {MAX_REGISTERS})")
        if not _is_nat(function.nparams, len(types)):
            fail(f"function {q} has {function.nparams} parameters but {len(types)} registers")
        if any(t is not RegType.ANY for t in types[: function.nparams]):
            fail(f"function {q} declares a parameter register with a type other than any")
        if not function.code:
            fail(f"function {q} has no code")
        if len(function.lines) != len(function.code):
            fail(
                f"function {q} has {len(function.lines)} line table entries "
                f"for {len(function.code)} instructions"
            )
        previous: object = _NO_ENTRY  # not None: a None entry is malformed, not "the same"
        for position in function.lines:
            if position is previous:  # one entry for several ops in a row: checked already
                continue
            previous = position
            if not (type(position) is tuple and len(position) == 2):
                fail(f"function {q} has a malformed line table entry {position!r}")
            line, column = position
            if not (
                type(line) is int
                and 0 <= line <= MAX_LINE
                and type(column) is int
                and 0 <= column <= MAX_LINE
            ):
                fail(f"function {q} has a line table entry out of range {position!r}")

    def check_code(self, index: int, function: Function) -> None:
        program = self.program
        code, types = function.code, function.reg_types
        q = quote_name(function.name)

        def fail(pc: int, reason: str) -> NoReturn:
            self.fail(reason, f"function {q} pc {pc}", lambda o: o.code[index][pc])

        # What each operand letter must stay below; what it is and what it must lie within
        # (for messages) are spelled out when an instruction first needs the full checks.
        bounds = {
            "R": len(types),
            "K": len(program.constants),
            "J": len(code),
            "F": len(program.functions),
            "E": len(INSTRUCTIONS),
            "U": NAT_MAX + 1,
        }
        limits: dict[str, tuple[int, str, str]] | None = None
        pure = function.kind is FunctionKind.PURE
        constant_types = self.constant_types
        for pc, instr in enumerate(code):
            # The quick path accepts only an op of scalar operands, each an int in range,
            # whose register type rule holds: what `_operand_problem` and `rule_problem`
            # would pass. Anything else, or anything it doubts, goes the full way below.
            if type(instr) is tuple and instr and type(op := instr[0]) is Op:
                quick = _QUICK.get(op)
                if quick is not None and len(instr) == quick[0]:
                    for i, letter in quick[1]:
                        operand = instr[i]
                        if type(operand) is not int or not 0 <= operand < bounds[letter]:
                            break
                    else:
                        produced = _PRODUCES[op]
                        if produced is None or (declared := types[instr[1]]) is _ANY:
                            continue
                        if produced is _LOADK:
                            produced = constant_types[instr[2]]
                        elif produced is _MOVE:
                            produced = types[instr[2]]
                        if declared is produced:
                            continue
            if limits is None:
                limits = _limits(bounds, q)
            problem = _operand_problem(instr, limits, bounds) or self.rule_problem(instr, types)
            if not problem and pure and instr[0] is _EFFECT:
                # CALL and call_pure treat a pure function as effect-free (a `fn` may not
                # use instructions); a hostile file must not smuggle one in.
                problem = (
                    f"pure function {q} performs the AVM instruction "
                    f"{INSTRUCTIONS[instr[2]].name}: only behaviors and main may"
                )
            if problem:
                fail(pc, problem)
        if not OPCODES[code[-1][0]].ends_block:
            fail(len(code) - 1, f"function {q} can run off its end (last op {code[-1][0].name})")

    def rule_problem(self, instr: tuple, types: tuple[RegType, ...]) -> str | None:
        """The op-specific rules and the register type rule, once operands are in range."""
        op = instr[0]
        if op in _OWN_RULES:
            problem = self.own_rule_problem(instr)
            if problem:
                return problem
        produced = _PRODUCES[op]
        if produced is None:
            return None
        declared = types[instr[1]]
        if declared is _ANY:
            return None
        if produced is _LOADK:
            produced = const_type(self.program.constants[instr[2]])
        elif produced is _MOVE:
            produced = types[instr[2]]
        if declared is not produced:
            return (
                f"{op.name} writes a value of type {produced.name.lower()} to r{instr[1]}, "
                f"declared {declared.name.lower()}"
            )
        return None

    def own_rule_problem(self, instr: tuple) -> str | None:
        """The rule of a CALL, EFFECT, ISKIND, GETFIELD or SETFIELD, besides operand ranges."""
        op = instr[0]
        program = self.program
        if op is Op.CALL:
            callee = program.functions[instr[2]]
            if callee.kind is not FunctionKind.PURE:
                return f"CALL of {quote_name(callee.name)}, which is not a pure function"
            if len(instr[3]) != callee.nparams:
                return (
                    f"CALL passes {len(instr[3])} arguments to {quote_name(callee.name)}, "
                    f"which takes {callee.nparams}"
                )
        elif op is Op.EFFECT:
            target = INSTRUCTIONS[instr[2]]
            if len(instr[3]) != target.arity:
                return f"EFFECT {target.name} takes {target.arity} arguments, not {len(instr[3])}"
        elif op is Op.ISKIND:
            if instr[3] >= len(Kind):
                return f"ISKIND of unknown value kind {instr[3]} ({len(Kind)} kinds)"
        elif op is Op.GETFIELD or op is Op.SETFIELD:
            defaults = program.constants[instr[-1]]
            if type(defaults) is not tuple:
                return f"{op.name} defaults (constant {instr[-1]}) are not a list"
            if instr[3] >= len(defaults):
                return f"{op.name} field {instr[3]} is outside its {len(defaults)} defaults"
        return None

    def check_behaviors(self) -> None:
        functions = self.program.functions
        seen: set[str] = set()
        for b, behavior in enumerate(self.program.behaviors):

            def fail(reason: str, b: int = b) -> NoReturn:
                self.fail(reason, f"behavior {b}", lambda o: o.behaviors[b])

            q = _unique_name(behavior.name, "behavior", b, seen, fail)
            if not _is_nat(behavior.function, len(functions) - 1):
                fail(f"behavior {q} refers to function {behavior.function!r}, outside the "
                     f"function table ({len(functions)} functions)")  # fmt: skip
            target = functions[behavior.function]
            if target.kind is not FunctionKind.BEHAVIOR or target.nparams != 1:
                fail(f"behavior {q} needs a behavior function of one parameter, "
                     f"not {quote_name(target.name)}")  # fmt: skip
            if not all(_is_name(field) for field in behavior.fields):
                fail(f"behavior {q} has a field name that is not a string")

    def check_main(self) -> None:
        main, functions = self.program.main, self.program.functions

        def fail(reason: str) -> NoReturn:
            self.fail(reason, "main", lambda o: o.main)

        if main is None:
            return
        if not _is_nat(main, len(functions) - 1):
            fail(f"main refers to function {main!r}, outside the function table "
                 f"({len(functions)} functions)")  # fmt: skip
        target = functions[main]
        if target.kind is not FunctionKind.MAIN or target.nparams != 0:
            fail(f"main needs a main function of no parameters, not {quote_name(target.name)}")
