"""`call_pure("f", [args])` as a guarded direct native call (avm_vm.jit.analysis `PureCall`).

What native code must do exactly as the VM: answer the same values, charge the same fuel and
memory, leave the same trace, and hand the VM every case its guard does not cover (a name
rebound by `update_pure` or bound by another program, an unknown name, a wrong arity, a
failing callee, fuel or memory running out part of the way, a callee too deep).
"""

from __future__ import annotations

import pytest
from jit_support import count_deopts, observe
from test_runtime_slices import _run as run_sliced

from avm_vm.format.opcodes import Op
from avm_vm.jit.analysis import plan_program
from avm_vm.runtime.core import Runtime, RuntimeOptions
from avm_vm.vm.interpreter import Interpreter
from avmc.compiler import compile_source

FNS = """
fn double(x) { return x * 2 }
fn triple(x) { return x * 3 }
fn add(x, y) { return x + y }
fn dec(x) { return x - 10 }
fn fib(n) { if n < 2 { return n } return fib(n - 1) + fib(n - 2) }
"""


def looping(times: int, body: str, before: str = "", answer: str = "s") -> str:
    """main: ``before``, then ``body`` for i from 0 below ``times``, with ``s`` from 0."""
    return (
        f"{FNS}\nmain {{\n  {before}\n  let i = 0\n  let s = 0\n  let declined = 0\n"
        f"  while i < {times} {{ {body} i += 1 }}\n  return {answer}\n}}\n"
    )


LOOP = 's += call_pure("double", [i]);'
TAKE = "if r == nothing { declined += 1 } else { s += r }"  # r: what call_pure answered
PROGRAMS = {
    "loop": looping(60, LOOP),
    # Two bindings, a constant list, a call_pure inside another's arguments.
    "shapes": looping(
        40, 's += call_pure("add", [call_pure("triple", [i]), i + 1]) + call_pure("add", [1, 2])'
    ),
    # update_pure rebinds the name half-way: the rest of the calls run triple.
    "rebound": looping(40, f'{LOOP} if i == 20 {{ update_pure("double", triple) }}'),
    # A name rebound to a function of another arity: the calls answer nothing.
    "rebound_arity": looping(
        30,
        f'let r = call_pure("double", [i]) {TAKE} if i == 10 {{ update_pure("double", add) }}',
        answer="[s, declined]",
    ),
    # The callee fails for i < 10 (a nat underflow): nothing, and the loop goes on.
    "failing": looping(30, f'let r = call_pure("dec", [i]) {TAKE}', answer="[s, declined]"),
    "arity": looping(20, 's += i; if call_pure("double", [i, i]) == nothing { s += 1 }'),
    "unknown": looping(20, f'{LOOP} if i == 15 {{ s += call_pure("nope", [i]) }}'),
    # Registered at run time: not a name the program binds at load.
    "registered": looping(
        20, 's += call_pure("twice", [i]);', before='unsafe register_pure("twice", double)'
    ),
    # The argument needs the VM (`len`) after the name is loaded: the VM must find the name.
    "vm_argument": looping(
        20, 's += call_pure("add", [len(xs), i]); if i == 7 { xs = [1] }', before="let xs = [1, 2]"
    ),
    "recursive": looping(12, 's += call_pure("fib", [i]);'),
    "overflow": looping(99, 's = call_pure("double", [s + 1]);'),
}


def program_of(name: str):
    return compile_source(PROGRAMS[name], f"{name}.avm")


