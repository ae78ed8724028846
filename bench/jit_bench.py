"""JIT benchmark: our VM with and without native code against CPython, Lua 5.4 and LuaJIT.

    pip install -e '.[bench]' && python bench/jit_bench.py

Three pure workloads, the same algorithm in every language:

- fib: recursive fib(30);
- loop: 10,000,000 iterations of ``acc = (acc + i * 7) % 1000003``;
- primes: the number of primes below 200,000 by trial division by odd numbers up to the
  square root (no lists: every language runs the same integer loops).

Each runs on the VM (``--jit off``), on the VM with the JIT (``--jit on``: the compile time is
reported on its own, with whether it came from the on-disk cache, and the run is timed after
it), in CPython, and in Lua 5.4 and LuaJIT through `lupa`. Then a message-passing section:
PingPong (nested calls) and a counter object (calls from a loop), in calls per second with
jit off, auto and on, to show what the effect round trip costs. Every figure comes from this
one run; nothing is extrapolated.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from vm_bench import COUNTER  # bench/ is on the path when a bench script runs

from avm_vm.format.program import Program
from avm_vm.jit.analysis import plan_program
from avm_vm.jit.engine import JitEngine
from avm_vm.runtime.core import Runtime, RuntimeOptions
from avmc.compiler import compile_source

ROOT = Path(__file__).resolve().parents[1]

AVM = {
    "fib": """
fn fib(n) { if n < 2 { return n } return fib(n - 1) + fib(n - 2) }
main { return fib(%d) }
""",
    "loop": """
fn spin(n) {
  let i = 0 let acc = 0
  while i < n { acc = (acc + i * 7) %% 1000003 i += 1 }
  return acc
}
main { return spin(%d) }
""",
    "primes": """
fn count_primes(limit) {
  if limit < 3 { return 0 }
  let count = 1 let n = 3
  while n < limit {
    let prime = true let d = 3
    while d * d <= n {
      if n %% d == 0 { prime = false break }
      d += 2
    }
    if prime { count += 1 }
    n += 2
  }
  return count
}
main { return count_primes(%d) }
""",
}

LUA = {
    "fib": """
function(n)
  local function fib(n) if n < 2 then return n end return fib(n - 1) + fib(n - 2) end
  return fib(n)
end""",
    "loop": """
function(n)
  local i, acc = 0, 0
  while i < n do acc = (acc + i * 7) % 1000003; i = i + 1 end
  return acc
end""",
    "primes": """
function(limit)
  if limit < 3 then return 0 end
  local count, n = 1, 3
  while n < limit do
    local prime, d = true, 3
    while d * d <= n do
      if n % d == 0 then prime = false; break end
      d = d + 2
    end
    if prime then count = count + 1 end
    n = n + 2
  end
  return count
end""",
}


def fib_py(n: int) -> int:
    return n if n < 2 else fib_py(n - 1) + fib_py(n - 2)


def spin_py(n: int) -> int:
    i = acc = 0
    while i < n:
        acc = (acc + i * 7) % 1000003
        i += 1
    return acc


def count_primes_py(limit: int) -> int:
    if limit < 3:
        return 0
    count, n = 1, 3
    while n < limit:
        prime, d = True, 3
        while d * d <= n:
            if n % d == 0:
                prime = False
                break
            d += 2
        if prime:
            count += 1
        n += 2
    return count


PYTHON = {"fib": fib_py, "loop": spin_py, "primes": count_primes_py}
SIZES = {"fib": 30, "loop": 10_000_000, "primes": 200_000}


def best(run: Callable[[], object]) -> tuple[float, object]:
    """The time of one run; the best of three when a run is short enough to repeat."""
    times = []
    value: object = None
    for _ in range(3):
        start = time.perf_counter()
        value = run()
        times.append(time.perf_counter() - start)
        if times[0] > 1.0:
            break
    return min(times), value


def lua_runtimes() -> dict[str, object]:
    found = {}
    for name, module in (("Lua 5.4", "lua54"), ("LuaJIT", "luajit21")):
        try:
            lupa = __import__(f"lupa.{module}", fromlist=["LuaRuntime"])
        except ImportError:
            continue
        found[name] = lupa.LuaRuntime()
    return found


def compile_per_function(program: Program) -> list[tuple[str, float]]:
    """Each function with a plan compiled alone, without the cache: LLVM's own time."""
    engine = JitEngine(None)
    plans = plan_program(program)
    return [
        (program.functions[f].name, engine.compile(program, plans, [f]).seconds)
        for f in sorted(plans)
    ]


