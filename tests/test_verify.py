"""The verifier's rules, on programs built in memory and on the same programs read from bytes.

Each hostile program below breaks one rule. Those a file can hold are also written without
verification (`_encode_body`, with a valid hash) and must fail to load with the same reason,
now located by a byte offset.
"""

from __future__ import annotations

import pytest
from test_bytecode import FIB, assemble, fib_code

from avm_vm.format.bytecode import TapeError, _encode_body, _wrap, decode, encode
from avm_vm.format.instructions import INSTRUCTIONS
from avm_vm.format.opcodes import Op, RegType
from avm_vm.format.program import Behavior, Function, FunctionKind, Program
from avm_vm.format.verify import MAX_DEPTH, verify
from avm_vm.values import NAT_MAX, NOTHING, Just, ObjectRef


def one(code: list[tuple], regs: str = "a", constants: tuple = (), kind: str = "pure") -> Program:
    """A program of one function 'f' of no parameters."""
    return assemble([("f", kind, 0, regs, code)], constants=constants)


def with_callee(code: list[tuple], callee_kind: str = "pure", nparams: int = 1) -> Program:
    return assemble(
        [("f", "pure", 0, "aa", code), ("g", callee_kind, nparams, "a" * nparams, [("RET", 0)])]
    )


def nested_just(depth: int) -> object:
    value: object = NOTHING
    for _ in range(depth):
        value = Just(value)
    return value


def replace_function(program: Program, index: int, **changes: object) -> Program:
    functions = list(program.functions)
    f = functions[index]
    fields = {k: getattr(f, k) for k in ("name", "kind", "nparams", "reg_types", "code", "lines")}
    functions[index] = Function(**{**fields, **changes})
    return Program(program.source_name, program.constants, tuple(functions), (), program.main)


BEHAVIOR_FN = ("b", "behavior", 1, "a", [("RET", 0)])
MAIN_FN = ("m", "main", 0, "a", [("RET", 0)])
PURE_FN = ("p", "pure", 1, "a", [("RET", 0)])

