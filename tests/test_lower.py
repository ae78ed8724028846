"""Lowering from the AST to Tape IR: the shapes it produces and the IR block rules."""

from __future__ import annotations

import pytest

from avm_vm.diagnostics import Span
from avm_vm.format.instructions import BY_NAME, INSTRUCTIONS
from avm_vm.format.opcodes import OPCODES, Op
from avm_vm.format.program import FunctionKind
from avm_vm.values import NOTHING, Kind
from avmc import ast
from avmc.ir import IrFunction, IrInstr, IrProgram
from avmc.lower import lower
from avmc.parser import parse

COUNTER = """
behavior Counter {
  field count = 0
  field tags = ["a", (1, just 2)]
  on ["inc"] { count += 1; return count }
  on ["set", n] if n > 0 { count = n }
  on ["get"] { return count }
}
fn fib(n) { if n < 2 { return n } return fib(n - 1) + fib(n - 2) }
main {
  let c = create Counter
  call(c, ["inc"])
  return call!(c, ["get"])
}
"""

PROGRAMS = [
    COUNTER,
    "fn f(xs) { let t = 0 for x in xs { if x == 0 { continue } if x > 9 { break } t += x } "
    "return t }",
    "fn f(a) { while a > 0 and not (a == 5 or a == 7) { a -= 1 } return a }",
    'main { atomic { let x = 1 } else (e) { return e } atomic under "c" { return 1 } }',
    "fn f(m) { match m { [1, x, ..r] => { return r } (a, b) => { return a } "
    "just nothing => { return 0 } _ => { } } }",
    "main { while true { } }",
    "fn f() { return 1 let x = 2 }",
]


def lower_source(source: str) -> IrProgram:
    return lower(parse(source, "t.avm"), "t.avm")


def check_block_rules(function: IrFunction) -> None:
    labels = [block.label for block in function.blocks]
    assert len(set(labels)) == len(labels)
    for block in function.blocks:
        assert block.instrs, f"empty block L{block.label}"
        assert OPCODES[block.instrs[-1].op].ends_block
        for index, instr in enumerate(block.instrs[:-1]):
            assert not OPCODES[instr.op].ends_block
            if instr.op in (Op.JMPT, Op.JMPF):
                assert index == len(block.instrs) - 2 and block.instrs[-1].op is Op.JMP
        for target in block.successors():
            assert target in labels
    # every block is reachable from the entry
    seen, stack = {labels[0]}, [labels[0]]
    while stack:
        for target in function.block(stack.pop()).successors():
            if target not in seen:
                seen.add(target)
                stack.append(target)
    assert seen == set(labels)


def ops_of(function: IrFunction) -> list[IrInstr]:
    return [instr for block in function.blocks for instr in block.instrs]


def effect_names(instrs: list[IrInstr]) -> list[str]:
    return [INSTRUCTIONS[i.operands[1]].name for i in instrs if i.op is Op.EFFECT]


@pytest.mark.parametrize("source", PROGRAMS)
def test_block_rules_hold_and_every_block_is_reachable(source: str) -> None:
    for function in lower_source(source).functions:
        check_block_rules(function)


def test_functions_behaviors_and_main() -> None:
    program = lower_source(COUNTER)
    kinds = {f.name: (f.kind, f.nparams) for f in program.functions}
    assert kinds == {
        "Counter": (FunctionKind.BEHAVIOR, 1),
        "fib": (FunctionKind.PURE, 1),
        "main": (FunctionKind.MAIN, 0),
    }
    assert program.main == "main"
    [behavior] = program.behaviors
    assert (behavior.name, behavior.function, behavior.fields) == (
        "Counter",
        "Counter",
        ("count", "tags"),
    )


def test_field_assignment_reads_then_writes_state() -> None:
    counter = lower_source(COUNTER).function("Counter")
    instrs = ops_of(counter)
    setfield = next(i for i in instrs if i.op is Op.SETFIELD)
    position = instrs.index(setfield)
    # count += 1: get_state once (getfield, add, setfield all use it), then set_state;
    # `return count` after the write reads the state again.
    reads = [i for i in instrs[:position] if effect_names([i]) == ["get_state"]]
    assert len(reads) == 1
    assert effect_names(instrs[position : position + 2]) == ["set_state"]
    assert instrs[position + 1].operands[2] == (setfield.dst,)
    _, state, index, value, defaults = setfield.operands
    assert state == reads[0].dst  # the state the sugar read for `count`
    assert index == 0 and defaults[0] == 0 and defaults[1][0] == "a"
    add = next(i for i in instrs[:position] if i.op is Op.ADD)
    assert value == add.dst
    after = effect_names(instrs[position + 2 : position + 6])
    assert after[0] == "get_state"  # the write may not be what a later read sees (profile R)


