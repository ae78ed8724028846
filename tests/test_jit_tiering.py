"""Tiering and deoptimisation: when functions become native, and how native code hands a
frame back to the VM (a boxed value, an effect, an error, the depth limits, fuel)."""

from __future__ import annotations

import pytest
from jit_support import count_deopts, native_functions, observe, run_main

from avm_vm.errors import ErrorKind
from avm_vm.jit import native, tiering
from avm_vm.vm.interpreter import Fuel, Interpreter
from avmc.compiler import compile_source

LOOP = """
fn spin(n) { let i = 0 let s = 0 while i < n { s = s + i %% 7 i += 1 } return s }
main { return spin(%d) }
"""

# Mostly native, but a list is built every tenth iteration: native code exits there.
MIXED = """
fn f(n) {
  let s = 0 let i = 0 let xs = []
  while i < n { s = s + i * 3 %% 7 if i %% 10 == 0 { xs = append(xs, i) } i += 1 }
  return [s, len(xs)]
}
main { return f(%d) }
"""

DOWN = """
fn down(n) { if n == 0 { return 0 } return down(n - 1) + 1 }
main { return down(%d) }
"""


def proc_named(interpreter: Interpreter, name: str):
    return next(proc for proc in interpreter.procs if proc.name == name)


def settle(interpreter: Interpreter) -> None:
    """Wait for the compile thread and install what it made (auto mode compiles there while
    the run goes on, so a short run can end before its native code is ready)."""
    assert interpreter.jit_state is not None and interpreter.jit_state.wait(60)


def both(source: str, **limits: int) -> tuple:
    """main's outcome with jit off; asserts jit on gives the same."""
    program = compile_source(source, "t.avm")
    off = run_main(Interpreter(program, "off"), **limits)
    assert run_main(Interpreter(program, "on"), **limits) == off
    return off


# ---------------------------------------------------------------------- modes


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="jit must be one of off, auto, on"):
        Interpreter(compile_source(LOOP % 1, "t.avm"), "fast")


def test_off_translation_does_not_count() -> None:
    program = compile_source(LOOP % 1, "t.avm")
    assert "HEAT" not in Interpreter(program, "off").procs[0].source()
    assert "HEAT" in Interpreter(program, "auto").procs[0].source()


def test_on_compiles_before_running() -> None:
    interpreter = Interpreter(compile_source(LOOP % 10, "t.avm"), "on")
    assert interpreter.jit_state is not None
    assert proc_named(interpreter, "spin").native is not None


# ---------------------------------------------------------------------- auto


def test_auto_tiers_up_a_hot_loop() -> None:
    program = compile_source(LOOP % (tiering.HOT_COUNT * 2), "t.avm")
    interpreter = Interpreter(program, "auto")
    spin = proc_named(interpreter, "spin")
    assert spin.native is None
    assert run_main(interpreter) == run_main(Interpreter(program, "off"))
    settle(interpreter)
    assert spin.native is not None
    assert spin.hot_after == 0


def test_auto_tiers_up_a_recursive_function() -> None:
    fib = "fn fib(n) { if n < 2 { return n } return fib(n - 1) + fib(n - 2) }\n"
    program = compile_source(fib + "main { return fib(22) }", "t.avm")
    interpreter = Interpreter(program, "auto")
    assert run_main(interpreter) == run_main(Interpreter(program, "off"))
    settle(interpreter)
    assert proc_named(interpreter, "fib").native is not None