# (id, program, expected reason fragment) for programs a file can hold.
ENCODABLE = [
    ("register", one([("RET", 5)]), "register 5 is outside function 'f' (1 registers)"),
    ("list-register", one([("MKLIST", 0, [0, 1])]), "register 1 is outside function 'f'"),
    (
        "constant",
        one([("LOADK", 0, 3), ("RET", 0)], constants=(1,)),
        "constant 3 is outside the constant pool (1 constants)",
    ),
    ("jump", one([("JMP", 1)]), "jump target 1 is outside function 'f' (1 instructions)"),
    ("try-target", one([("TRY", 0, 9), ("RET", 0)]), "jump target 9 is outside function 'f'"),
    ("function", one([("CALL", 0, 5, []), ("RET", 0)]), "function 5 is outside the function"),
    (
        "effect",
        one([("EFFECT", 0, len(INSTRUCTIONS), []), ("RET", 0)]),
        f"AVM instruction {len(INSTRUCTIONS)} is outside",
    ),
    (
        "effect-arity",
        one([("EFFECT", 0, "call", [0]), ("RET", 0)]),
        "EFFECT call takes 2 arguments, not 1",
    ),
    (
        "pure-effect",
        one([("EFFECT", 0, "now", []), ("RET", 0)]),
        "pure function 'f' performs the AVM instruction now: only behaviors and main may",
    ),
    (
        "call-arity",
        with_callee([("CALL", 0, "g", [0, 1]), ("RET", 0)]),
        "CALL passes 2 arguments to 'g', which takes 1",
    ),
    (
        "call-not-pure",
        with_callee([("CALL", 0, "g", [0]), ("RET", 0)], callee_kind="behavior"),
        "CALL of 'g', which is not a pure function",
    ),
    ("falls-off", one([("MOVE", 0, 0)]), "function 'f' can run off its end (last op MOVE)"),
    ("falls-off-branch", one([("JMPT", 0, 0)]), "can run off its end (last op JMPT)"),
    ("iskind", one([("ISKIND", 0, 0, 9), ("RET", 0)]), "ISKIND of unknown value kind 9"),
    (
        "getfield-not-list",
        one([("GETFIELD", 0, 0, 0, 0), ("RET", 0)], constants=(5,)),
        "GETFIELD defaults (constant 0) are not a list",
    ),
    (
        "setfield-index",
        one([("SETFIELD", 0, 0, 2, 0, 0), ("RET", 0)], constants=((1, 2),)),
        "SETFIELD field 2 is outside its 2 defaults",
    ),
    (
        "loadk-type",
        one([("LOADK", 0, 0), ("RET", 0)], regs="n", constants=(True,)),
        "LOADK writes a value of type bool to r0, declared nat",
    ),
    (
        "move-type",
        one([("MOVE", 1, 0), ("RET", 0)], regs="an"),
        "MOVE writes a value of type any to r1, declared nat",
    ),
    (
        "move-typed-mismatch",
        one([("MOVE", 1, 0), ("RET", 0)], regs="sn"),
        "MOVE writes a value of type str to r1, declared nat",
    ),
    (
        "result-type",
        one([("ADD", 0, 0, 0), ("RET", 0)], regs="b"),
        "ADD writes a value of type nat to r0, declared bool",
    ),
    (
        "try-type",
        one([("TRY", 0, 1), ("RET", 0)], regs="n"),
        "TRY writes a value of type str to r0, declared nat",
    ),
    (
        "effect-type",
        one([("EFFECT", 0, "self", []), ("RET", 0)], regs="l"),
        "EFFECT writes a value of type any to r0, declared list",
    ),
    ("no-code", one([]), "function 'f' has no code"),
    (
        "nparams",
        assemble([("f", "pure", 2, "a", [("RET", 0)])]),
        "function 'f' has 2 parameters but 1 registers",
    ),
    (
        "typed-param",
        assemble([("f", "pure", 1, "n", [("RET", 0)])]),
        "declares a parameter register with a type other than any",
    ),
    (
        "too-many-registers",
        assemble([("f", "pure", 0, "a" * 65536, [("RET", 0)])]),
        "function 'f' has 65536 registers (the limit is 65535)",
    ),
    (
        "duplicate-function",
        assemble([MAIN_FN, ("m", "pure", 0, "a", [("RET", 0)])]),
        "duplicate function name 'm'",
    ),
    (
        "duplicate-behavior",
        assemble([BEHAVIOR_FN], behaviors=(("B", "b", ()), ("B", "b", ()))),
        "duplicate behavior name 'B'",
    ),
    (
        "behavior-kind",
        assemble([PURE_FN], behaviors=(("B", "p", ()),)),
        "behavior 'B' needs a behavior function of one parameter, not 'p'",
    ),
    (
        "behavior-params",
        assemble([("b", "behavior", 2, "aa", [("RET", 0)])], behaviors=(("B", "b", ()),)),
        "needs a behavior function of one parameter",
    ),
    (
        "behavior-index",
        Program("t.avm", (), (), (Behavior("B", 0, ()),), None),
        "behavior 'B' refers to function 0, outside the function table (0 functions)",
    ),
    ("main-kind", assemble([PURE_FN], main="p"), "main needs a main function"),
    (
        "main-params",
        assemble([("m", "main", 1, "a", [("RET", 0)])], main="m"),
        "main needs a main function of no parameters, not 'm'",
    ),
    ("main-index", Program("t.avm", (), (), (), 3), "main refers to function 3, outside"),
    (
        "deep-constant",
        one([("RET", 0)], constants=(nested_just(MAX_DEPTH + 1),)),
        "constant nests containers deeper than 200 levels",
    ),
]

# Programs only memory can hold: the Python types are wrong, or the bytes cannot say it.
IN_MEMORY = [
    ("opcode-int", one([(36, 0)]), "unknown opcode in (36, 0)"),
    ("opcode-missing", one([()]), "unknown opcode in ()"),
    ("operand-count", one([(Op.RET, 0, 1)]), "RET takes 1 operands, not 2"),
    ("bool-register", one([(Op.RET, True)]), "register True is outside"),
    ("list-not-tuple", one([(Op.MKLIST, 0, [0]), (Op.RET, 0)]), "MKLIST needs a register list"),
    (
        "immediate",
        one([("ISLEN", 0, 0, NAT_MAX + 1), ("RET", 0)]),
        "immediate 1844674407370955",
    ),
    ("nat-constant", one([("RET", 0)], constants=(NAT_MAX + 1,)), "constant 0: nat 1844"),
    ("object-id", one([("RET", 0)], constants=(ObjectRef(-1),)), "reference id -1 is outside"),
    ("not-a-value", one([("RET", 0)], constants=((1, 2.5),)), "constant 0: 2.5 is not an AVM"),
    ("surrogate", one([("RET", 0)], constants=("\ud800",)), "string is not encodable as UTF-8"),
    (
        "lines",
        replace_function(one([("RET", 0)]), 0, lines=()),
        "function 'f' has 0 line table entries for 1 instructions",
    ),
    (
        "line-range",
        replace_function(one([("RET", 0)]), 0, lines=((2**32, 0),)),
        "function 'f' has a line table entry out of range (4294967296, 0)",
    ),
    ("reg-type", replace_function(one([("RET", 0)]), 0, reg_types=(7,)), "unknown register type"),
    ("kind", replace_function(one([("RET", 0)]), 0, kind=1), "function 'f' has an unknown kind"),
    ("name", replace_function(one([("RET", 0)]), 0, name=None), "function 0 has no valid name"),
    ("source", Program(None, (), (), (), None), "the source name is not a valid string"),
]


