"""Micro-benchmarks of the VM on hand-assembled code, against the same code in CPython.

Run from the repository root: ``PYTHONPATH=. python bench/vm_micro.py [n]`` (n for fib,
default 25). Prints the best time of each side over interleaved runs and their ratio; one
run, no thresholds.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from avm_vm.format.opcodes import Op, RegType
from avm_vm.format.program import Function, FunctionKind, Program
from avm_vm.vm.interpreter import Fuel, Interpreter

ANY, NAT, BOOL = RegType.ANY, RegType.NAT, RegType.BOOL
REPEAT = 15


def _function(name: str, kind: FunctionKind, nparams: int, types: tuple, code: tuple) -> Function:
    return Function(name, kind, nparams, types, code, ((0, 0),) * len(code))


def fib_program() -> Program:
    """fib(n) as the compiler would emit it: constants 0 -> 2, 1 -> 1."""
    code = (
        (Op.LOADK, 1, 0),
        (Op.LT, 2, 0, 1),
        (Op.JMPF, 2, 4),
        (Op.RET, 0),
        (Op.LOADK, 1, 1),
        (Op.SUB, 3, 0, 1),
        (Op.CALL, 3, 0, (3,)),
        (Op.LOADK, 1, 0),
        (Op.SUB, 4, 0, 1),
        (Op.CALL, 4, 0, (4,)),
        (Op.ADD, 3, 3, 4),
        (Op.RET, 3),
    )
    fib = _function("fib", FunctionKind.PURE, 1, (ANY, NAT, BOOL, ANY, ANY), code)
    return Program("fib.avm", (2, 1), (fib,), (), None)


def loop_program() -> Program:
    """s = 0; i = 0; while i < n { s = s + i; i = i + 1 }; return s  (constants 0, 1)."""
    code = (
        (Op.LOADK, 1, 0),
        (Op.LOADK, 2, 0),
        (Op.LOADK, 4, 1),
        (Op.LT, 3, 2, 0),
        (Op.JMPF, 3, 8),
        (Op.ADD, 1, 1, 2),
        (Op.ADD, 2, 2, 4),
        (Op.JMP, 3),
        (Op.RET, 1),
    )
    loop = _function("loop", FunctionKind.PURE, 1, (ANY, NAT, NAT, BOOL, NAT), code)
    return Program("loop.avm", (0, 1), (loop,), (), None)


def py_fib(n: int) -> int:
    return n if n < 2 else py_fib(n - 1) + py_fib(n - 2)


def py_loop(n: int) -> int:
    s = 0
    i = 0
    while i < n:
        s = s + i
        i = i + 1
    return s


def _best_pair(first: Callable[[], object], second: Callable[[], object]) -> tuple[float, float]:
    """The best time of each over interleaved runs, so a busy machine hurts both alike."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(REPEAT):
        for fn, seen in zip((first, second), times, strict=True):
            start = time.perf_counter()
            fn()
            seen.append(time.perf_counter() - start)
    return min(times[0]), min(times[1])


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 25
    fib = Interpreter(fib_program())
    loop = Interpreter(loop_program())
    big = 10**9
    assert fib.call_function(0, (n,), Fuel(big)) == py_fib(n)
    assert loop.call_function(0, (1_000_000,), Fuel(big)) == py_loop(1_000_000)
    rows = [
        (f"fib({n})", lambda: fib.call_function(0, (n,), Fuel(big)), lambda: py_fib(n)),
        (
            "loop(1e6)",
            lambda: loop.call_function(0, (1_000_000,), Fuel(big)),
            lambda: py_loop(1_000_000),
        ),
    ]
    for name, vm_run, py_run in rows:
        vm_time, py_time = _best_pair(vm_run, py_run)
        print(
            f"{name:10} vm {vm_time:.3f}s  cpython {py_time:.3f}s  ratio {vm_time / py_time:.1f}x"
        )


if __name__ == "__main__":
    main()
