"""How compile time and memory grow with the length of one behavior.

    python bench/compile_scaling.py [--clauses N] [--factor F]

Compiles (as `avmc compile` does: parse, check, lower, passes, assemble, encode with
verification) a generated behavior of N clauses and one of F*N clauses, each in a fresh
process, and prints wall and CPU seconds and peak memory for each, then the ratios (CPU
time is the steadier figure on a shared machine). A near-linear
compiler gives ratios near F; a quadratic one near F**2 (before the liveness sets became
sparse, 4x the clauses took over 8x the memory). Memory is the process's peak resident
size minus that of a process that only loaded the compiler, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Runs in the child: compile ``clauses`` clauses (0: only load the compiler) and report.
_CHILD = """
import json, resource, sys, time
sys.path.insert(0, {here!r})
from genprog import long_behavior
from avmc.compiler import build
from avmc.parser import parse
parse("main {{}}", "warm-up.avm")
clauses = {clauses}
start, cpu = time.perf_counter(), time.process_time()
if clauses:
    build(long_behavior(clauses), "big.avm")
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"seconds": seconds, "cpu": cpu, "peak_mb": peak_kb / 1024}}))
"""


def measure(clauses: int) -> dict[str, float]:
    code = _CHILD.format(here=str(HERE), clauses=clauses)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=3600
    )
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clauses", type=int, default=2000)
    parser.add_argument("--factor", type=int, default=4)
    args = parser.parse_args()

    floor = measure(0)["peak_mb"]
    small, large = measure(args.clauses), measure(args.clauses * args.factor)
    print(f"compiler loaded: {floor:.0f} MB (subtracted below)")
    print(f"{'clauses':>8} {'seconds':>9} {'cpu s':>9} {'memory MB':>10}")
    for clauses, result in ((args.clauses, small), (args.clauses * args.factor, large)):
        memory = result["peak_mb"] - floor
        print(f"{clauses:>8} {result['seconds']:>9.2f} {result['cpu']:>9.2f} {memory:>10.0f}")
    wall, cpu = (large[key] / small[key] for key in ("seconds", "cpu"))
    memory_ratio = (large["peak_mb"] - floor) / max(small["peak_mb"] - floor, 1.0)
    print(
        f"{args.factor}x the clauses: {wall:.1f}x the time ({cpu:.1f}x the CPU time), "
        f"{memory_ratio:.1f}x the memory (linear {args.factor}x, quadratic {args.factor**2}x)"
    )


if __name__ == "__main__":
    main()