@pytest.mark.parametrize(
    ("program", "reason"), [case[1:] for case in ENCODABLE], ids=[c[0] for c in ENCODABLE]
)
def test_rule_in_memory_and_from_bytes(program: Program, reason: str) -> None:
    with pytest.raises(TapeError) as info:
        verify(program, "t.avm")
    assert reason in info.value.reason
    assert info.value.offset is None
    with pytest.raises(TapeError) as info:
        encode(program)  # the writer refuses it too
    data = _wrap(_encode_body(program))
    with pytest.raises(TapeError) as info:
        decode(data, "pp.tape")
    assert reason in info.value.reason
    assert info.value.offset is not None and 0 < info.value.offset < len(data)


@pytest.mark.parametrize(
    ("program", "reason"), [case[1:] for case in IN_MEMORY], ids=[c[0] for c in IN_MEMORY]
)
def test_rule_in_memory_only(program: Program, reason: str) -> None:
    with pytest.raises(TapeError) as info:
        verify(program, "t.avm")
    assert reason in info.value.reason


def test_message_names_file_and_offset_or_function_and_pc() -> None:
    code = fib_code(0, 1)
    code[2] = ("JMPF", 2, 57)
    bad = assemble([("fib", "pure", 1, "anbaa", code)], constants=(2, 1))
    with pytest.raises(TapeError) as info:
        verify(bad, "fib.avm")
    assert str(info.value) == (
        "fib.avm: function 'fib' pc 2: jump target 57 is outside function 'fib' (12 instructions)"
    )
    data = _wrap(_encode_body(bad))
    with pytest.raises(TapeError) as info:
        decode(data, "pp.tape")
    offset = info.value.offset
    assert str(info.value) == (
        f"pp.tape: offset {offset}: jump target 57 is outside function 'fib' (12 instructions)"
    )
    assert data[offset] == Op.JMPF and data[offset + 2] == 57  # points at the instruction
    assert info.value.diagnostics[0].message == str(info.value)


def test_offsets_point_at_the_broken_part() -> None:
    program = assemble([BEHAVIOR_FN, PURE_FN], behaviors=(("Good", "b", ()), ("Bad", "p", ())))
    data = _wrap(_encode_body(program))
    with pytest.raises(TapeError) as info:
        decode(data)
    assert data[info.value.offset :].startswith(b"\x03Bad")
    program = assemble([PURE_FN], main="p", source="src.avm")
    data = _wrap(_encode_body(program))
    with pytest.raises(TapeError) as info:
        decode(data)
    assert data[info.value.offset :] == b"\x01\x07src.avm"  # main = function 0 + 1


def test_boundaries_that_are_allowed() -> None:
    ok = [
        one([("RET", 0)], constants=(nested_just(MAX_DEPTH), (((),),))),
        one([("LOADK", 0, 0), ("LOADK", 1, 1), ("MOVE", 2, 0), ("RET", 2)], "nan", (1, 2)),
        one([("TRY", 0, 1), ("RET", 0)], regs="s"),
        assemble([("f", "pure", 1, "a", [("RET", 0)])]),  # nparams == nregs
        one([("GETFIELD", 0, 0, 1, 0), ("RET", 0)], constants=((1, 2),)),
        with_callee([("CALL", 0, "g", [0, 1]), ("RET", 0)], nparams=2),
        Program("t.avm", (), (), (), None),
        one([("EFFECT", 0, "now", []), ("RET", 0)], kind="main"),  # effects outside a fn
    ]
    for program in ok:
        verify(program, "t.avm")
        decode(encode(program))


def test_verify_runs_on_decode_of_a_valid_file() -> None:
    verify(FIB)
    broken = replace_function(FIB, 0, reg_types=(RegType.NAT,) * 5)
    with pytest.raises(TapeError, match="parameter register"):
        verify(broken, "x")
    assert FunctionKind.PURE is FIB.functions[0].kind