def test_auto_leaves_short_runs_alone() -> None:
    program = compile_source(LOOP % (tiering.HOT_COUNT // 2), "t.avm")
    interpreter = Interpreter(program, "auto")
    run_main(interpreter)
    spin = proc_named(interpreter, "spin")
    assert spin.native is None
    assert spin.hot_after == tiering.HOT_COUNT
    assert interpreter.jit_state is not None and interpreter.jit_state.modules == []


def test_auto_keeps_boxed_code_on_the_vm_and_stops_counting() -> None:
    source = """
    fn words(n) {
      let t = 0 let i = 0
      while i < n { t = t + len(str(i) ++ "," ++ str(t) ++ ";" ++ str(i)) i += 1 }
      return t
    }
    main { return words(%d) }
    """
    program = compile_source(source % (tiering.HOT_COUNT * 2), "t.avm")
    interpreter = Interpreter(program, "auto")
    assert run_main(interpreter) == run_main(Interpreter(program, "off"))
    settle(interpreter)
    words = proc_named(interpreter, "words")
    assert words.native is None
    assert words.hot_after == 0
    assert "HEAT" not in words.fast.__code__.co_names  # its new translation does not count


def test_a_failed_compilation_leaves_the_vm_running_and_is_not_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attempts = []

    def broken(*args: object) -> object:
        attempts.append(args)
        raise RuntimeError("LLVM ERROR: simulated")

    monkeypatch.setattr(tiering, "_compile", broken)
    program = compile_source(LOOP % (tiering.HOT_COUNT * 3), "t.avm")
    interpreter = Interpreter(program, "auto")
    expected = run_main(Interpreter(program, "off"))
    assert run_main(interpreter) == expected
    settle(interpreter)  # the attempt runs on the compile thread: let it finish
    assert run_main(interpreter) == expected
    settle(interpreter)
    assert len(attempts) == 1
    assert proc_named(interpreter, "spin").native is None
    assert run_main(Interpreter(program, "on")) == expected  # on: everything stays on the VM


# ---------------------------------------------------------------------- deoptimisation


def test_a_list_touched_mid_loop_deoptimises_and_comes_back() -> None:
    program = compile_source(MIXED % 2000, "t.avm")
    interpreter = Interpreter(program, "on")
    f = proc_named(interpreter, "f")
    assert f.native is not None
    deopts = count_deopts(f)
    assert run_main(interpreter) == run_main(Interpreter(program, "off"))
    assert len(deopts) > 100  # every tenth iteration, and native again in between


def test_native_calls_that_cost_more_than_they_save_go_back_to_the_vm() -> None:
    source = """
    fn inc(x) { return x + 1 }
    fn drive(n) { let i = 0 let t = [] while i < n { i = inc(i) t = [i] } return len(t) + i }
    main { return drive(20000) }
    """
    program = compile_source(source, "t.avm")
    interpreter = Interpreter(program, "on")
    assert proc_named(interpreter, "drive").native is not None
    assert run_main(interpreter) == run_main(Interpreter(program, "off"))
    # drive left native code every iteration (the list); then inc, called from the VM, ran
    # two instructions per native call.
    assert proc_named(interpreter, "drive").native is None
    assert proc_named(interpreter, "inc").native is None


def test_speculation_that_fails_runs_on_the_vm() -> None:
    program = compile_source("fn inc(x) { return x + 1 }\nmain { return inc(1) }", "t.avm")
    off, on = Interpreter(program, "off"), Interpreter(program, "on")
    assert on.procs[0].native is not None
    for value in ("a", True, (1,)):
        faults = []
        for interpreter in (off, on):
            outcome = interpreter.run([interpreter.frame(0, (value,))], Fuel(100))
            faults.append((outcome.error.kind, outcome.error.message, outcome.pc))
        assert faults[0] == faults[1]
        assert faults[0][0] is ErrorKind.TYPE_MISMATCH


def test_bool_results_stay_bools() -> None:
    source = "fn even(n) { return n % 2 == 0 }\nmain { return [even(4), even(7), 1] }"
    assert both(source)[1] == "[true, false, 1]"


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("fn f(n) { return n - 1 }\nmain { return f(0) }", ErrorKind.ARITHMETIC),
        ("fn f(n) { return n * n }\nmain { return f(4294967296) }", ErrorKind.ARITHMETIC),
        ("fn f(n) { return 7 / n }\nmain { return f(0) }", ErrorKind.ARITHMETIC),
    ],
)
def test_native_errors_match(source: str, kind: ErrorKind) -> None:
    outcome = both(source)
    assert outcome[:2] == ("fault", kind)


def test_an_effect_inside_a_hot_behavior_loop() -> None:
    source = """
    behavior Acc {
      on _ {
        let i = 0 let s = 0
        while i < 3000 { s = s + i if i % 500 == 0 { set_state([s]) } i += 1 }
        return s
      }
    }
    main { let a = create Acc return [call(a, 1), call(a, 2)] }
    """
    program = compile_source(source, "t.avm")
    assert "Acc" in native_functions(program)
    off = observe(program, "off")
    assert observe(program, "on") == off
    assert off["trace"].count("state updated: obj:0") == 12  # type: ignore[union-attr]


def test_a_handler_catches_an_overflow_raised_in_native_code() -> None:
    source = """
    fn big(n) { let x = 1 let i = 0 while i < n { x = x * 2 i += 1 } return x }
    main { atomic { return big(70) } else (err) { return err } }
    """
    program = compile_source(source, "t.avm")
    assert "big" in native_functions(program)
    off = observe(program, "off")
    assert observe(program, "on") == off
    assert "nat overflow" in off["value"]  # type: ignore[operator]


def test_an_error_deep_in_native_recursion_reports_every_frame() -> None:
    source = """
    fn climb(n) { if n == 0 { return 18446744073709551615 } return climb(n - 1) + 1 }
    main { atomic { return climb(500) } else (err) { return err } }
    """
    program = compile_source(source, "t.avm")
    assert observe(program, "on") == observe(program, "off")
    fault = both(
        source.replace(
            "atomic { return climb(500) } else (err) { return err }", "return climb(500)"
        )
    )
    assert fault[3][0] == "climb"


def test_recursion_deeper_than_the_native_cap() -> None:
    depth = native.NATIVE_DEPTH * 5
    assert both(DOWN % depth)[1] == str(depth)


def test_max_frames_exceeded_natively() -> None:
    fault = both(DOWN % 5000, max_frames=3000)
    assert fault[1] is ErrorKind.DEPTH_EXCEEDED
    assert fault[2] == "call depth limit of 3000 exceeded"


@pytest.mark.parametrize(
    "source", [LOOP % 500, MIXED % 300, DOWN % 1500], ids=["loop", "mixed", "recursion"]
)
def test_fuel_runs_out_at_the_same_instruction(source: str) -> None:
    program = compile_source(source, "t.avm")
    off, on = Interpreter(program, "off"), Interpreter(program, "on")
    used = run_main(off)[-1]
    for fuel in range(0, used + 2, max(1, used // 97)):
        assert run_main(on, fuel=fuel) == run_main(off, fuel=fuel), fuel
