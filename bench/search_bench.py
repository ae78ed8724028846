"""Search at commit (docs/semantics.md, "Nondeterminism"): combinations tried per second.

    python bench/search_bench.py [--values K] [--jit off|on]

The searching program chooses three values from ``[1..K]`` inside a transaction and requires
a combination that only the very last one satisfies, so the runtime tries all K^3 of them:
each try undoes the last one's effects and re-runs the body from its start. The yardstick,
timed in the same run, is the same enumeration written as three nested loops that test the
same requirement: what the combinations cost without re-running anything. The last line is
the figure to quote:

    search: N combinations/s, R of nested loops
"""

from __future__ import annotations

import argparse
import time

from avm_vm.api import World

SEARCH = """
main {{
  let vs = {values}
  atomic {{
    let a = choose(vs)
    let b = choose(vs)
    let c = choose(vs)
    require(a == {k} and b == {k} and c == {k})
    return [a, b, c]
  }}
}}
"""

LOOPS = """
main {{
  let vs = {values}
  for a in vs {{
    for b in vs {{
      for c in vs {{
        if a == {k} and b == {k} and c == {k} {{ return [a, b, c] }}
      }}
    }}
  }}
  return nothing
}}
"""


def seconds(source: str, jit: str, expected: list[int]) -> float:
    world = World.from_source(source, "search_bench.avm", jit=jit, fuel=10**12)
    start = time.perf_counter()
    answer = world.main()
    elapsed = time.perf_counter() - start
    if answer != expected:
        raise SystemExit(f"wrong answer {answer!r}, expected {expected!r}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=20, help="values per choice (K)")
    parser.add_argument("--jit", choices=["off", "on"], default="off")
    args = parser.parse_args()
    k = args.values
    values = "[" + ", ".join(str(v) for v in range(1, k + 1)) + "]"
    combinations = k**3
    expected = [k, k, k]
    search = seconds(SEARCH.format(values=values, k=k), args.jit, expected)
    loops = seconds(LOOPS.format(values=values, k=k), args.jit, expected)
    search_rate, loop_rate = combinations / search, combinations / loops
    print(f"{combinations:,} combinations (three choices of {k} values), --jit {args.jit}")
    print(f"  search at commit      {search:8.3f} s  {search_rate:12,.0f} combinations/s")
    print(f"  nested loops          {loops:8.3f} s  {loop_rate:12,.0f} combinations/s")
    ratio = search_rate / loop_rate
    print(f"search: {search_rate:,.0f} combinations/s, {ratio:.3f} of nested loops")


if __name__ == "__main__":
    main()
