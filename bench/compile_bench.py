"""Compile a generated 10,000-line program and report lines per second for each stage.

    python bench/compile_bench.py [--lines N] [--repeat R]

Stages: parse (Lark LALR + AST), check (names, arity, patterns, ...), lower (AST → Tape IR),
passes (folding, copy propagation, DCE, type inference, register assignment) and emit
(assembly, which renames registers to frame registers, + bytecode encoding with
verification). The grammar is loaded before timing; each
stage's figure is the best of R runs. The yardstick, timed in the same run: CPython's own
``compile()`` of a generated Python program of as many lines and of the same shape (functions
with arithmetic, branches, loops and a match; classes with a few methods). The last line is
the figure to quote.
"""

from __future__ import annotations

import argparse
import time

from genprog import generate  # bench/ is on sys.path when this script runs

from avmc.compiler import STAGES, build
from avmc.parser import parse

GOAL = 25_000  # lines per second, end to end (issue 14)


def _python_function(i: int) -> list[str]:
    return [
        f"def step{i}(a, b):",
        f"    x = a + {i % 97}",
        "    y = b * 2 + 1",
        "    if x > y and not (x == 0):",
        "        x = x - y",
        "    else:",
        "        y = y + x % 3",
        f'    items = [x, y, {i}, "s{i}", (x,), (x, y)]',
        "    total = 0",
        "    for v in [x, y, 3]:",
        "        total += v % 7",
        "    while y > 100:",
        "        y = y // 2",
        "    match items:",
        "        case [p, q, *_]:",
        "            total = total + len(items)",
        "        case _:",
        "            total = 0",
        "    return total + y",
        "",
    ]


def _python_class(i: int) -> list[str]:
    return [
        f"class Obj{i}:",
        "    count = 0",
        '    name = "obj"',
        "    def inc(self, n):",
        "        if n > 0:",
        f"            self.count += step{i}(n, {i % 13})",
        "        return self.count",
        "    def get(self):",
        "        return [self.name, self.count]",
        "    def ping(self, other):",
        '        return other.call(["get"])',
    ]


def python_program(lines: int) -> str:
    """A Python program of about ``lines`` lines, shaped like `genprog.generate`'s."""
    out: list[str] = ["# generated yardstick program"]
    i = 0
    while len(out) < lines:
        out.extend(_python_function(i))
        out.extend(_python_class(i))
        i += 1
    return "\n".join(out) + "\n"


def cpython_seconds(source: str, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        compile(source, "generated.py", "exec")
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    source = generate(args.lines)
    lines = source.count("\n")
    parse("main {}", "<warm-up>")  # load the grammar outside the timed region

    best: dict[str, float] = {}
    for _ in range(args.repeat):
        timings = build(source, "generated.avm").timings
        for stage in STAGES:
            best[stage] = min(best.get(stage, float("inf")), timings[stage])

    total = sum(best.values())
    print(f"compiled a generated program of {lines} lines (best of {args.repeat})")
    print(f"{'stage':<8} {'seconds':>9} {'lines/s':>12} {'share':>6}")
    for stage in STAGES:
        seconds = best[stage]
        print(f"{stage:<8} {seconds:>9.3f} {lines / seconds:>12,.0f} {seconds / total:>6.0%}")
    print(f"{'total':<8} {total:>9.3f} {lines / total:>12,.0f}")

    python = python_program(lines)
    python_lines = python.count("\n")
    cpython = python_lines / cpython_seconds(python, args.repeat)
    ours = lines / total
    print(f"CPython compile() of a {python_lines}-line Python program: {cpython:,.0f} lines/s")
    print(
        f"compile: {ours:,.0f} lines/s, {ours / cpython:.1%} of CPython compile() "
        f"(goal {GOAL:,} lines/s: {ours / GOAL:.0%} of it)"
    )


if __name__ == "__main__":
    main()
