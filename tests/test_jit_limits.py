"""JIT compile bombs (issue 16): what the JIT compiles is bounded, compilation runs on a
thread of its own, and a function goes on in the VM until its native code is ready.

The bomb is one function of thousands of native blocks, made hot by a warm-up loop: LLVM
takes seconds on it (about 4x more per doubling), the VM a fraction of a second."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from jit_support import observe, run_main
from node_harness import AVM, Nodes, Session, compile_tape, timed_status

from avm_vm.jit import tiering
from avm_vm.values import Just
from avm_vm.vm.interpreter import Interpreter, Proc
from avmc.compiler import compile_source

BLOCKS = 500  # if/else pairs: about 7,000 instructions, a 51 KB tape


def bomb_body(name: str, blocks: int, warm: int) -> list[str]:
    """``name(x)``: a warm-up loop of ``warm`` turns (hot in auto mode once the function has
    done `HOT_COUNT` of them), then ``blocks`` if/else pairs of arithmetic, all native."""
    lines = [
        f"fn {name}(x) {{",
        "  let s = x let i = 0",
        f"  while i < {warm} {{ s = (s + i) % 1000003 i += 1 }}",
    ]
    for k in range(blocks):
        lines.append(
            f"  if s % {k % 13 + 2} == {k % 3} {{ s = s + {k} }}"
            f" else {{ s = s * 3 % 1000003 + {k} }}"
        )
    return [*lines, "  return s", "}"]


def bomb_source(blocks: int = BLOCKS, warm: int = 20_000) -> str:
    """One huge function, ``bomb``, called by main and by a behavior."""
    lines = bomb_body("bomb", blocks, warm)
    lines.append('behavior Bomb { on ["go", x] { return bomb(x) } }')
    return "\n".join(lines) + "\nmain { return bomb(7) }\n"


def many_source(functions: int = 20, blocks: int = 60) -> str:
    """Many functions, each within the size limit and hot: only the budget bounds them."""
    lines = [line for f in range(functions) for line in bomb_body(f"b{f}", blocks, 12_000)]
    total = " + ".join(f"b{f}({f})" for f in range(functions))
    return "\n".join(lines) + f"\nmain {{ return {total} }}\n"


LOOP = """
fn spin(n) { let i = 0 let s = 0 while i < n { s = s + i %% 7 i += 1 } return s }
main { return spin(%d) }
"""


@pytest.fixture(autouse=True)
def no_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every compilation is a fresh one (a cache hit would hide the bomb)."""
    monkeypatch.setenv("AVM_JIT_CACHE", "off")
    for name in ("AVM_JIT_MAX_INSTRUCTIONS", "AVM_JIT_BUDGET"):
        monkeypatch.delenv(name, raising=False)


def proc_named(interpreter: Interpreter, name: str) -> Proc:
    return next(proc for proc in interpreter.procs if proc.name == name)


def timed_run(tape: Path, mode: str) -> tuple[str, float]:
    began = time.monotonic()
    done = subprocess.run(
        [*AVM, "run", str(tape), "--jit", mode], capture_output=True, text=True, timeout=120
    )
    seconds = time.monotonic() - began
    assert done.returncode == 0, done.stderr
    return done.stdout, seconds


# ---------------------------------------------------------------------- the bomb


@pytest.mark.parametrize("make", [bomb_source, pytest.param(many_source, marks=pytest.mark.slow)])
def test_the_bomb_runs_about_as_fast_with_the_jit_as_without(
    tmp_path: Path, make: Callable[[], str]
) -> None:
    tape = compile_tape(make(), tmp_path, "bomb")
    off, off_seconds = timed_run(tape, "off")
    bound = 3 * off_seconds + 2
    for mode in ("auto", "on"):
        out, seconds = timed_run(tape, mode)
        assert out == off
        assert seconds < bound, f"--jit {mode}: {seconds:.1f} s, --jit off {off_seconds:.1f} s"


def test_the_bomb_gives_what_the_vm_gives_in_every_mode() -> None:
    program = compile_source(bomb_source(), "bomb.avm")
    off = observe(program, "off")
    assert observe(program, "auto") == off
    assert observe(program, "on") == off
    for fuel in (20_000, 100_000):  # out of fuel in the warm-up loop, then in the blocks
        assert run_main(Interpreter(program, "on"), fuel) == run_main(
            Interpreter(program, "off"), fuel
        )


def test_a_module_over_the_size_limit_stays_on_the_vm(monkeypatch: pytest.MonkeyPatch) -> None:
    program = compile_source(LOOP % 10, "t.avm")
    monkeypatch.setenv("AVM_JIT_MAX_INSTRUCTIONS", "5")
    small = Interpreter(program, "on")
    assert proc_named(small, "spin").native is None
    assert small.jit_state is not None and small.jit_state.modules == []
    assert run_main(small) == run_main(Interpreter(program, "off"))
    size = small.jit_state.size([proc_named(small, "spin").index])
    monkeypatch.setenv("AVM_JIT_MAX_INSTRUCTIONS", str(size))  # the limit is inclusive
    assert proc_named(Interpreter(program, "on"), "spin").native is not None
    counting = proc_named(Interpreter(program, "auto"), "spin")
    assert counting.hot_after == tiering.HOT_COUNT
    monkeypatch.setenv("AVM_JIT_MAX_INSTRUCTIONS", str(size - 1))
    assert proc_named(Interpreter(program, "auto"), "spin").hot_after == 0  # never counts


