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
import os
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


def run_source(source: str, **options: int | str | bool) -> tuple[float, object]:
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
    CALL) and in CPython; each the best of three. With the JIT, native code makes such a
    call_pure a guarded direct call of the native callee, so both loops run alike: jit on
    from the start; jit auto once ``main`` is hot (about 10,000 iterations on the VM) and
    its code is ready (the disk cache has it from the second run on)."""

    def rates(count: int, jit: str, call: str, expected: int) -> dict[str, float]:
        """Calls/s of the loop making ``call`` by call_pure and by a CALL."""
        function, argument = call.split(" ")
        found = {}
        for label, callee in (
            ("call_pure", f'call_pure("{function}", [{argument}])'),
            ("CALL", f"{function}({argument})"),
        ):
            source = PURE_LOOP.replace("CALLEE", callee) % count
            seconds = min(run_pure_loop(source, jit, expected) for _ in range(3))
            found[label] = count / seconds
            print(f"  VM, jit {jit:4}, {label:9}  {found[label]:14,.0f} calls/s")
        return found

    print(f"\ncall_pure of a small function, {calls:,} calls (goal {CALL_PURE_GOAL:,} calls/s)")
    for jit in ("off", "auto", "on"):
        small = rates(calls, jit, "double i", pure_loop_py(calls))
        print(
            f"    jit {jit:4}: call_pure {small['call_pure'] / CALL_PURE_GOAL:6.2f}x the goal, "
            f"{small['call_pure'] / small['CALL']:5.2f}x a CALL"
        )
    seconds = min(timed(lambda: pure_loop_py(calls))[0] for _ in range(3))
    print(f"  CPython (dict lookup + call)  {calls / seconds:14,.0f} calls/s")
    # A callee with work in it, native with the JIT whichever way it is called.
    heavy = calls // 200
    print(f"call_pure of fib(15), {heavy:,} calls")
    for jit in ("off", "on"):
        work = rates(heavy, jit, "fib 15", heavy * fib_py(15))
        print(f"    jit {jit:4}: call_pure {work['call_pure'] / work['CALL']:5.2f}x a CALL")


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
    """Object calls of the counter from main, each figure the best of three, against the
    same loop in CPython (the goal of issue 14 is for a quiet machine). The rows per jit
    mode run as `avm run` runs a program, keeping no trace (the events still count); one
    more row keeps the trace, as `avm run --trace` and the Python API do."""
    print(f"\ncounter object: {calls + 1:,} calls from main (goal {COUNTER_GOAL:,} calls/s)")
    py_seconds = min(timed(lambda: counter_py(calls))[0] for _ in range(3))
    for jit in ("off", "auto", "on"):
        seconds = min(run_counter(calls, jit=jit, record_trace=False) for _ in range(3))
        rate = (calls + 1) / seconds
        print(
            f"  VM, jit {jit:4} (avm run)  {rate:12,.0f} calls/s   "
            f"{rate / COUNTER_GOAL:4.2f}x the goal, {seconds / py_seconds:5.1f}x CPython's time"
        )
    seconds = min(run_counter(calls, jit="auto", record_trace=True) for _ in range(3))
    rate = (calls + 1) / seconds
    print(
        f"  VM, jit auto, trace kept (avm run --trace)  {rate:12,.0f} calls/s   "
        f"{rate / COUNTER_GOAL:4.2f}x the goal"
    )
    print(f"  CPython (method found by message)  {(calls + 1) / py_seconds:12,.0f} calls/s")


def run_counter(calls: int, **options: int | str | bool) -> float:
    seconds, value = run_source(COUNTER % calls, **options)
    assert value == calls + 1, value
    return seconds


def bench_transactions(objects: int, transactions: int) -> float:
    runtime = Runtime(compile_source(POPULATE % objects, "populate.avm"))
    runtime.run_main()
    program = compile_source(TRANSACTIONS % transactions, "tx.avm")
    runtime.load(program)
    seconds, _ = timed(lambda: runtime.run_main(program))
    return transactions / seconds


def peak_kib() -> int:
    """This process's peak RSS in KiB: VmHWM, not getrusage, since Linux carries the
    parent's peak into ru_maxrss across exec (a child would report its parent's size)."""
    status = Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


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
    print(f"{rounds + 1} {seconds} {peak_kib()}")


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


LIST_SUMS = {
    "recursive": """