def bench_pure(name: str, luas: dict[str, object]) -> None:
    size = SIZES[name]
    program = compile_source(AVM[name] % size, f"{name}.avm")
    print(f"\n{name}({size:,})")
    vm_time, expected = best(Runtime(program, RuntimeOptions(jit="off")).run_main)
    began = time.perf_counter()
    runtime = Runtime(program, RuntimeOptions(jit="on"))
    setup = time.perf_counter() - began
    jit = runtime.interpreters[0].jit_state
    assert jit is not None and jit.modules, "nothing was compiled"
    cached = all(module.from_cache for module in jit.modules)
    jit_time, value = best(runtime.run_main)
    assert value == expected, (value, expected)
    rows = [("VM (jit off)", vm_time), ("VM + JIT (jit on)", jit_time)]
    py_time, value = best(lambda: PYTHON[name](size))
    assert value == expected, (value, expected)
    rows.append(("CPython", py_time))
    for lua_name, lua in luas.items():
        function = lua.eval(LUA[name])  # type: ignore[attr-defined]
        lua_time, value = best(lambda function=function: function(size))
        assert value == expected, (lua_name, value, expected)
        rows.append((lua_name, lua_time))
    for label, seconds in rows:
        print(f"  {label:<18} {seconds:9.4f} s")
    source = "from the cache" if cached else "compiled"
    print(
        f"  JIT setup {setup:.3f} s before the run (plans + LLVM, {source}: "
        f"{jit.compile_seconds:.3f} s)"
    )
    per_function = ", ".join(f"{f} {s * 1000:.1f} ms" for f, s in compile_per_function(program))
    print(f"  compile per function without the cache: {per_function}")
    times = dict(rows)
    print(f"  VM / JIT        = {vm_time / jit_time:8.1f}x")
    if "LuaJIT" in times:
        print(f"  JIT / LuaJIT    = {jit_time / times['LuaJIT']:8.2f}x")
    if "Lua 5.4" in times:
        print(f"  JIT / Lua 5.4   = {jit_time / times['Lua 5.4']:8.2f}x")
    print(f"  JIT / CPython   = {jit_time / py_time:8.3f}x")


def pingpong_source(rounds: int) -> str:
    source = (ROOT / "examples" / "pingpong.avm").read_text(encoding="utf-8")
    start = 'return call(p, ["Ping", 0, 3, q])'
    assert start in source
    return source.replace(start, f'return call(p, ["Ping", 0, {rounds}, q])')


def bench_messages(label: str, source: str, calls: int) -> None:
    program = compile_source(source, "messages.avm")
    print(f"\n{label}: {calls:,} calls")
    rates = {}
    for mode in ("off", "auto", "on"):
        began = time.perf_counter()
        runtime = Runtime(program, RuntimeOptions(jit=mode, record_trace=False))
        setup = time.perf_counter() - began
        seconds, _ = best(runtime.run_main) if mode != "auto" else timed_once(runtime)
        native = [proc.name for proc in runtime.interpreters[0].procs if proc.native is not None]
        rates[mode] = calls / seconds
        print(
            f"  jit {mode:<4} {seconds:7.3f} s  {rates[mode]:11,.0f} calls/s  "
            f"(setup {setup:.3f} s; native: {', '.join(native) or 'none'})"
        )
    print(f"  on / off = {rates['on'] / rates['off']:.2f}x calls/s")


def timed_once(runtime: Runtime) -> tuple[float, object]:
    """Auto mode's first run is the one that pays for tiering up: time exactly that run."""
    start = time.perf_counter()
    value = runtime.run_main()
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(AVM), help="run one pure workload only")
    args = parser.parse_args()
    luas = lua_runtimes()
    if len(luas) < 2:
        print("(lupa with Lua 5.4 and LuaJIT not installed: pip install -e '.[bench]')")
    for name in [args.only] if args.only else list(AVM):
        bench_pure(name, luas)
    if args.only:
        return
    print("\nMessage passing (every call is an effect: native code exits to the runtime)")
    bench_messages("PingPong (nested calls, spec §14.1)", pingpong_source(20_000), 20_001)
    bench_messages("counter object (calls from a loop in main)", COUNTER % 50_000, 50_001)


if __name__ == "__main__":
    main()