def test_a_spent_budget_compiles_nothing_more(monkeypatch: pytest.MonkeyPatch) -> None:
    program = compile_source(LOOP % 10, "t.avm")
    monkeypatch.setenv("AVM_JIT_BUDGET", "0")
    interpreter = Interpreter(program, "on")
    assert proc_named(interpreter, "spin").native is None
    assert run_main(interpreter) == run_main(Interpreter(program, "off"))


@pytest.mark.parametrize(
    ("name", "value"),
    [("AVM_JIT_BUDGET", "soon"), ("AVM_JIT_BUDGET", "-1"), ("AVM_JIT_MAX_INSTRUCTIONS", "1.5")],
)
def test_a_bad_limit_is_reported_and_the_default_used(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    interpreter = Interpreter(compile_source(LOOP % 10, "t.avm"), "auto")
    assert interpreter.jit_state is not None
    assert interpreter.jit_state.limits == tiering.Limits()
    assert f"{name} must be" in caplog.text and repr(value) in caplog.text


# ---------------------------------------------------------------------- the compile thread


def held_compiler(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, list[str]]:
    """Compilations wait for the event returned; the list names the threads they ran on."""
    release = threading.Event()
    threads: list[str] = []
    real = tiering._compile

    def held(*args: object) -> object:
        threads.append(threading.current_thread().name)
        assert release.wait(60), "the test never released the compilation"
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(tiering, "_compile", held)
    return release, threads


def test_auto_runs_on_in_the_vm_while_compiling_then_switches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release, threads = held_compiler(monkeypatch)
    polls: list[bool] = []
    real_tier_up = tiering.ProgramJit.tier_up

    def tier_up(self: tiering.ProgramJit, proc: Proc) -> None:
        polls.append(proc.native is None)
        if len(polls) == 5:  # the VM went on through four polls: let the code be made
            release.set()
            job = self.pending[proc.index]
            assert job.done.wait(60)
        real_tier_up(self, proc)

    monkeypatch.setattr(tiering.ProgramJit, "tier_up", tier_up)
    count = tiering.HOT_COUNT + 20 * tiering.POLL_COUNT
    program = compile_source(LOOP % count, "t.avm")
    interpreter = Interpreter(program, "auto")
    assert run_main(interpreter) == run_main(Interpreter(program, "off"))
    spin = proc_named(interpreter, "spin")
    assert threads == ["avm-jit"]  # not the thread running the VM
    assert polls == [True] * 5  # hot, four polls while compiling, then native
    assert spin.native is not None and spin.hot_after == 0


def test_on_waits_at_most_its_budget_then_switches_when_ready(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release, _ = held_compiler(monkeypatch)
    monkeypatch.setenv("AVM_JIT_BUDGET", "0.2")
    program = compile_source(LOOP % (tiering.POLL_COUNT * 3), "t.avm")
    began = time.monotonic()
    interpreter = Interpreter(program, "on")
    assert time.monotonic() - began < 5
    spin = proc_named(interpreter, "spin")
    assert spin.native is None and spin.hot_after == tiering.POLL_COUNT
    release.set()  # the run polls for the code (and may switch to it) as it goes
    assert run_main(interpreter) == run_main(Interpreter(program, "off"))
    assert interpreter.jit_state is not None and interpreter.jit_state.wait(60)
    assert spin.native is not None
    assert run_main(interpreter) == run_main(Interpreter(program, "off"))


# ---------------------------------------------------------------------- a node


# Calls short enough to run on the node's event loop thread (a fuel slice is 20,000 steps,
# docs/wire.md), the function hot during one of them: the old JIT compiled on that thread.
WARM = 2_000
CALLS = tiering.HOT_COUNT // WARM + 3


def status_while_the_bomb_runs(tmp_path: Path, watch: float) -> list[float]:
    """A node loaded with the bomb (default --jit auto) and calls of it until it is hot:
    the seconds each status took while they ran and for ``watch`` seconds after."""
    nodes = Nodes(tmp_path)
    source = bomb_source(warm=WARM)
    try:
        node = nodes.start("bombed", [compile_tape(source, tmp_path, "bomb")])
        with Session(node) as session:
            target = session.create("Bomb")
        answers: list[object] = []

        def go() -> None:
            with Session(node, timeout=120.0) as caller:
                answers.extend(caller.call(target, ("go", 7)) for _ in range(CALLS))

        caller = threading.Thread(target=go)
        began = time.monotonic()
        caller.start()
        took = []
        while caller.is_alive() or time.monotonic() - began < watch:
            took.append(timed_status(node, timeout=30.0)[1])
            time.sleep(0.2)
        caller.join()
        expected = run_main(Interpreter(compile_source(source, "b.avm"), "off"))[1]
        assert answers == [Just(int(expected))] * CALLS
        assert node.alive()
        return took
    finally:
        nodes.close()


def test_a_node_answers_status_while_the_bomb_first_runs(tmp_path: Path) -> None:
    took = status_while_the_bomb_runs(tmp_path, watch=2.0)
    assert max(took) < 1.0, f"status took {max(took):.2f} s"


def test_a_node_answers_status_while_it_compiles_the_bomb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the size limit raised, LLVM works on the bomb for seconds: on the compile
    thread, while the call is answered from the VM and status stays quick."""
    monkeypatch.setenv("AVM_JIT_MAX_INSTRUCTIONS", "1000000")
    took = status_while_the_bomb_runs(tmp_path, watch=4.0)
    assert max(took) < 1.0, f"status took {max(took):.2f} s"
