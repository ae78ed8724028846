"""Runtime benchmarks: calls/s (object calls, call_pure), transactions/s as the store grows,
fib on the VM vs peers, and the start-up of `avm run` as a whole process (startup_bench.py).

    python bench/vm_bench.py            # everything (PingPong 1,000,000 takes about a minute)
    python bench/vm_bench.py --quick    # skip the 1,000,000-round PingPong

Every figure comes from this one run; ratios compare workloads measured side by side.
Peers: CPython (the same algorithm in plain Python) and Lua 5.4 through `lupa`
(`pip install -e '.[bench]'`).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from avm_vm.runtime.core import Runtime, RuntimeOptions
from avmc.compiler import compile_source

ROOT = Path(__file__).resolve().parents[1]

FIB = """
fn fib(n) { if n < 2 { return n } return fib(n - 1) + fib(n - 2) }
main { return fib(%d) }
"""

COUNTER = """
behavior Counter {
  field count = 0
  on ["inc"] { count += 1; return count }
}
main {
  let c = create Counter
  let i = 0
  while i < %d { call(c, ["inc"]); i += 1 }
  return call!(c, ["inc"])
}
"""

POPULATE = """
behavior Counter {
  field count = 0
  on ["inc"] { count += 1; return count }
}
main {
  let i = 0
  while i < %d { create Counter; i += 1 }
  return i
}
"""

TRANSACTIONS = """
extern behavior Counter
main {
  let c = create Counter
  let i = 0
  while i < %d {
    atomic { call(c, ["inc"]) }
    i += 1
  }
  return i
}
"""


PURE_LOOP = """
fn double(x) { return x * 2 }
fn fib(n) { if n < 2 { return n } return fib(n - 1) + fib(n - 2) }
main {
  let i = 0
  let s = 0
  while i < %d { s += CALLEE; i += 1 }
  return s
}
"""
CALL_PURE_GOAL = 3_000_000  # calls/s (issue 14)
COUNTER_GOAL = 450_000  # calls/s (issue 14)


def timed(run) -> tuple[float, object]:
    start = time.perf_counter()
    value = run()
    return time.perf_counter() - start, value


def run_source(source: str, **options: int | str) -> tuple[float, object]:
    runtime = Runtime(compile_source(source, "bench.avm"), RuntimeOptions(**options))
    return timed(runtime.run_main)


def fib_py(n: int) -> int:
    return n if n < 2 else fib_py(n - 1) + fib_py(n - 2)


def fib_lua(n: int) -> tuple[float, int] | None:
    try:
        from lupa import lua54
    except ImportError:
        return None
    lua = lua54.LuaRuntime()
    fib = lua.eval(
        "function(n) local function f(n) if n < 2 then return n end "
        "return f(n - 1) + f(n - 2) end return f(n) end"
    )
    return timed(lambda: fib(n))


def bench_fib(n: int) -> None:
    vm_time, vm_value = run_source(FIB % n)
    py_time, py_value = timed(lambda: fib_py(n))
    assert vm_value == py_value, (vm_value, py_value)
    print(f"\nrecursive fib({n}) as a pure function")
    print(f"  VM       {vm_time:8.3f} s")
    print(f"  CPython  {py_time:8.3f} s   VM / CPython = {vm_time / py_time:6.1f}x")
    lua = fib_lua(n)
    if lua is None:
        print("  Lua 5.4  (lupa not installed)")
    else:
        lua_time, lua_value = lua
        assert lua_value == py_value
        print(f"  Lua 5.4  {lua_time:8.3f} s   VM / Lua     = {vm_time / lua_time:6.1f}x")


def double_py(x: int) -> int:
    return x * 2


def pure_loop_py(n: int) -> int:
    """The call_pure loop in CPython: the function found by name, its arguments a list."""
    functions = {"double": double_py}
    s = i = 0
    while i < n:
        s += functions["double"](*[i])
        i += 1
    return s


def bench_call_pure(calls: int) -> None:
    """`call_pure("double", [i])` in a loop, against the same loop with a direct call (a
    CALL) and in CPython; each the best of three. (With jit auto, a function runs on
    frames until the JIT has decided about it, after about 10,000 calls.)"""
    print(f"\ncall_pure of a small function, {calls:,} calls (goal {CALL_PURE_GOAL:,} calls/s)")
    expected = pure_loop_py(calls)
    for jit in ("off", "auto", "on"):
        for label, callee in (("call_pure", 'call_pure("double", [i])'), ("CALL", "double(i)")):
            source = PURE_LOOP.replace("CALLEE", callee) % calls
            seconds = min(run_pure_loop(source, jit, expected) for _ in range(3))
            print(f"  VM, jit {jit:4}, {label:9}  {calls / seconds:12,.0f} calls/s")
    seconds = min(timed(lambda: pure_loop_py(calls))[0] for _ in range(3))
    print(f"  CPython (dict lookup + call)  {calls / seconds:12,.0f} calls/s")
    # A callee with work in it runs as native code when the JIT compiled it, called by
    # call_pure as by a CALL.
    heavy = calls // 200
    expected = heavy * fib_py(15)
    print(f"call_pure of fib(15), {heavy:,} calls: native when the JIT compiled it")
    for jit in ("off", "on"):
        for label, callee in (("call_pure", 'call_pure("fib", [15])'), ("CALL", "fib(15)")):
            source = PURE_LOOP.replace("CALLEE", callee) % heavy
            seconds = min(run_pure_loop(source, jit, expected) for _ in range(3))
            print(f"  VM, jit {jit:4}, {label:9}  {heavy / seconds:12,.1f} calls/s")


def run_pure_loop(source: str, jit: str, expected: int) -> float:
    seconds, value = run_source(source, jit=jit)
    assert value == expected, (value, expected)
    return seconds


def bench_startup(runs: int) -> None:
    """`avm run` of a trivial tape as a whole process, against `python -c pass`."""
    from startup_bench import GOAL_RATIO, measure

    avm_times, python_times = measure(runs)
    avm_ms, python_ms = statistics.median(avm_times), statistics.median(python_times)
    print(
        f"\nstart-up (medians of {runs} processes): avm run {avm_ms:.1f} ms, "
        f"python -c pass {python_ms:.1f} ms, ratio {avm_ms / python_ms:.2f} "
        f"(goal {GOAL_RATIO:.2f}: 50 ms against 22 ms)"
    )


class CounterPy:
    """The counter in CPython: its handler found by the message, its state a field."""

    def __init__(self) -> None:
        self.count = 0

    def inc(self) -> int:
        self.count += 1
        return self.count


def counter_py(calls: int) -> int:
    counter = CounterPy()
    handlers = {"inc": counter.inc}
    i = 0
    while i < calls:
        handlers[["inc"][0]]()
        i += 1
    return handlers["inc"]()


def bench_counter(calls: int) -> None:
    """Object calls of the counter from main, each jit mode the best of three, against the
    same loop in CPython (the goal of issue 14 is for a quiet machine)."""
    print(f"\ncounter object: {calls + 1:,} calls from main (goal {COUNTER_GOAL:,} calls/s)")
    for jit in ("off", "auto", "on"):
        seconds = min(run_counter(calls, jit) for _ in range(3))
        print(f"  VM, jit {jit:4}  {(calls + 1) / seconds:12,.0f} calls/s")
    seconds = min(timed(lambda: counter_py(calls))[0] for _ in range(3))
    print(f"  CPython (method found by message)  {(calls + 1) / seconds:12,.0f} calls/s")


def run_counter(calls: int, jit: str) -> float:
    seconds, value = run_source(COUNTER % calls, jit=jit)
    assert value == calls + 1, value
    return seconds


def bench_transactions(objects: int, transactions: int) -> float:
    runtime = Runtime(compile_source(POPULATE % objects, "populate.avm"))
    runtime.run_main()
    program = compile_source(TRANSACTIONS % transactions, "tx.avm")
    runtime.load(program)
    seconds, _ = timed(lambda: runtime.run_main(program))
    return transactions / seconds


def pingpong_child(rounds: int, max_depth: int) -> None:
    """Run in a fresh process so its peak memory is its own."""
    source = (
        (ROOT / "examples" / "pingpong.avm")
        .read_text()
        .replace('return call(p, ["Ping", 0, 3, q])', f'return call(p, ["Ping", 0, {rounds}, q])')
    )
    program = compile_source(source, "pingpong.avm")
    runtime = Runtime(program, RuntimeOptions(max_depth=max_depth, record_trace=False))
    seconds, _ = timed(runtime.run_main)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{rounds + 1} {seconds} {peak_kib}")


def bench_pingpong(rounds: int, max_depth: int) -> None:
    out = subprocess.run(
        [sys.executable, __file__, "--pingpong-child", str(rounds), str(max_depth)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    calls, seconds, peak_kib = int(out[0]), float(out[1]), int(out[2])
    print(
        f"  {rounds:>9,} rounds (nested, max depth {max_depth:,}): {seconds:7.2f} s, "
        f"{calls / seconds:9,.0f} calls/s, peak RSS {peak_kib / 1024:7.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--pingpong-child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pingpong_child:
        pingpong_child(*args.pingpong_child)
        return

    bench_fib(25)
    bench_counter(100_000)
    bench_call_pure(200_000)
    bench_startup(21)
    print("\nPingPong (each hop a call inside the previous call, spec §14.1)")
    bench_pingpong(100_000, RuntimeOptions().max_depth)
    if not args.quick:
        bench_pingpong(1_000_000, 1_100_000)
    print("\ntransactions (begin, one call, commit) as the store grows")
    # Best of three: a busy machine slows single runs by tens of percent.
    small = max(bench_transactions(1_000, 5_000) for _ in range(3))
    large = max(bench_transactions(100_000, 5_000) for _ in range(3))
    print(f"  store of   1,000 objects: {small:9,.0f} tx/s")
    print(
        f"  store of 100,000 objects: {large:9,.0f} tx/s   (ratio {small / large:.2f}: "
        "1.0 means the cost does not grow with the store)"
    )


if __name__ == "__main__":
    main()
