"""The JIT never changes meaning: jit off and jit on agree on results, errors, traces and fuel.

Three sources of programs: every example, every program the conformance suite runs (the
suite runs twice in child processes, once per mode, recording each run), and random pure
programs generated as `.avm` source by hypothesis, run with budgets that run out mid-way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jit_support import native_functions, observe, run_main

from avm_vm.vm.interpreter import Interpreter
from avmc.compiler import compile_path, compile_source

TESTS = Path(__file__).parent
# The N-Queens example runs thousands of searches (11 s per mode pair): it is compared in
# the slow suite; tests/test_search.py runs it with and without the JIT by default.
HEAVY = {"nqueens"}
EXAMPLES = [
    pytest.param(path, marks=pytest.mark.slow) if path.stem in HEAVY else path
    for path in sorted((TESTS.parent / "examples").glob("*.avm"))
]


@pytest.mark.parametrize("source", EXAMPLES, ids=lambda p: p.stem)
def test_example_agrees(source: Path) -> None:
    program = compile_path(source)
    off = observe(program, "off")
    assert observe(program, "on") == off
    # Budgets that run out part of the way through (the fuel counted exactly either way).
    used = off["fuel"]
    assert isinstance(used, int)
    for fuel in sorted({used - 1, used // 2, used // 7, 40}):
        assert observe(program, "on", fuel=fuel) == observe(program, "off", fuel=fuel), fuel


def test_examples_have_native_code() -> None:
    """The comparison above is not vacuous: purelib's numeric functions run natively."""
    names = native_functions(compile_path(TESTS.parent / "examples" / "purelib.avm"))
    assert "fib" in names


# ---------------------------------------------------------------------- conformance programs