@pytest.mark.parametrize(
    ("update", "reads"),
    [
        ("count += count * 2", 1),  # no effect between: one read serves all three uses
        ('count += call!(self, ["get"])', 2),  # the call may change the state: read again
        ("count += fib(2)", 1),  # a pure function cannot
        ("if count > 1 { count = 0 }", 2),  # another block: read again
    ],
)
def test_the_field_sugar_reads_the_state_again_only_when_it_may_have_changed(
    update: str, reads: int
) -> None:
    source = COUNTER.replace("count += 1; return count", f"{update}; return 7")
    instrs = ops_of(lower_source(source).function("Counter"))
    clause = instrs[: next(i for i, x in enumerate(instrs) if x.op is Op.RET)]
    assert effect_names(clause).count("get_state") == reads


def test_field_read_uses_getfield_with_defaults() -> None:
    instrs = ops_of(lower_source(COUNTER).function("Counter"))
    reads = [i for i in instrs if i.op is Op.GETFIELD]
    assert reads and all(i.operands[2] == 0 and len(i.operands[3]) == 2 for i in reads)


def test_behavior_without_matching_clause_fails_with_a_message() -> None:
    counter = lower_source(COUNTER).function("Counter")
    last = counter.blocks[-1].instrs
    assert last[-1].op is Op.FAIL
    texts = [i.operands[1] for i in last if i.op is Op.LOADK]
    assert any("no clause of behavior Counter" in t for t in texts)
    assert any(i.op is Op.TOSTR and i.operands[1] == 0 for i in last)


def test_clause_patterns_and_guard() -> None:
    instrs = ops_of(lower_source(COUNTER).function("Counter"))
    islen = [i.operands[1:] for i in instrs if i.op is Op.ISLEN]
    assert islen == [(0, 1), (0, 2), (0, 1)]
    assert any(i.op is Op.GT for i in instrs)  # the guard n > 0


def test_patterns_of_every_kind() -> None:
    f = lower_source(PROGRAMS[4]).function("f")
    instrs = ops_of(f)
    ops = [i.op for i in instrs]
    assert Op.ISLENGE in ops and Op.DROP in ops
    kinds = [i.operands[2] for i in instrs if i.op is Op.ISKIND]
    assert kinds == [Kind.PAIR, Kind.JUST, Kind.NOTHING]
    assert Op.FST in ops and Op.SND in ops and Op.UNWRAP in ops
    # `_` matches anything: the match cannot fail, and `_ => { }` falls off to return nothing
    assert not any(i.op is Op.FAIL for i in instrs)
    messages = [i.operands[1] for i in instrs if i.op is Op.LOADK]
    assert "no match arm matches the value " not in messages


def test_match_without_catch_all_fails() -> None:
    f = lower_source("fn f(m) { match m { 1 => { return 2 } } }").function("f")
    instrs = ops_of(f)
    assert any(i.op is Op.EQ for i in instrs)
    assert instrs[-1].op is Op.FAIL or any(b.instrs[-1].op is Op.FAIL for b in f.blocks)
    messages = [i.operands[1] for i in instrs if i.op is Op.LOADK]
    assert "no match arm matches the value " in messages


def test_atomic_shape() -> None:
    main = lower_source(PROGRAMS[3]).function("main")
    instrs = ops_of(main)
    ops = [i.op for i in instrs]
    names = effect_names(instrs)
    assert names[:3] == ["begin_tx", "commit_tx", "atomic_failed"]
    begin = next(i for i in instrs if i.op is Op.EFFECT)
    try_ = instrs[ops.index(Op.TRY)]
    # the try covers begin and commit: a failing begin or commit runs the handler too
    assert ops.index(Op.TRY) < instrs.index(begin)
    commit = next(i for i in instrs if i.op is Op.EFFECT and i.operands[1] == 17)
    assert instrs[instrs.index(commit) + 1].op is Op.ENDTRY
    assert commit.operands[2] == (begin.dst,)
    handler = main.block(try_.operands[1])
    # first abort the transaction if it is still open (it may be closed already)
    first = handler.instrs[0]
    assert first.op is Op.EFFECT and first.operands[1] == BY_NAME["atomic_failed"].number
    assert first.operands[2] == (begin.dst,)
    # the handler binds the error: `return e` returns TRY's register
    assert handler.instrs[-1].op is Op.RET and handler.instrs[-1].operands[0] == try_.dst


