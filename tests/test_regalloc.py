"""Type inference and register allocation.

The allocation is checked against an independent, op-by-op liveness computed here (with a
failure edge from every op of a TRY region to its handler): no two registers live at the
same point share a frame register, and a frame register holds one type.
"""

from __future__ import annotations

import pytest

from avm_vm.format.opcodes import OPCODES, Op, RegType
from avm_vm.format.program import FunctionKind
from avmc.ir import BasicBlock, IrFunction, IrInstr, IrProgram
from avmc.lower import lower
from avmc.parser import parse
from avmc.passes import optimize
from avmc.regalloc import allocate, assign_registers
from avmc.types import infer_program_types, infer_types

PROGRAMS = {
    "chain": "fn f(a) { let x = a + 1 let y = x * 2 let z = y - x return [x, y, z] }",
    "loop": """fn f(n) {
        let s = 0 let i = 0
        while i < n { let t = i * 2 s = s + t i += 1 if s > 100 { break } }
        for x in [1, 2, 3] { s += x }
        return s
    }""",
    "atomic": """main {
        let keep = "k" let n = 1
        atomic { let tmp = [1, 2] n = len(tmp) fail "x" } else (e) { return [keep, n, e] }
        atomic { let a = 1 let b = "s" atomic under b { call(self, [a]) } }
        atomic { fail 3 } else { return keep }
        return n
    }""",
    "handler_only": """main {
        let keep = "k" ++ "j"
        atomic { let tmp = "zz" ++ keep let u = [tmp, call(self, [tmp])] fail u }
        else (e) { return [keep, e] }
    }""",
    "match": """fn f(m) {
        match m { [1, x, ..r] => { return r } (a, just b) => { return a ++ b }
        [s] if s == "x" => { return 1 } _ => { return 0 } }
    }""",
    "behavior": """behavior C { field c = 0 field d = "x"
        on ["inc", k] { c += k; d ++= "y"; return [c, d] } on other { return other } }""",
}


def _lowered(source: str, optimized: bool) -> IrProgram:
    program = lower(parse(source, "t.avm"), "t.avm")
    return infer_program_types(optimize(program) if optimized else program)


# ---------------------------------------------------------------- an independent liveness


def _points(function: IrFunction) -> list[tuple[int, int]]:
    return [(b.label, i) for b in function.blocks for i in range(len(b.instrs))]


def _handlers(function: IrFunction) -> dict[tuple[int, int], tuple[int, ...]]:
    """The stack of open TRY handlers before each op, by walking every path."""
    blocks = {b.label: b for b in function.blocks}
    stacks: dict[tuple[int, int], tuple[int, ...]] = {}
    work = [((function.blocks[0].label, 0), ())]
    while work:
        point, stack = work.pop()
        if point in stacks:
            assert stacks[point] == stack
            continue
        stacks[point] = stack
        label, index = point
        instr = blocks[label].instrs[index]
        after = stack
        if instr.op is Op.TRY:
            after = (*stack, instr.operands[1])
            work.append(((instr.operands[1], 0), stack))
        elif instr.op is Op.ENDTRY:
            after = stack[:-1]
        for letter, operand in zip(OPCODES[instr.op].operands, instr.operands, strict=True):
            if letter == "J" and instr.op is not Op.TRY:
                work.append(((operand, 0), after))
        if not OPCODES[instr.op].ends_block:
            work.append(((label, index + 1), after))
    return stacks


def check_allocation(function: IrFunction, assign=assign_registers) -> None:
    mapping, kinds = assign(function)
    blocks = {b.label: b for b in function.blocks}
    stacks = _handlers(function)
    try_register = {
        i.operands[1]: i.operands[0] for b in function.blocks for i in b.instrs if i.op is Op.TRY
    }
    points = _points(function)
    live_in: dict[tuple[int, int], frozenset[int]] = dict.fromkeys(points, frozenset())

    def live_out(point: tuple[int, int]) -> set[int]:
        label, index = point
        instr = blocks[label].instrs[index]
        out: set[int] = set()
        if not OPCODES[instr.op].ends_block:
            out |= live_in[(label, index + 1)]
        for target in instr.targets():
            if instr.op is not Op.TRY:
                out |= live_in[(target, 0)]
        return out

    changed = True
    while changed:
        changed = False
        for point in reversed(points):
            instr = blocks[point[0]].instrs[point[1]]
            live = (live_out(point) - {instr.dst}) | set(instr.uses())
            stack = stacks.get(point, ())
            if stack and OPCODES[instr.op].may_fail:  # it may fail into the handler
                live |= live_in[(stack[-1], 0)] - {try_register[stack[-1]]}
            if live != live_in[point]:
                live_in[point] = frozenset(live)
                changed = True

    def distinct(registers: set[int]) -> None:
        assert len({mapping[r] for r in registers}) == len(registers), registers

    for point in points:
        instr = blocks[point[0]].instrs[point[1]]
        distinct(set(live_in[point]))
        after = live_out(point)
        if instr.dst is not None:
            after.add(instr.dst)
        distinct(after)
        if instr.op is Op.TRY:  # a failure writes the message while the handler's inputs live
            handler_in = live_in[(instr.operands[1], 0)] | {instr.dst}
            distinct(set(handler_in))
    for reg, physical in mapping.items():
        expected = RegType.ANY if reg < function.nparams else function.reg_types[reg]
        assert kinds[physical] is expected
    assert all(mapping[p] == p for p in range(function.nparams))