def _conformance_run(mode: str, record: Path) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "AVM_JIT_MODE": mode,
        "AVM_JIT_RECORD": str(record),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-m", "pytest", str(TESTS / "conformance"), "-x", "-q"]
    command += ["-p", "jit_conformance_plugin", "-p", "no:cacheprovider", "-m", "not slow"]
    return subprocess.Popen(
        command,
        env=env,
        cwd=TESTS.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_conformance_programs_agree(tmp_path: Path) -> None:
    """The whole conformance suite passes with jit on, and every run in it shows exactly
    what it shows with jit off."""
    runs = {mode: _conformance_run(mode, tmp_path / f"{mode}.json") for mode in ("off", "on")}
    for mode, child in runs.items():
        output, _ = child.communicate(timeout=300)
        assert child.returncode == 0, f"conformance suite with jit {mode}:\n{output}"
    off = json.loads((tmp_path / "off.json").read_text())
    on = json.loads((tmp_path / "on.json").read_text())
    assert len(off) > 100
    assert [r["test"] for r in on] == [r["test"] for r in off]
    assert sum(r.pop("native") for r in off) == 0
    assert sum(r.pop("native") > 0 for r in on) > len(on) // 4  # runs with native code
    for with_off, with_on in zip(off, on, strict=True):
        assert with_on == with_off, with_off["test"]


# ---------------------------------------------------------------------- random programs

NEAR_LIMITS = [0, 1, 2, 3, 7, 10, 255, 2**32, 2**32 + 1, 2**63, 2**64 - 2, 2**64 - 1]
ARITH = ["+", "-", "*", "/", "%"]
ORDER = ["<", "<=", ">", ">=", "==", "!="]


@st.composite
def nat_literal(draw: st.DrawFn) -> str:
    return str(draw(st.sampled_from(NEAR_LIMITS) | st.integers(0, 2**64 - 1) | st.integers(0, 20)))


class _Gen:
    """Source for one function: nat and bool variables, conditions, loops, calls."""

    def __init__(self, draw: st.DrawFn, index: int, arity: list[int]) -> None:
        self.draw = draw
        self.index = index
        self.arity = arity
        self.vars = [f"p{i}" for i in range(arity[index])]
        self.flags: list[str] = []  # bool variables
        self.fresh = 0

    def name(self) -> str:
        self.fresh += 1
        return f"v{self.fresh}"

    def expr(self, depth: int = 0) -> str:
        draw = self.draw
        choice = draw(st.integers(0, 9 if depth < 2 else 2))
        if choice == 0 or not self.vars:
            return draw(nat_literal())
        if choice <= 2:
            return draw(st.sampled_from(self.vars))
        if choice <= 7:
            op = draw(st.sampled_from(ARITH))
            return f"({self.expr(depth + 1)} {op} {self.expr(depth + 1)})"
        return self.call(depth)

    def call(self, depth: int) -> str:
        """A call of a later function, or of this one with a smaller first argument."""
        later = list(range(self.index + 1, len(self.arity)))
        recurse = self.index == 0  # only f0 starts with a guard on p0
        if not later and not recurse:
            return self.draw(nat_literal())
        if later and not (recurse and self.draw(st.booleans())):
            callee = self.draw(st.sampled_from(later))
            args = [self.expr(depth + 1) for _ in range(self.arity[callee])]
            return f"f{callee}({', '.join(args)})"
        rest = [self.expr(depth + 1) for _ in range(self.arity[self.index] - 1)]
        return f"f{self.index}({', '.join(['p0 / 2', *rest])})"

    def cond(self) -> str:
        draw = self.draw
        base = f"{self.expr(1)} {draw(st.sampled_from(ORDER))} {self.expr(1)}"
        shape = draw(st.integers(0, 4))
        if shape == 1:
            return f"not ({base})"
        if shape == 2:
            return f"{base} and {self.expr(1)} {draw(st.sampled_from(ORDER))} {self.expr(1)}"
        if shape == 3 and self.flags:
            flag = draw(st.sampled_from(self.flags))
            return f"not {flag}" if draw(st.booleans()) else f"{flag} or {base}"
        return base

    def scoped(self, depth: int) -> list[str]:
        """A nested block: what it declares is not visible after it."""
        saved = list(self.vars), list(self.flags)
        lines = self.block(depth)
        self.vars, self.flags = saved
        return lines

    def block(self, depth: int) -> list[str]:
        lines = []
        for _ in range(self.draw(st.integers(1, 4))):
            kind = self.draw(st.integers(0, 6 if depth < 2 else 2))
            if kind <= 1 or not self.vars:
                name = self.name()
                lines.append(f"let {name} = {self.expr()}")
                self.vars.append(name)
            elif kind == 2:
                lines.append(f"{self.draw(st.sampled_from(self.vars))} = {self.expr()}")
            elif kind == 3:
                then, other = self.scoped(depth + 1), self.scoped(depth + 1)
                lines.append(
                    f"if {self.cond()} {{ {' '.join(then)} }} else {{ {' '.join(other)} }}"
                )
            elif kind == 4:
                counter = self.name()
                bound = self.draw(st.integers(0, 30))
                body = self.scoped(depth + 1)
                lines.append(
                    f"let {counter} = 0 while {counter} < {bound} "
                    f"{{ {' '.join(body)} {counter} += 1 }}"
                )
            elif kind == 5:
                lines.append(f"if {self.cond()} {{ return {self.expr()} }}")
            else:
                name = self.name()
                lines.append(f"let {name} = {self.cond()}")
                self.flags.append(name)
        return lines

    def function(self) -> str:
        params = ", ".join(f"p{i}" for i in range(self.arity[self.index]))
        body = self.block(0)
        guard = f"if p0 == 0 {{ return {self.draw(nat_literal())} }}" if self.index == 0 else ""
        return f"fn f{self.index}({params}) {{ {guard} {' '.join(body)} return {self.expr()} }}"


@st.composite
def pure_programs(draw: st.DrawFn) -> str:
    count = draw(st.integers(1, 3))
    arity = [draw(st.integers(1, 3)) for _ in range(count)]
    functions = [_Gen(draw, index, arity).function() for index in range(count)]
    args = ", ".join(draw(nat_literal()) for _ in range(arity[0]))
    return "\n".join([*functions, f"main {{ return f0({args}) }}"])


def check_pure_program(source: str, fuel: int) -> None:
    program = compile_source(source, "random.avm")
    off, on = Interpreter(program, "off"), Interpreter(program, "on")
    full = run_main(off, fuel)
    assert run_main(on, fuel) == full, source
    for budget in {full[-1] // 3, full[-1] - 1}:
        assert run_main(on, budget) == run_main(off, budget), (source, budget)


SLOW_EXAMPLES = [HealthCheck.too_slow, HealthCheck.data_too_large]  # each compiles with LLVM


@settings(max_examples=30, deadline=None, suppress_health_check=SLOW_EXAMPLES)
@given(pure_programs())
def test_random_pure_programs_agree(source: str) -> None:
    check_pure_program(source, 20_000)


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=SLOW_EXAMPLES)
@given(pure_programs())
def test_many_random_pure_programs_agree(source: str) -> None:
    check_pure_program(source, 200_000)


def test_generated_programs_reach_native_code() -> None:
    """A sample program of the generator's shape runs natively (so agreeing means something)."""
    source = (
        "fn f0(p0, p1) { if p0 == 0 { return 1 } let v1 = p1 * 3 "
        "let v2 = 0 while v2 < 9 { v1 = v1 + f1(v2) v2 += 1 } return v1 - f0(p0 / 2, p1) }\n"
        "fn f1(p0) { return p0 % 4 }\nmain { return f0(300, 18446744073709551615) }"
    )
    assert native_functions(compile_source(source, "sample.avm")) == ["f0", "f1", "main"]
    check_pure_program(source, 20_000)