fn sum(xs) { match xs { [] => { return 0 } [x, ..rest] => { return x + sum(rest) } } }
""",
    "for": """
fn sum(xs) { let s = 0  for x in xs { s += x }  return s }
""",
}
LIST_MAIN = """
fn build(n) {
  let xs = [0, 1, 2, 3, 4, 5, 6, 7]
  while len(xs) < n { xs = xs ++ xs }
  return xs[0:n]
}
main { return sum(build(%d)) }
"""
LIST_GOAL_MIB = 50  # peak RSS of the whole process (issue 14)


def list_child(kind: str, items: int) -> None:
    """Run in a fresh process so its peak memory is its own."""
    program = compile_source(LIST_SUMS[kind] + LIST_MAIN % items, "sum.avm")
    # The value budget counts what every drop builds, view or copy: n²/2 items.
    runtime = Runtime(program, RuntimeOptions(max_value_bytes=8 * items * items))
    seconds, value = timed(runtime.run_main)
    assert value == items // 8 * 28 + sum(range(items % 8)), value
    print(f"{seconds} {peak_kib()}")


def list_sum(kind: str, items: int, view_min: str | None = None) -> tuple[float, float]:
    """Seconds and peak MiB of a child process summing ``items`` items; ``view_min``: the
    child's AVM_LIST_VIEW_MIN (a huge one copies every slice, as before list views)."""
    env = dict(os.environ)
    if view_min is not None:
        env["AVM_LIST_VIEW_MIN"] = view_min
    out = subprocess.run(
        [sys.executable, __file__, "--list-child", kind, str(items)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout.split()
    seconds, peak_mib = float(out[0]), int(out[1]) / 1024
    label = f"{kind}{'' if view_min is None else ', every slice copied'}"
    print(f"  {label:30} {items:>7,} items: {seconds:6.2f} s, peak RSS {peak_mib:6.0f} MiB")
    return seconds, peak_mib


def bench_list_recursion(items: int, larger: int, copies: bool) -> None:
    """`sum` over a list as `[x, ..rest] => x + sum(rest)` against a `for` loop (issue 14),
    each in a fresh process; then a larger list, to show the time grows linearly."""
    print(f"\nsum over a list (goal: linear time and memory: under {LIST_GOAL_MIB} MB)")
    print(f"  (the default call depth, {RuntimeOptions().max_frames:,} frames, covers both)")
    recursive, peak = list_sum("recursive", items)
    loop, _ = list_sum("for", items)
    if copies:
        list_sum("recursive", items, view_min=str(10**9))
    big, big_peak = list_sum("recursive", larger)
    scale = larger / items
    print(f"    recursive / for loop: {recursive / loop:5.2f}x the time")
    print(
        f"    {scale:.0f}x the items: {big / recursive:5.1f}x the time (linear: {scale:.0f}x, "
        f"quadratic: {scale * scale:.0f}x), {big_peak - peak:+.0f} MiB"
    )
    met = "met" if peak < LIST_GOAL_MIB else "NOT met"
    print(f"    goal {met}: {peak:.0f} MiB peak for {items:,} items")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--pingpong-child", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--list-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pingpong_child:
        pingpong_child(*args.pingpong_child)
        return
    if args.list_child:
        list_child(args.list_child[0], int(args.list_child[1]))
        return

    bench_fib(25)
    bench_counter(100_000)
    bench_call_pure(200_000)
    bench_startup(21)
    bench_list_recursion(20_000, 80_000, copies=not args.quick)
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
