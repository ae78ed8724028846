"""The optimisation passes: folding, copy propagation, dead code, CFG clean-up.

A small IR interpreter (below) runs a corpus of programs as lowered, as optimised and as
register-allocated, and checks that answers, failures and effect sequences agree.
"""

from __future__ import annotations

import pytest

from avm_vm.format.instructions import BY_NAME, INSTRUCTIONS
from avm_vm.format.opcodes import INITIAL_VALUE, OPCODES, Op, RegType
from avm_vm.format.program import FunctionKind
from avm_vm.values import NOTHING, Just, Pair, TxRef, Value, render, to_text
from avm_vm.vm import ops
from avmc.ir import BasicBlock, IrFunction, IrInstr, IrProgram
from avmc.lower import lower
from avmc.parser import parse
from avmc.passes import optimize, optimize_function
from avmc.passes.evaluate import evaluate
from avmc.regalloc import allocate_program
from avmc.types import infer_program_types

# ---------------------------------------------------------------- a test interpreter


class Failed(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class World:
    """Canned answers for effects: one object's state, echoing calls; a log of every effect."""

    def __init__(self) -> None:
        self.state: tuple = ()
        self.log: list[str] = []

    def perform(self, name: str, args: list[Value]) -> Value:
        self.log.append(f"{name}({', '.join(render(a) for a in args)})")
        if name == "get_state":
            return self.state
        if name == "set_state":
            self.state = args[0]  # type: ignore[assignment]
            return NOTHING
        if name == "begin_tx":
            return TxRef(1)
        if name == "commit_tx":
            return True
        if name == "call":
            return NOTHING if args[1] == ("fail",) else Just(args[1])
        if name == "call_unwrap":  # `call!`: the answer itself, or the callee's failure
            if args[1] == ("fail",):
                raise Failed("callee failed")
            return args[1]
        if name == "input":
            return ("msg",)
        return NOTHING


def run(program: IrProgram, name: str, args: list[Value], world: World, framed: bool = False):
    """('ret', value) or ('fail', message) of calling function ``name``.

    ``framed``: registers start with their type's initial value, as in a VM frame; otherwise
    reading a register before writing it is a lowering bug (KeyError)."""
    try:
        function = program.function(name)
        return ("ret", render(_call(program, function, args, world, [100_000], framed)))
    except Failed as failure:
        return ("fail", failure.message)


def _call(program, function: IrFunction, args: list, world: World, fuel: list, framed: bool):
    regs: dict[int, Value] = {}
    if framed:
        regs = {r: INITIAL_VALUE[t] for r, t in function.reg_types.items()}
    regs.update(enumerate(args))
    blocks = {block.label: block for block in function.blocks}
    block, pc, handlers = function.blocks[0], 0, []
    while True:
        fuel[0] -= 1
        assert fuel[0] > 0, "out of fuel"
        instr = block.instrs[pc]
        pc += 1
        op, operands = instr.op, instr.operands
        try:
            if op is Op.JMP:
                block, pc = blocks[operands[0]], 0
            elif op in (Op.JMPT, Op.JMPF):
                if _truth(regs[operands[0]]) is (op is Op.JMPT):
                    block, pc = blocks[operands[1]], 0
            elif op is Op.RET:
                assert not handlers, "RET inside a TRY region"
                return regs[operands[0]]
            elif op is Op.FAIL:
                raise Failed(to_text(regs[operands[0]]))
            elif op is Op.TRY:
                handlers.append((operands[0], operands[1]))
            elif op is Op.ENDTRY:
                handlers.pop()
            elif op is Op.CALL:
                callee = program.function(operands[1])
                values = [regs[r] for r in operands[2]]
                regs[operands[0]] = _call(program, callee, values, world, fuel, framed)
            elif op is Op.EFFECT:
                name = INSTRUCTIONS[operands[1]].name
                regs[operands[0]] = world.perform(name, [regs[r] for r in operands[2]])
            elif op is Op.GETFIELD:
                regs[operands[0]] = ops.get_field(regs[operands[1]], operands[2], operands[3])
            elif op is Op.SETFIELD:
                state, index, value, defaults = operands[1:]
                regs[operands[0]] = ops.set_field(regs[state], index, regs[value], defaults)
            elif op is Op.LOADK:
                regs[operands[0]] = operands[1]
            else:
                regs[operands[0]] = _pure(instr, regs)
        except Failed as failure:
            if not handlers:
                raise
            reg, label = handlers.pop()
            regs[reg] = failure.message
            block, pc = blocks[label], 0


def _truth(value: Value) -> bool:
    if type(value) is not bool:
        raise Failed("condition must be a bool")
    return value


def _pure(instr: IrInstr, regs: dict[int, Value]) -> Value:
    args: list = []
    for letter, operand in zip(OPCODES[instr.op].operands[1:], instr.operands[1:], strict=True):
        if letter == "R":
            args.append(regs[operand])
        elif letter == "L":
            args.append(tuple(regs[r] for r in operand))
        else:
            args.append(operand)
    result = evaluate(instr.op, args)
    if result is None:
        raise Failed(f"{instr.op.name} failed")
    return result


# ---------------------------------------------------------------- the corpus

CORPUS = {
    "fib": ("fn fib(n) { if n < 2 { return n } return fib(n - 1) + fib(n - 2) }", "fib", [15]),
    "loops": (
        """fn f(n) {
            let total = 0
            let i = 0
            while true {
                i += 1
                if i > n { break }
                if i % 3 == 0 { continue }
                total = total + i * 2
            }
            for x in [1, 2, 3, 4] { if x == 3 { break } total += x }
            for c in "abc" { total += len(c) }
            return total
        }""",
        "f",
        [20],
    ),
    "match": (
        """fn f(v) {
            let out = []
            for x in v {
                match x {
                    [1, a, ..rest] => { out = append(out, (a, rest)) }
                    [b, _] if b == "k" => { out = append(out, b) }
                    (p, just q) => { out = append(out, p + q) }
                    nothing => { out = append(out, "none") }
                    true => { out = append(out, false) }
                    other => { out = append(out, [other]) }
                }
            }
            return out
        }""",
        "f",
        [
            (
                (1, 2, 3, 4),
                ("k", 0),
                ("j", 0),
                Pair(3, Just(4)),
                NOTHING,
                True,
                1,
                Pair(3, 4),
            )
        ],
    ),
    "logic": (
        """fn f(a, b) {
            let x = a and b
            let y = a or not b
            let z = 0
            if a and (b or z == 0) { z = 1 } else if not a { z = 2 } else { z = 3 }
            return [x, y, z, a == 1, "ab" < "b", [1, 2] ++ [3], "xyz"[1:], "xyz"[:2]]
        }""",
        "f",
        [True, False],
    ),
    "overflow": ("fn f() { return 18446744073709551615 * 4 }", "f", []),
    "div_zero": ("fn f(n) { let z = 0 return n / z }", "f", [3]),
    "condition_not_bool": ("fn f() { let x = 1 if x { return 1 } return 2 }", "f", []),
    "fields": (
        """behavior Counter {
            field count = 0
            field name = "c"
            on ["inc"] { count += 1; return count }
            on ["add", n] if n > 0 { count = count + n; return [count, name] }
            on ["name", s] { name ++= s; return name }
        }""",
        "Counter",
        [("add", 5)],
    ),
    "no_clause": ('behavior B { on ["x"] { return 1 } }', "B", [("y", 2)]),
    "atomic": (
        """main {
            let n = 1
            atomic { n = 2; call(self, ["a"]) }
            atomic { n = 3; fail "boom" } else (e) { n = n + 10; call(self, [e, n]) }
            let r = 0
            atomic under "ctl" { atomic { r = call!(self, ["deep"]) } }
            return [n, r]
        }""",
        "main",
        [],
    ),
    "atomic_return": (
        """main {
            atomic { atomic { if 1 < 2 { return call(self, ["in"]) } } }
            return 0
        }""",
        "main",
        [],
    ),
    "handler_only": (
        """main {
            let keep = "k" ++ "j"
            atomic { let tmp = "zz" ++ keep let u = [tmp, call(self, [tmp])] fail u }
            else (e) { return [keep, e] }
        }""",
        "main",
        [],
    ),
    "atomic_reraise": ("main { atomic { let x = [1][5] } return 1 }", "main", []),
    "call_bang_failed": ('main { return call!(self, ["fail"]) }', "main", []),
}


def _pipeline(source: str) -> tuple[IrProgram, IrProgram, IrProgram]:
    lowered = lower(parse(source, "t.avm"), "t.avm")
    optimized = infer_program_types(optimize(lowered))
    return lowered, optimized, allocate_program(optimized)


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_optimised_and_allocated_programs_agree_with_the_lowering(case: str) -> None:
    source, name, args = CORPUS[case]
    outcomes = []
    for framed, program in enumerate(_pipeline(source)):
        world = World()
        outcomes.append((run(program, name, list(args), world, framed == 2), world.log))
    assert outcomes[0] == outcomes[1] == outcomes[2]


def test_corpus_outcomes() -> None:
    expect = {
        "fib": ("ret", "610"),
        "overflow": ("fail", "MUL failed"),
        "div_zero": ("fail", "DIV failed"),
        "condition_not_bool": ("fail", "condition must be a bool"),
        "fields": ("ret", '[5, "c"]'),
        "no_clause": ("fail", 'no clause of behavior B matches the message ["y", 2]'),
        "atomic": ("ret", '[13, ["deep"]]'),
        "loops": ("ret", "300"),
        "match": ("ret", '[(2, [3, 4]), "k", [["j", 0]], 7, "none", false, [1], [(3, 4)]]'),
        "atomic_return": ("ret", 'just ["in"]'),
        "handler_only": ("ret", '["kj", "["zzkj", just ["zzkj"]]"]'),
        "atomic_reraise": ("fail", "INDEX failed"),
        "call_bang_failed": ("fail", "callee failed"),
        "logic": ("ret", '[false, true, 1, false, true, [1, 2, 3], "yz", "xy"]'),
    }
    for case, outcome in expect.items():
        source, name, args = CORPUS[case]
        assert run(_pipeline(source)[1], name, list(args), World()) == outcome, case


def test_atomic_effect_sequence() -> None:
    world = World()
    run(_pipeline(CORPUS["atomic"][0])[2], "main", [], world, framed=True)
    assert world.log == [
        "begin_tx(nothing)",
        "self()",
        'call(nothing, ["a"])',
        "commit_tx(tx:1)",
        "begin_tx(nothing)",
        "atomic_failed(tx:1)",
        "self()",
        'call(nothing, ["boom", 13])',
        'begin_tx("ctl")',
        "begin_tx(nothing)",
        "self()",
        'call_unwrap(nothing, ["deep"])',
        "commit_tx(tx:1)",
        "commit_tx(tx:1)",
    ]


def test_return_inside_nested_atomic_commits_both() -> None:
    world = World()
    run(_pipeline(CORPUS["atomic_return"][0])[2], "main", [], world, framed=True)
    assert world.log[-2:] == ["commit_tx(tx:1)", "commit_tx(tx:1)"]


# ---------------------------------------------------------------- individual passes on IR


def _function(*blocks: list[IrInstr], nparams: int = 0) -> IrFunction:
    return IrFunction(
        "f",
        FunctionKind.PURE,
        nparams,
        [BasicBlock(label, list(instrs)) for label, instrs in enumerate(blocks)],
    )


def I(op: Op, *operands: object) -> IrInstr:  # noqa: E743
    return IrInstr(op, tuple(operands))


def _ops(function: IrFunction) -> list[tuple]:
    return [(i.op, *i.operands) for b in function.blocks for i in b.instrs]


def test_folds_addition() -> None:
    f = optimize_function(
        _function([I(Op.LOADK, 0, 2), I(Op.LOADK, 1, 3), I(Op.ADD, 2, 0, 1), I(Op.RET, 2)])
    )
    assert _ops(f) == [(Op.LOADK, 2, 5), (Op.RET, 2)]


def test_overflow_and_division_by_zero_stay() -> None:
    big = 2**63
    f = optimize_function(
        _function([I(Op.LOADK, 0, big), I(Op.LOADK, 1, 4), I(Op.MUL, 2, 0, 1), I(Op.RET, 2)])
    )
    assert (Op.MUL, 2, 0, 1) in _ops(f)
    g = optimize_function(
        _function(
            [
                I(Op.LOADK, 0, 1),
                I(Op.LOADK, 1, 0),
                I(Op.DIV, 2, 0, 1),
                I(Op.LOADK, 3, 7),
                I(Op.RET, 3),
            ]
        )
    )
    assert any(op is Op.DIV for op, *_ in _ops(g))  # unused, but it fails: kept


def test_folding_is_kind_exact() -> None:
    f = optimize_function(
        _function([I(Op.LOADK, 0, 1), I(Op.LOADK, 1, True), I(Op.EQ, 2, 0, 1), I(Op.RET, 2)])
    )
    assert _ops(f) == [(Op.LOADK, 2, False), (Op.RET, 2)]
    g = optimize_function(_function([I(Op.LOADK, 0, True), I(Op.ADD, 1, 0, 0), I(Op.RET, 1)]))
    assert (Op.ADD, 1, 0, 0) in _ops(g)  # true + true is a runtime error, not 2


def test_branch_on_constant_becomes_jump_and_dead_arm_goes() -> None:
    f = optimize_function(
        _function(
            [I(Op.LOADK, 0, False), I(Op.JMPT, 0, 1), I(Op.JMP, 2)],
            [I(Op.LOADK, 1, "then"), I(Op.RET, 1)],
            [I(Op.LOADK, 2, "else"), I(Op.RET, 2)],
        )
    )
    assert _ops(f) == [(Op.LOADK, 2, "else"), (Op.RET, 2)]
    assert len(f.blocks) == 1


def test_branch_on_non_bool_constant_stays() -> None:
    f = optimize_function(
        _function(
            [I(Op.LOADK, 0, 1), I(Op.JMPT, 0, 1), I(Op.JMP, 1)],
            [I(Op.LOADK, 1, 0), I(Op.RET, 1)],
        )
    )
    assert any(op is Op.JMPT for op, *_ in _ops(f))


def test_dead_code_keeps_effects_calls_and_failing_ops() -> None:
    self_ = BY_NAME["self"].number
    f = optimize_function(
        _function(
            [
                I(Op.EFFECT, 1, self_, ()),  # result unused: the effect stays
                I(Op.CALL, 2, "g", (0,)),
                I(Op.INDEX, 3, 0, 0),  # may fail: stays
                I(Op.MKLIST, 4, (0, 0)),  # pure and cannot fail: goes
                I(Op.TOSTR, 5, 0),  # goes
                I(Op.RET, 0),
            ],
            nparams=1,
        )
    )
    assert [op for op, *_ in _ops(f)] == [Op.EFFECT, Op.CALL, Op.INDEX, Op.RET]


def test_effects_keep_their_order_and_arguments() -> None:
    source = CORPUS["fields"][0]
    lowered = lower(parse(source, "t.avm"), "t.avm")
    optimized = optimize(lowered)

    def effects(program: IrProgram) -> list[int]:
        return [
            i.operands[1]
            for b in program.function("Counter").blocks
            for i in b.instrs
            if i.op is Op.EFFECT
        ]

    assert effects(lowered) == effects(optimized)


def test_copy_propagation_forwards_single_copies() -> None:
    f = optimize_function(
        _function([I(Op.MOVE, 1, 0), I(Op.MOVE, 2, 1), I(Op.ADD, 3, 2, 1), I(Op.RET, 3)], nparams=1)
    )
    assert _ops(f) == [(Op.ADD, 3, 0, 0), (Op.RET, 3)]


def test_copy_propagation_respects_reassignment() -> None:
    # x = p; p = p + 1; return x  -- x must keep the old value of p
    f = optimize_function(
        _function(
            [
                I(Op.MOVE, 1, 0),
                I(Op.LOADK, 2, 1),
                I(Op.ADD, 0, 0, 2),
                I(Op.MKLIST, 3, (1, 0)),
                I(Op.RET, 3),
            ],
            nparams=1,
        )
    )
    world = World()
    program = IrProgram("t", [f], [], None)
    assert run(program, "f", [5], world) == ("ret", "[5, 6]")


def test_copy_into_variable_is_coalesced() -> None:
    # t = a + b; x = t  ->  x = a + b  (x is written twice, so it cannot just alias t)
    f = optimize_function(
        _function(
            [
                I(Op.ADD, 3, 0, 1),
                I(Op.MOVE, 2, 3),
                I(Op.ADD, 4, 2, 0),
                I(Op.MOVE, 2, 4),
                I(Op.RET, 2),
            ],
            nparams=2,
        )
    )
    assert _ops(f) == [(Op.ADD, 2, 0, 1), (Op.ADD, 2, 2, 0), (Op.RET, 2)]


def test_jump_threading_and_block_merging() -> None:
    f = optimize_function(
        _function(
            [I(Op.JMPT, 0, 1), I(Op.JMP, 2)],
            [I(Op.JMP, 3)],
            [I(Op.JMP, 3)],
            [I(Op.RET, 0)],
            nparams=1,
        )
    )
    assert _ops(f) == [(Op.JMPT, 0, 3), (Op.JMP, 3), (Op.RET, 0)]


def test_infinite_loop_of_jumps_is_kept() -> None:
    f = optimize_function(_function([I(Op.JMP, 1)], [I(Op.JMP, 2)], [I(Op.JMP, 1)]))
    assert f.blocks[0].instrs and all(b.instrs[-1].op is Op.JMP for b in f.blocks)


def test_optimize_leaves_its_input_unchanged() -> None:
    lowered = lower(parse(CORPUS["fib"][0], "t.avm"), "t.avm")
    before = [list(b.instrs) for b in lowered.functions[0].blocks]
    optimize(lowered)
    assert [list(b.instrs) for b in lowered.functions[0].blocks] == before


def test_allocated_registers_start_typed() -> None:
    allocated = _pipeline(CORPUS["fib"][0])[2]
    assert all(isinstance(t, RegType) for t in allocated.functions[0].reg_types.values())