def test_atomic_without_handler_reraises() -> None:
    main = lower_source("main { atomic { fail 1 } }").function("main")
    try_ = next(i for i in ops_of(main) if i.op is Op.TRY)
    handler = main.block(try_.operands[1])
    # rethrow fails with the caught error itself (its kind kept); FAIL ends the block
    assert effect_names(handler.instrs) == ["atomic_failed", "rethrow"]
    assert handler.instrs[-2].operands[2] == (try_.dst,)
    assert handler.instrs[-1].op is Op.FAIL and handler.instrs[-1].operands[0] == try_.dst


def test_return_inside_atomic_closes_every_region_innermost_first() -> None:
    source = "main { atomic { atomic under 1 { return 5 } } }"
    main = lower_source(source).function("main")
    instrs = ops_of(main)
    ret = next(i for i in instrs if i.op is Op.RET)
    before = instrs[instrs.index(ret) - 4 : instrs.index(ret)]
    # each commit inside its own try: a failing commit runs that atomic's handler
    assert [i.op for i in before] == [Op.EFFECT, Op.ENDTRY, Op.EFFECT, Op.ENDTRY]
    begins = [i.dst for i in instrs if i.op is Op.EFFECT and i.operands[1] == 16]
    assert [i.operands[2] for i in before[0::2]] == [(begins[1],), (begins[0],)]


def test_instruction_arguments_default_to_nothing() -> None:
    main = lower_source("main { let t = begin() let o = create B abort(t) }").function("main")
    instrs = ops_of(main)
    loads = {i.dst: i.operands[1] for i in instrs if i.op is Op.LOADK}
    effects = [i for i in instrs if i.op is Op.EFFECT]
    assert [len(e.operands[2]) for e in effects] == [1, 2, 1]
    assert loads[effects[0].operands[2][0]] is NOTHING
    assert [loads[r] for r in effects[1].operands[2]] == ["B", NOTHING]


def test_function_arguments_are_passed_by_name() -> None:
    source = "fn p(m) { return true } main { return unsafe scry_meta(p) }"
    instrs = ops_of(lower_source(source).function("main"))
    load = next(i for i in instrs if i.op is Op.LOADK)
    assert load.operands[1] == "p"
    assert instrs[-2].op is Op.EFFECT and instrs[-2].operands[2] == (load.dst,)


def test_unwrapping_call_is_one_instruction() -> None:
    """`call!` performs call_unwrap, which answers the value itself (or fails as the callee
    did), so no UNWRAP follows it."""
    instrs = ops_of(lower_source(COUNTER).function("main"))
    effect = [i for i in instrs if i.op is Op.EFFECT][-1]
    assert effect.operands[1] == BY_NAME["call_unwrap"].number
    assert Op.UNWRAP not in [i.op for i in instrs]


def test_builtins_and_user_calls() -> None:
    source = "fn g(x) { return x } fn f(x) { return [len(x), append(x, 1), str(x), g!(x)] }"
    ops = [i.op for i in ops_of(lower_source(source).function("f"))]
    assert {Op.LEN, Op.APPEND, Op.TOSTR, Op.CALL, Op.UNWRAP} <= set(ops)


def test_short_circuit_writes_the_result_on_both_paths() -> None:
    f = lower_source("fn f(a, b) { let x = a and b return x }").function("f")
    writes = [i for i in ops_of(f) if i.op is Op.LOADK and type(i.operands[1]) is bool]
    assert len({i.dst for i in writes}) == 1 and {i.operands[1] for i in writes} == {True, False}


def test_code_after_return_is_dropped() -> None:
    f = lower_source(PROGRAMS[6]).function("f")
    assert [i.op for i in ops_of(f)] == [Op.LOADK, Op.RET]


def test_every_instruction_has_the_span_of_its_source() -> None:
    program = lower_source(COUNTER)
    for function in program.functions:
        for instr in ops_of(function):
            if instr.op is not Op.JMP:  # fall-through jumps added between blocks have none
                assert instr.span is not None and instr.span.line > 0, instr
    fib = program.function("fib")
    sub = next(i for i in ops_of(fib) if i.op is Op.SUB)
    assert sub.span.line == 9


def test_from_a_hand_built_ast() -> None:
    here = Span("h.avm", 3, 5)
    module = ast.Module(
        [
            ast.FunctionDef(
                "inc",
                [ast.Param("n")],
                ast.Block(
                    [
                        ast.Let("m", ast.BinOp("+", ast.Name("n"), ast.Literal(1), here)),
                        ast.Return(ast.Name("m")),
                    ]
                ),
            )
        ]
    )
    program = lower(module, "h.avm")
    [function] = program.functions
    check_block_rules(function)
    add = next(i for i in ops_of(function) if i.op is Op.ADD)
    assert add.span == here and add.operands[1] == 0
    assert ops_of(function)[-1].op is Op.RET
    assert program.main is None and program.source_name == "h.avm"