@pytest.mark.parametrize("optimized", [False, True])
@pytest.mark.parametrize("case", sorted(PROGRAMS))
def test_no_two_live_registers_share_a_frame_register(case: str, optimized: bool) -> None:
    for function in _lowered(PROGRAMS[case], optimized).functions:
        check_allocation(function)


def test_interference_check_catches_a_bad_allocation() -> None:
    function = _lowered(PROGRAMS["chain"], False).functions[0]

    def everything_in_one(f: IrFunction) -> tuple[dict[int, int], list[RegType]]:
        return dict.fromkeys(f.registers(), 0), [RegType.ANY]

    with pytest.raises(AssertionError, match=r"^\{"):  # two live registers share register 0
        check_allocation(function, everything_in_one)


def test_registers_read_by_a_handler_live_across_its_whole_region() -> None:
    def I(op: Op, *operands: object) -> IrInstr:  # noqa: E743
        return IrInstr(op, tuple(operands))

    # The handler block comes before the protected body in block order: only the failure
    # edges keep r1 ("keep") alive while the body runs.
    function = IrFunction(
        "main",
        FunctionKind.MAIN,
        0,
        [
            BasicBlock(0, [I(Op.LOADK, 1, "keep"), I(Op.TRY, 2, 1), I(Op.JMP, 2)]),
            BasicBlock(1, [I(Op.MKLIST, 6, (1, 2)), I(Op.RET, 6)]),
            BasicBlock(
                2,
                [
                    I(Op.LOADK, 3, "bo"),
                    I(Op.LOADK, 7, "dy"),
                    I(Op.CONCAT, 8, 3, 7),
                    I(Op.LOADK, 4, 9),
                    I(Op.INDEX, 5, 8, 4),  # fails: index 9 of a 4-character string
                    I(Op.ENDTRY),
                    I(Op.RET, 5),
                ],
            ),
        ],
    )
    infer_types(function)
    check_allocation(function)
    mapping, _ = assign_registers(function)
    assert mapping[1] not in (mapping[3], mapping[7])


# ---------------------------------------------------------------- register reuse


def test_long_straight_line_function_uses_few_registers() -> None:
    lets = " ".join(f"let x{i} = x{i - 1} * 3 + {i}" for i in range(1, 300))
    source = f"fn f(x0) {{ {lets} return x299 }}"
    for optimized in (False, True):
        function = _lowered(source, optimized).functions[0]
        assert len(function.registers()) > 290
        allocated = allocate(function)
        assert len(allocated.reg_types) <= 5, optimized


def test_parameters_keep_their_registers() -> None:
    function = _lowered("fn f(a, b, c) { let d = c + a return [d, b] }", True).functions[0]
    allocated = allocate(function)
    assert allocated.nparams == 3
    add = next(i for b in allocated.blocks for i in b.instrs if i.op is Op.ADD)
    assert add.operands[1:] == (2, 0)
    assert all(allocated.reg_types[p] is RegType.ANY for p in range(3))


def test_copies_between_shared_registers_disappear() -> None:
    def I(op: Op, *operands: object) -> IrInstr:  # noqa: E743
        return IrInstr(op, tuple(operands))

    function = IrFunction(
        "f",
        FunctionKind.PURE,
        1,
        [BasicBlock(0, [I(Op.LOADK, 1, 5), I(Op.MOVE, 2, 1), I(Op.ADD, 3, 2, 0), I(Op.RET, 3)])],
    )
    infer_types(function)
    allocated = allocate(function)
    assert [i.op for i in allocated.blocks[0].instrs] == [Op.LOADK, Op.ADD, Op.RET]


# ---------------------------------------------------------------- type inference


def test_inferred_types() -> None:
    def I(op: Op, *operands: object) -> IrInstr:  # noqa: E743
        return IrInstr(op, tuple(operands))

    function = IrFunction(
        "f",
        FunctionKind.PURE,
        1,
        [
            BasicBlock(
                0,
                [
                    I(Op.LOADK, 1, 5),  # nat
                    I(Op.LOADK, 2, True),  # bool, then a nat: ANY
                    I(Op.ADD, 2, 1, 1),
                    I(Op.MOVE, 3, 1),  # nat through a copy
                    I(Op.MOVE, 4, 0),  # a copy of a parameter: ANY
                    I(Op.TRY, 5, 1),  # the failure message: str
                    I(Op.CALL, 6, "f", (1,)),  # ANY
                    I(Op.LOADK, 7, ()),  # list
                    I(Op.APPEND, 7, 7, 1),  # still a list
                    I(Op.MOVE, 9, 8),  # 8 is a copy of 3 (set below): nat, found by the worklist
                    I(Op.MOVE, 8, 3),
                    I(Op.ENDTRY),
                    I(Op.RET, 9),
                ],
            ),
            BasicBlock(1, [I(Op.RET, 5)]),
        ],
    )
    types = infer_types(function)
    assert types == {
        0: RegType.ANY,
        1: RegType.NAT,
        2: RegType.ANY,
        3: RegType.NAT,
        4: RegType.ANY,
        5: RegType.STR,
        6: RegType.ANY,
        7: RegType.LIST,
        8: RegType.NAT,
        9: RegType.NAT,
    }
    assert function.reg_types is types


def test_types_from_source() -> None:
    function = _lowered(PROGRAMS["loop"], True).functions[0]
    types = function.reg_types
    ret = next(i for b in function.blocks for i in b.instrs if i.op is Op.RET)
    assert types[ret.operands[0]] is RegType.NAT  # s: 0, then sums
    compare = next(i for b in function.blocks for i in b.instrs if i.op is Op.LT)
    assert types[compare.dst] is RegType.BOOL