def count_pure_answers(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the call_pures the VM performs (`Interpreter.answer_pure`)."""
    calls: list[int] = []
    answer = Interpreter.answer_pure

    def counting(self: Interpreter, *args: object) -> object:
        calls.append(1)
        return answer(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Interpreter, "answer_pure", counting)
    return calls


# ---------------------------------------------------------------------- the plan


def test_the_usual_shapes_are_native_call_pures() -> None:
    program = program_of("shapes")
    main = program.main
    assert main is not None
    plan = plan_program(program)[main]
    code = program.functions[main].code
    effects = [pc for pc, instr in enumerate(code) if instr[0] is Op.EFFECT]
    assert sorted(plan.pure_calls) == effects
    assert all(pc in plan.native for pc in effects)
    names = {call.name for call in plan.pure_calls.values()}
    assert names == {"add", "triple"}
    assert len({call.binding for call in plan.pure_calls.values()}) == 2
    assert [call.constant for call in plan.pure_calls.values()].count(True) == 1


@pytest.mark.parametrize(
    ("name", "callee"), [("arity", "double"), ("unknown", "nope"), ("registered", "twice")]
)
def test_call_pures_the_guard_cannot_cover_stay_on_the_vm(name: str, callee: str) -> None:
    """A wrong arity, a name no function of the program has: the VM's, always."""
    program = program_of(name)
    plan = plan_program(program)[program.main]  # type: ignore[index]
    code = program.functions[program.main].code  # type: ignore[index]
    assert callee not in {call.name for call in plan.pure_calls.values()}
    assert any(instr[0] is Op.EFFECT for instr in code)


def test_an_unread_effect_answer_leaves_the_call_pure_native() -> None:
    """`update_pure(...)` as a statement answers into the register the call_pure answers
    into; nothing reads that answer, so the register stays a speculated nat."""
    program = program_of("rebound")
    main = program.main
    assert main is not None
    code = program.functions[main].code
    answers = {instr[1] for instr in code if instr[0] is Op.EFFECT}
    assert len(answers) == 1  # one register for both answers: what this test is about
    assert len(plan_program(program)[main].pure_calls) == 1


# ---------------------------------------------------------------------- native at all


def test_a_native_call_pure_loop_never_asks_the_vm(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_pure_answers(monkeypatch)
    program = program_of("loop")
    runtime = Runtime(program, RuntimeOptions(jit="on"))
    deopts = count_deopts(runtime.interpreters[0].procs[program.main])  # type: ignore[index]
    assert runtime.run_main() == sum(2 * i for i in range(60))
    assert calls == [] and deopts == []
    off = Runtime(program_of("loop"), RuntimeOptions(jit="off"))
    assert off.run_main() == sum(2 * i for i in range(60))
    assert len(calls) == 60  # the count above means something


def test_a_failing_callee_is_redone_by_the_vm(monkeypatch: pytest.MonkeyPatch) -> None:
    """The callee fails inside native code: native code leaves the call to the VM at the
    list instruction, and the VM answers nothing; later calls run natively."""
    calls = count_pure_answers(monkeypatch)
    program = program_of("failing")
    runtime = Runtime(program, RuntimeOptions(jit="on"))
    main = program.main
    assert main is not None
    deopts = count_deopts(runtime.interpreters[0].procs[main])
    assert runtime.run_main() == (sum(i - 10 for i in range(10, 30)), 10)
    (effect,) = plan_program(program)[main].pure_calls
    assert deopts.count(effect - 1) == 10  # each failing call, redone from its list
    assert len(calls) == 10  # the VM performed only those


def test_auto_mode_reaches_the_native_call_pure(monkeypatch: pytest.MonkeyPatch) -> None:
    """jit auto compiles the loop once it is hot; the next run's loop is native."""
    program = compile_source(looping(30_000, LOOP), "hot.avm")
    runtime = Runtime(program, RuntimeOptions(jit="auto"))
    expected = sum(2 * i for i in range(30_000))
    assert runtime.run_main() == expected
    jit = runtime.interpreters[0].jit_state
    assert jit is not None and jit.wait(60)
    assert runtime.interpreters[0].procs[program.main].native is not None  # type: ignore[index]
    calls = count_pure_answers(monkeypatch)
    assert runtime.run_main() == expected
    assert calls == []


# ---------------------------------------------------------------------- jit off == jit on


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_jit_on_shows_what_jit_off_shows(name: str) -> None:
    program = program_of(name)
    off = observe(program, "off")
    assert observe(program, "on") == off
    assert "error" not in off or name in ("unknown", "overflow"), off


def test_another_programs_binding_is_not_called_natively() -> None:
    """A name bound (by the program loaded first) to another program's function."""
    first = compile_source("fn double(x) { return x * 5 }", "first.avm")
    second = program_of("loop")
    values = []
    for jit in ("off", "on"):
        runtime = Runtime([first, second], RuntimeOptions(jit=jit))  # type: ignore[arg-type]
        values.append((runtime.run_main(second), runtime.fuel.used))
    assert values[0] == values[1]
    assert values[0][0] == sum(5 * i for i in range(60))


@pytest.mark.parametrize("name", ["loop", "shapes", "failing", "recursive"])
def test_fuel_running_out_anywhere_in_a_call(name: str) -> None:
    """Every budget across a few iterations of the loop (inside the callee, before the
    instruction's charge, at the list), and a few more: the same failure, fuel and trace."""
    program = program_of(name)
    used = observe(program, "off")["fuel"]
    assert isinstance(used, int)
    middle = used // 2
    for fuel in [*range(middle, middle + 100), used - 1, used // 7, 40, 33, 1]:
        assert observe(program, "on", fuel=fuel) == observe(program, "off", fuel=fuel), fuel


def test_memory_running_out_in_a_native_call_pure_loop() -> None:
    """Each call builds its list and the instruction's box; the budget runs out mid-loop."""
    program = compile_source(looping(2_000, LOOP), "memory.avm")
    for limit in (50, 104, 105, 100_000, 104 * 1_500 + 7, 300_000):
        off = observe(program, "off", max_value_bytes=limit)
        assert observe(program, "on", max_value_bytes=limit) == off, limit
        assert ("error" in off) == (limit < 2_000 * 104), limit


def test_a_callee_deeper_than_the_frame_limit() -> None:
    program = program_of("recursive")
    for frames in (3, 6, 12):
        off = observe(program, "off", max_frames=frames)
        assert observe(program, "on", max_frames=frames) == off, frames


@pytest.mark.parametrize("name", ["loop", "rebound"])
def test_sliced_runs_agree(name: str) -> None:
    """A pure call stretches its caller's slice (the VM's rule): native code that runs out
    of slice inside one leaves the whole call to the VM."""
    whole, whole_fuel, _ = run_sliced(PROGRAMS[name], "off", None)
    for size in (1, 33, 100):
        for jit in ("off", "on"):
            sliced, fuel, _ = run_sliced(PROGRAMS[name], jit, size)
            assert (sliced, fuel) == (whole, whole_fuel), (jit, size)
