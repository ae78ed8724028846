"""The JIT core: native plans, native code against the VM through the abi, the disk cache.

Native code is called directly through ctypes with a JitContext built here. When it exits,
`finish_on_vm` rebuilds the VM frames from the registers and records exactly as the abi
describes and lets the VM finish the run, so every outcome (value, error, fuel) is compared
with a plain VM run of the same call.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vm_asm import Fn, assemble

from avm_vm.errors import AvmError, ErrorKind
from avm_vm.format.opcodes import INITIAL_VALUE, Op, RegType
from avm_vm.format.program import Program
from avm_vm.jit import abi
from avm_vm.jit.analysis import NativePlan, liveness, plan_program
from avm_vm.jit.cache import MAGIC, default_cache_dir
from avm_vm.jit.engine import JitEngine, NativeModule, llvm_ir_text
from avm_vm.values import NAT_MAX, Value
from avm_vm.vm.interpreter import Fault, Frame, Fuel, Interpreter, Ret
from avm_vm.vm.translate import OUT_OF_FUEL, block_starts
from avmc.compiler import compile_source

NAT, BOOL = RegType.NAT, RegType.BOOL

SOURCE = """
fn fib(n) { if n < 2 { return n } return fib(n - 1) + fib(n - 2) }
fn loop(n) {
  let s = 0
  let i = 0
  while i < n { s = s + i * 3 % 7; i = i + 1 }
  return s
}
fn ping(n) { if n == 0 { return 0 } return pong(n - 1) + 1 }
fn pong(n) { if n == 0 { return 0 } return ping(n - 1) + 2 }
fn even(n) { if n == 0 { return true } return odd(n - 1) }
fn odd(n) { if n == 0 { return false } return even(n - 1) }
fn arith(a, b) { return (a * b + a) / b - a % b }
fn pick(c, a) { if c { return a + 1 } return a }
fn describe(n) { let k = loop(n) + 1 let s = str(k) if len(s) > 3 { return k } return k + 1 }
fn deep(n) { if n == 0 { return 0 } return deep(n - 1) + 1 }
fn fact(n) { if n == 0 { return 1 } return n * fact(n - 1) }
fn top(n) { return 18446744073709551615 - n + 1 }
"""


@pytest.fixture(scope="module")
def program() -> Program:
    return compile_source(SOURCE, "jit.avm")


@pytest.fixture(scope="module")
def plans(program: Program) -> dict[int, NativePlan]:
    return plan_program(program)


@pytest.fixture(scope="module")
def native(program: Program, plans: dict[int, NativePlan]) -> NativeModule:
    roots = [index(program, name) for name in ("fib", "loop", "ping", "arith", "pick", "describe")]
    others = [index(program, name) for name in ("deep", "fact", "top")]
    return JitEngine(None).compile(program, plans, [*roots, *others])


def index(program: Program, name: str) -> int:
    return next(i for i, f in enumerate(program.functions) if f.name == name)


# -- running native code through the abi


class Call:
    """One call of a native entry: the context, registers and record buffer it used."""

    def __init__(
        self,
        module: NativeModule,
        program: Program,
        f: int,
        args: list[Value],
        fuel: int,
        depth: int,
        pc: int = 0,
    ) -> None:
        nregs = program.functions[f].nregs
        self.regs = (ctypes.c_uint64 * nregs)(*(int(a) for a in args))
        capacity = max(depth, 1) * (3 + module.max_nregs)
        self.buffer = (ctypes.c_uint64 * capacity)()
        self.ctx = abi.JitContext(
            fuel=fuel, depth_left=depth, records=self.buffer, records_cap=capacity
        )
        self.fuel = fuel
        self.status = module.entry(f)(ctypes.byref(self.ctx), self.regs, pc)

    def records(self) -> list[tuple[int, int, list[int]]]:
        """(function index, pc, slots) of each record, innermost first."""
        out, offset = [], 0
        for _ in range(self.ctx.nrecords):
            f, pc, nregs = self.buffer[offset : offset + 3]
            out.append((f, pc, list(self.buffer[offset + 3 : offset + 3 + nregs])))
            offset += 3 + nregs
        return out


def box(slot: int, kind: RegType | None) -> Value:
    return bool(slot) if kind is BOOL else slot


def finish_on_vm(
    program: Program,
    plans: dict[int, NativePlan],
    call: Call,
    f: int,
    args: list[Value],
    max_frames: int,
) -> tuple[Ret | Fault, int]:
    """The outcome of the whole run (native code, then the VM from where it exited) and
    the fuel left, the way the abi says the VM resumes."""
    fuel = Fuel(call.fuel)
    fuel.remaining = call.ctx.fuel
    vm = Interpreter(program)
    if call.status == abi.RETURNED:
        return Ret(box(call.ctx.ret, RegType(call.ctx.ret_type))), fuel.remaining
    assert call.status == abi.EXITED
    base = vm.frame(f, args)
    for r, kind in enumerate(plans[f].reg_types):
        if kind is not None:
            base.regs[r] = box(call.regs[r], kind)
    base.pc = call.ctx.pc
    frames = [base]
    for g, pc, slots in reversed(call.records()):
        function = program.functions[g]
        regs = [INITIAL_VALUE[t] for t in function.reg_types]
        for r, kind in enumerate(plans[g].reg_types):
            if kind is not None:
                regs[r] = box(slots[r], kind)
        caller = frames[-1]
        result_reg = caller.function.function.code[caller.pc - 1][1]
        frames.append(Frame(vm.procs[g], pc, regs, [], result_reg))
    top = frames[-1]
    outcome = top.function.careful(top.pc)(top, frames, fuel, max_frames)  # may stop mid-block
    if outcome is None:
        return vm.run(frames, fuel, max_frames), fuel.remaining  # type: ignore[return-value]
    if outcome is OUT_OF_FUEL:
        outcome = AvmError(ErrorKind.FUEL_EXHAUSTED, steps=fuel.limit)
    if isinstance(outcome, AvmError):
        top = frames[-1]
        line, col = top.function.function.lines[top.pc]
        return Fault(outcome, top.function.name, top.pc, line, col), fuel.remaining
    return outcome, fuel.remaining  # type: ignore[return-value]


def on_vm(program: Program, f: int, args: list[Value], fuel: int, depth: int) -> tuple:
    vm = Interpreter(program)
    budget = Fuel(fuel)
    return vm.run([vm.frame(f, args)], budget, depth + 1), budget.remaining


def same_outcome(left: tuple, right: tuple) -> None:
    (a, fuel_a), (b, fuel_b) = left, right
    assert type(a) is type(b)
    if isinstance(a, Fault):
        assert (a.error.kind, a.error.message, a.function, a.pc) == (
            b.error.kind,
            b.error.message,
            b.function,
            b.pc,
        )
    else:
        assert type(a.value) is type(b.value)
        assert a.value == b.value
    assert fuel_a == fuel_b


def check_against_vm(
    program: Program,
    plans: dict[int, NativePlan],
    module: NativeModule,
    name: str,
    args: list[Value],
    fuel: int = 10**9,
    depth: int = 500,
) -> Call:
    f = index(program, name)
    call = Call(module, program, f, args, fuel, depth)
    native = finish_on_vm(program, plans, call, f, args, depth + 1)
    same_outcome(native, on_vm(program, f, args, fuel, depth))
    return call


# -- analysis


def test_fib_is_all_native(program: Program, plans: dict[int, NativePlan]) -> None:
    fib = plans[index(program, "fib")]
    assert fib.reg_types == (NAT, NAT, BOOL, NAT)  # r0 (param, then a CALL result) speculated
    assert fib.native_count == len(program.functions[index(program, "fib")].code)
    assert (fib.return_type, fib.param_types, fib.direct) == (NAT, (NAT,), True)
    assert fib.direct_callees == {index(program, "fib")}
    # Entries are the block starts, each with the native registers live there.
    assert fib.entries == {
        0: ((0, NAT),),
        4: ((0, NAT),),
        7: ((0, NAT), (3, NAT)),
        10: ((0, NAT), (3, NAT)),
    }


def test_mutual_recursion_settles_return_types(
    program: Program, plans: dict[int, NativePlan]
) -> None:
    ping, pong = plans[index(program, "ping")], plans[index(program, "pong")]
    assert ping.return_type is NAT and pong.return_type is NAT
    assert ping.direct_callees == {index(program, "pong")}
    assert pong.direct_callees == {index(program, "ping")}


def test_register_reused_with_two_types_is_not_native(
    program: Program, plans: dict[int, NativePlan]
) -> None:
    # even's r0 holds n (a nat) and then odd's answer (a bool): the register is left to the VM,
    # so the comparison reading it is an exit and no call is direct.
    even = plans[index(program, "even")]
    assert even.reg_types[0] is None
    assert even.return_type is None and not even.direct
    assert 1 not in even.native and not even.direct_callees


def test_parameter_types_come_from_their_uses(
    program: Program, plans: dict[int, NativePlan]
) -> None:
    pick = plans[index(program, "pick")]
    assert pick.param_types == (BOOL, NAT)
    assert pick.return_type is NAT


def test_string_work_is_an_exit(program: Program, plans: dict[int, NativePlan]) -> None:
    f = index(program, "describe")
    plan, code = plans[f], program.functions[f].code
    exits = [pc for pc in range(len(code)) if pc not in plan.native]
    assert {code[pc][0] for pc in exits} == {Op.TOSTR, Op.LEN}
    assert plan.return_type is NAT
    assert any(code[pc][0] is Op.CALL for pc in plan.native)  # loop(n) is a direct call


def test_speculation_rules() -> None:
    program = assemble(
        Fn(  # r1: nat then string; r2: only nats; r3: an EFFECT answer; r4: MOVE of r2
            "f",
            [
                ("LOADK", 2, 7),
                ("LOADK", 1, 5),
                ("ADD", 2, 2, 0),
                ("MOVE", 4, 2),
                ("LOADK", 1, "s"),
                ("EFFECT", 3, "input", ()),
                ("RET", 4),
            ],
            params=1,
        ),
        Fn("g", [("CALL", 1, "f", (0,)), ("NOT", 2, 1), ("RET", 2)], params=1),
    )
    plans = plan_program(program)
    f = plans[0]
    assert f.reg_types == (NAT, None, NAT, None, NAT)
    assert f.return_type is NAT and f.direct
    assert f.native == {0, 2, 3, 6}
    # g's r1 is f's nat answer; NOT on it would fail, so it is no bool: NOT is an exit.
    assert plans[1].reg_types[1] is NAT and 1 not in plans[1].native
    assert plans[1].entries == {0: ((0, NAT),)}


def test_functions_that_never_return() -> None:
    # No RET at all (only FAIL, or endless recursion): no return type, and the fixpoint ends.
    program = assemble(
        Fn("boom", [("LOADK", 0, "no"), ("FAIL", 0)]),
        Fn("spin", [("CALL", 1, "spin", (0,)), ("RET", 1)], params=1),
        Fn("f", [("LOADK", 0, 1), ("CALL", 1, "boom", ()), ("RET", 1)]),
    )
    plans = plan_program(program)
    assert 0 not in plans and 1 not in plans  # neither can start natively
    assert plans[2].return_type is None and plans[2].entries == {0: ()}


def test_direct_call_needs_matching_types() -> None:
    program = assemble(
        Fn("f", [("ADD", 1, 0, 0), ("RET", 1)], params=1),
        Fn("g", [("LOADK", 0, True), ("CALL", 1, "f", (0,)), ("RET", 1)]),
        Fn("h", [("LOADK", 0, 3), ("CALL", 1, "f", (0,)), ("RET", 1)]),
    )
    plans = plan_program(program)
    assert plans[0].param_types == (NAT,)
    assert 1 not in plans[1].native  # a bool passed for a nat parameter: the VM calls
    assert 1 in plans[2].native


def test_liveness_ignores_dead_registers() -> None:
    function = assemble(
        Fn("f", [("LOADK", 1, 1), ("ADD", 2, 0, 1), ("LOADK", 1, 2), ("RET", 2)], params=1)
    ).functions[0]
    live = liveness(function)
    assert live[0] == {0} and live[1] == {0, 1} and live[2] == {2} and live[3] == {2}


# -- native code against the VM


@pytest.mark.parametrize("n", [0, 1, 2, 7, 15])
def test_fib(program, plans, native, n: int) -> None:
    call = check_against_vm(program, plans, native, "fib", [n])
    assert call.status == abi.RETURNED


@pytest.mark.parametrize("n", [0, 1, 100])
def test_loop(program, plans, native, n: int) -> None:
    assert check_against_vm(program, plans, native, "loop", [n]).status == abi.RETURNED


@pytest.mark.parametrize("n", [0, 1, 9, 30])
def test_mutual_recursion(program, plans, native, n: int) -> None:
    assert check_against_vm(program, plans, native, "ping", [n]).status == abi.RETURNED


@pytest.mark.parametrize("c", [False, True])
def test_bool_parameter(program, plans, native, c: bool) -> None:
    assert check_against_vm(program, plans, native, "pick", [c, 41]).status == abi.RETURNED


def test_exit_to_the_vm_for_strings(program, plans, native) -> None:
    call = check_against_vm(program, plans, native, "describe", [50])
    assert call.status == abi.EXITED and call.ctx.nrecords == 0


EDGES = [0, 1, 2, 3, 2**32, 2**63, NAT_MAX - 1, NAT_MAX]


@pytest.mark.parametrize("a", EDGES)
@pytest.mark.parametrize("b", EDGES)
def test_checked_arithmetic(program, plans, native, a: int, b: int) -> None:
    # (a * b + a) / b - a % b: overflow, division by zero and underflow all exit before
    # the failing instruction; the VM then raises its own error there.
    check_against_vm(program, plans, native, "arith", [a, b])


@pytest.mark.parametrize("n", [0, 20, 21, 40])
def test_overflow_deep_in_direct_calls(program, plans, native, n: int) -> None:
    # 21! overflows in the innermost of the calls still multiplying: the frames native code
    # reports must let the VM fail exactly where it would have.
    call = check_against_vm(program, plans, native, "fact", [n])
    assert (call.status == abi.EXITED) == (n > 20)


@pytest.mark.parametrize("n", [0, 1, 5])
def test_largest_nat_constant(program, plans, native, n: int) -> None:
    check_against_vm(program, plans, native, "top", [n])


def test_overflow_exits_before_the_instruction(program, plans, native) -> None:
    f = index(program, "arith")
    code = program.functions[f].code
    call = Call(native, program, f, [2**40, 2**40], 1000, 10)
    assert call.status == abi.EXITED and code[call.ctx.pc][0] is Op.MUL
    assert 1000 - call.ctx.fuel == call.ctx.pc  # one block: the instructions before it
    call = Call(native, program, f, [5, 0], 1000, 10)
    assert code[call.ctx.pc][0] is Op.DIV and 1000 - call.ctx.fuel == call.ctx.pc


@pytest.mark.parametrize("fuel", [0, 1, 3, 4, 5, 8, 20, 57, 58, 59, 60, 200, 1000])
def test_fuel_runs_out_exactly_as_on_the_vm(program, plans, native, fuel: int) -> None:
    f = index(program, "fib")
    call = check_against_vm(program, plans, native, "fib", [8], fuel=fuel)
    if call.status == abi.EXITED:
        frames = [(f, call.ctx.pc)] + [(g, pc) for g, pc, _ in call.records()]
        g, pc = frames[-1]
        assert pc in block_starts(program.functions[g])  # fuel exits only at block starts


def test_huge_fuel_is_kept_exactly(program, native) -> None:
    # Native code caps its fuel counter and sets the excess aside: none of it may be lost.
    f = index(program, "loop")
    used = 10**6 - on_vm(program, f, [10], 10**6, 10)[1]
    for fuel in (NAT_MAX, 2**62 + 5):
        call = Call(native, program, f, [10], fuel, 10)
        assert call.status == abi.RETURNED and fuel - call.ctx.fuel == used


@pytest.mark.parametrize(("n", "depth"), [(30, 10), (30, 31), (30, 29), (5, 0), (5, 1)])
def test_depth_limit(program, plans, native, n: int, depth: int) -> None:
    call = check_against_vm(program, plans, native, "deep", [n], depth=depth)
    if call.status == abi.EXITED:
        f = index(program, "deep")
        records = call.records()
        assert len(records) == min(depth, n)
        # Innermost first: it stopped before its CALL; the others after theirs.
        call_pc = next(pc for pc, i in enumerate(program.functions[f].code) if i[0] is Op.CALL)
        expected = [call_pc] + [call_pc + 1] * (len(records) - 1) if records else []
        assert [pc for _, pc, _ in records] == expected
        assert call.ctx.pc == (call_pc + 1 if records else call_pc)
        assert [slots[0] for _, _, slots in records][::-1] == list(
            range(n - 1, n - 1 - len(records), -1)
        )


def test_small_record_buffer_limits_depth(program, native) -> None:
    # Room for two records: native code nests two direct calls at most, whatever depth_left.
    f = index(program, "deep")
    room = 2 * (3 + native.max_nregs) + 1
    buffer = (ctypes.c_uint64 * room)()
    ctx = abi.JitContext(fuel=10**6, depth_left=15, records=buffer, records_cap=room)
    regs = (ctypes.c_uint64 * program.functions[f].nregs)(20)
    assert native.entry(f)(ctypes.byref(ctx), regs, 0) == abi.EXITED
    assert ctx.nrecords == 2


def test_unknown_pc_exits_there_untouched(program, native) -> None:
    f = index(program, "fib")
    call = Call(native, program, f, [9], 77, 10, pc=1)  # pc 1 starts no block
    assert call.status == abi.EXITED
    assert (call.ctx.pc, call.ctx.fuel, call.ctx.nrecords, call.regs[0]) == (1, 77, 0, 9)


def test_entry_mid_function(program, plans, native) -> None:
    # Enter fib at pc 7 (after the first recursive call) with r3 = fib(n - 1) done.
    f = index(program, "fib")
    assert 7 in plans[f].entries
    regs = (ctypes.c_uint64 * 4)(10, 0, 0, 34)
    ctx = abi.JitContext(fuel=10**6, depth_left=100, records=None, records_cap=0)
    assert native.entry(f)(ctypes.byref(ctx), regs, 7) == abi.EXITED  # no record room
    buffer = (ctypes.c_uint64 * 1000)()
    ctx = abi.JitContext(fuel=10**6, depth_left=100, records=buffer, records_cap=1000)
    assert native.entry(f)(ctypes.byref(ctx), regs, 7) == abi.RETURNED
    assert ctx.ret == 34 + 21 and ctx.ret_type == NAT


# Random straight-line code with forward branches over two nat parameters (r0, r1), four
# nat registers (r2-r5) and two bool registers (r6, r7), calling a helper now and then.
NAT_REGS, BOOL_REGS = [0, 1, 2, 3, 4, 5], [6, 7]
NAT_VALUES = st.sampled_from([0, 1, 2, 3, 7, 2**32, 2**63, NAT_MAX - 1, NAT_MAX]) | st.integers(
    0, NAT_MAX
)


@st.composite
def random_function(draw: st.DrawFn) -> list[tuple | str]:
    code: list[tuple | str] = [("LOADK", r, draw(NAT_VALUES)) for r in NAT_REGS[2:]]
    code += [("LOADK", r, draw(st.booleans())) for r in BOOL_REGS]
    length = draw(st.integers(1, 14))
    for position in range(length):
        code.append(f"l{position}:")
        kind = draw(st.sampled_from(["arith", "compare", "not", "branch", "call", "const"]))
        nat = st.sampled_from(NAT_REGS)
        target = st.sampled_from(NAT_REGS[2:])
        if kind == "arith":
            op = draw(st.sampled_from(["ADD", "SUB", "MUL", "DIV", "MOD"]))
            code.append((op, draw(target), draw(nat), draw(nat)))
        elif kind == "compare":
            op = draw(st.sampled_from(["EQ", "NE", "LT", "LE", "GT", "GE"]))
            code.append((op, draw(st.sampled_from(BOOL_REGS)), draw(nat), draw(nat)))
        elif kind == "not":
            code.append(("NOT", draw(st.sampled_from(BOOL_REGS)), draw(st.sampled_from(BOOL_REGS))))
        elif kind == "branch":
            jump = draw(st.sampled_from(["JMPT", "JMPF"]))
            label = f"l{draw(st.integers(position + 1, length))}"
            code.append((jump, draw(st.sampled_from(BOOL_REGS)), label))
        elif kind == "call":
            code.append(("CALL", draw(target), "helper", (draw(nat), draw(nat))))
        else:
            code.append(("LOADK", draw(target), draw(NAT_VALUES)))
    code += [f"l{length}:", ("RET", draw(st.sampled_from(NAT_REGS + BOOL_REGS)))]
    return code


@functools.cache
def shared_engine() -> JitEngine:
    return JitEngine(None)


HELPER = Fn(
    "helper",
    [("MUL", 2, 0, 1), ("LOADK", 3, 1), ("ADD", 2, 2, 3), ("RET", 2)],
    params=2,
    regs="AANN",
)


@settings(max_examples=30, deadline=None)
@given(
    code=random_function(),
    a=NAT_VALUES,
    b=NAT_VALUES,
    fuel=st.sampled_from([3, 10, 20, 40, 10**6]),
)
def test_random_code_agrees_with_the_vm(code: list, a: int, b: int, fuel: int) -> None:
    program = assemble(Fn("f", code, params=2, regs="AANNNNBB"), HELPER)
    plans = plan_program(program)
    module = shared_engine().compile(program, plans, [0])
    check_against_vm(program, plans, module, "f", [a, b], fuel=fuel, depth=2)


# -- the LLVM text and the disk cache


def test_llvm_ir_text(program: Program) -> None:
    f = index(program, "fib")
    text = llvm_ir_text(program, f)
    assert f'define i32 @"{abi.entry_name(f)}"' in text
    assert "llvm.usub.with.overflow.i64" in text and "pc4:" in text
    assert "avm_direct_" in llvm_ir_text(program, f, optimised=True)
    strings = compile_source('fn s(x) { return x ++ "a" }', "s.avm")
    with pytest.raises(ValueError, match="s has no native code"):
        llvm_ir_text(strings, 0)


def small_program() -> Program:
    return compile_source("fn sq(n) { return n * n + 1 }", "sq.avm")


def square(module: NativeModule, program: Program, n: int) -> int:
    call = Call(module, program, 0, [n], 100, 1)
    assert call.status == abi.RETURNED
    return call.ctx.ret


def test_cache_hit_and_corruption(tmp_path: Path) -> None:
    program = small_program()
    plans = plan_program(program)
    first = JitEngine(tmp_path).compile(program, plans, [0])
    assert not first.from_cache and square(first, program, 7) == 50
    second = JitEngine(tmp_path).compile(program, plans, [0])
    assert second.from_cache and square(second, program, 7) == 50
    (entry,) = tmp_path.glob("*.avmjit")
    data = entry.read_bytes()
    assert data.startswith(MAGIC)
    damaged = [
        data[:-1] + bytes([data[-1] ^ 1]),  # a flipped bit in the payload
        data[: len(MAGIC) + 10],  # cut short
        b"NOTAVMJT" + data[8:],  # wrong magic
        b"",
    ]
    for bad in damaged:
        entry.write_bytes(bad)
        again = JitEngine(tmp_path).compile(program, plans, [0])
        assert not again.from_cache and square(again, program, 7) == 50
        assert entry.read_bytes() == data  # replaced by a good entry


def test_modules_are_freed_independently() -> None:
    # Each module owns its execution engine (and the target machine that engine frees).
    program = small_program()
    plans = plan_program(program)
    engine = JitEngine(None)
    first, second = (engine.compile(program, plans, [0]) for _ in range(2))
    del first
    gc.collect()
    assert square(second, program, 4) == 17
    del second
    gc.collect()
    assert square(engine.compile(program, plans, [0]), program, 5) == 26


def test_unwritable_cache_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    program = small_program()
    engine = JitEngine(blocker / "cache")
    module = engine.compile(program, plan_program(program), [0])
    assert not module.from_cache and square(module, program, 3) == 10


def test_second_process_loads_from_cache(tmp_path: Path) -> None:
    script = (
        "from avmc.compiler import compile_source\n"
        "from avm_vm.jit.analysis import plan_program\n"
        "from avm_vm.jit.engine import JitEngine, default_cache_dir\n"
        "p = compile_source('fn sq(n) { return n * n + 1 }', 'sq.avm')\n"
        "print(JitEngine(default_cache_dir()).compile(p, plan_program(p), [0]).from_cache)\n"
    )
    env = {**os.environ, "AVM_JIT_CACHE": str(tmp_path)}
    runs = [
        subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(2)
    ]
    assert runs == ["False", "True"]


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AVM_JIT_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    for off in ("off", ""):
        monkeypatch.setenv("AVM_JIT_CACHE", off)
        assert default_cache_dir() is None
    monkeypatch.delenv("AVM_JIT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "avm" / "jit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "avm" / "jit"
