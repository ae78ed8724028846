"""Compile a generated 10,000-line program and report lines per second for each stage.

    python bench/compile_bench.py [--lines N] [--repeat R]

Stages: parse (Lark LALR + AST), check (names, arity, patterns, ...), lower (AST → Tape IR),
passes (folding, copy propagation, DCE, type inference, register allocation) and emit
(assembly + bytecode encoding with verification). The grammar is loaded before timing; each
stage's figure is the best of R runs.
"""

from __future__ import annotations

import argparse

from genprog import generate  # bench/ is on sys.path when this script runs

from avmc.compiler import STAGES, build
from avmc.parser import parse


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


if __name__ == "__main__":
    main()
