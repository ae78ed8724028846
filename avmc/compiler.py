"""The compiler pipeline: source text → AST → checks → Tape IR → passes → `Program`.

Each stage is its own module; this one only strings them together, times them (the compile
benchmark reports lines per second per stage) and turns any failure into diagnostics. No
input makes the compiler raise anything but `DiagnosticError`: a program that breaks a limit
of the `.tape` format (docs/bytecode.md) is an error at its source location where there is
one, and every compilation ends by encoding the program, which runs the verifier.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TypeVar

from avm_vm.diagnostics import Diagnostic, DiagnosticError, Severity, error
from avm_vm.format.bytecode import encode
from avm_vm.format.program import Program
from avm_vm.format.verify import MAX_REGISTERS, TapeError
from avmc import ast
from avmc.assemble import assemble
from avmc.checks import check
from avmc.ir import IrFunction, IrProgram
from avmc.lower import lower
from avmc.parser import parse
from avmc.passes import optimize
from avmc.regalloc import allocate_program, assign_registers
from avmc.source import read_source
from avmc.types import infer_program_types

T = TypeVar("T")

# The stages as the benchmark reports them, in pipeline order.
STAGES = ("parse", "check", "lower", "passes", "emit")


@dataclass
class Compilation:
    source: str
    filename: str
    module: ast.Module
    # After the passes and type inference, over virtual registers, each function with its
    # register allocation.
    typed_ir: IrProgram
    program: Program
    tape: bytes  # the program's verified `.tape` encoding
    warnings: list[Diagnostic]
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage

    @cached_property
    def ir(self) -> IrProgram:
        """The IR after the passes, over frame registers (built when first asked for: the
        assembler renames registers itself)."""
        return allocate_program(self.typed_ir)


def build(
    source: str, filename: str, *, optimize_ir: bool = True, tests: bool = False
) -> Compilation:
    """Compile ``source``; raises DiagnosticError listing every error (and the warnings).
    Its `test` items are compiled in only with ``tests`` (for `avm test`)."""
    # The compiler's structures are large and next to free of cycles; the cycle collector
    # rescans them again and again as they grow (half the CPU time of a 16,000-clause
    # behavior, growing faster than the program) and frees almost nothing, so pause it.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _build(source, filename, optimize_ir, tests)
    finally:
        if collecting:
            gc.enable()


def _build(source: str, filename: str, optimize_ir: bool, tests: bool) -> Compilation:
    timings: dict[str, float] = {}
    module = _timed(timings, "parse", lambda: parse(source, filename))
    diagnostics = _timed(timings, "check", lambda: check(module))
    errors = [d for d in diagnostics if d.severity is Severity.ERROR]
    if errors:
        raise DiagnosticError(diagnostics)
    warnings = [d for d in diagnostics if d.severity is not Severity.ERROR]
    ir = _timed(timings, "lower", lambda: lower(module, filename, tests=tests))

    def run_passes() -> IrProgram:
        # The lowered IR is this build's own, needed no more once optimised: no copy.
        typed = infer_program_types(optimize(ir, in_place=True) if optimize_ir else ir)
        for function in typed.functions:
            function.allocation = assign_registers(function)
        _check_registers(typed)
        return typed

    typed = _timed(timings, "passes", run_passes)

    def emit() -> tuple[Program, bytes]:
        program = assemble(typed)
        try:
            return program, encode(program)
        except TapeError as exc:  # a limit no earlier check caught: still no traceback
            where = f"{exc.where}: " if exc.where else ""
            message = f"the compiled program is not a valid .tape program: {where}{exc.reason}"
            raise DiagnosticError(error(message)) from None

    program, tape = _timed(timings, "emit", emit)
    return Compilation(source, filename, module, typed, program, tape, warnings, timings)


def _check_registers(program: IrProgram) -> None:
    """A function needing more frame registers than a `.tape` function holds (too many
    parameters, or too many values live at once) is an error at the function."""
    errors = [
        error(
            f"function {function.name} needs {_frame_registers(function)} registers, more than "
            f"the {MAX_REGISTERS} a .tape function can hold: split it into smaller functions "
            "or keep fewer values live at once",
            function.span,
        )
        for function in program.functions
        if _frame_registers(function) > MAX_REGISTERS
    ]
    if errors:
        raise DiagnosticError(errors)


def _frame_registers(function: IrFunction) -> int:
    allocation = function.allocation
    return len(function.reg_types) if allocation is None else len(allocation[1])


def build_path(path: Path | str, *, optimize: bool = True, tests: bool = False) -> Compilation:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DiagnosticError(error(f"cannot read {path}: {exc.strerror}")) from exc
    filename = str(path)
    return build(read_source(data, filename), filename, optimize_ir=optimize, tests=tests)


def compile_source(source: str, filename: str) -> Program:
    return build(source, filename).program


def compile_path(path: Path | str) -> Program:
    return build_path(path).program


def _timed(timings: dict[str, float], stage: str, run: Callable[[], T]) -> T:
    start = time.perf_counter()
    try:
        return run()
    except RecursionError:
        raise DiagnosticError(error("program nests too deeply to compile")) from None
    except MemoryError:
        raise DiagnosticError(error(f"out of memory compiling the program ({stage})")) from None
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start
