"""The compiler pipeline: source text → AST → checks → Tape IR → passes → `Program`.

Each stage is its own module; this one only strings them together, times them (the compile
benchmark reports lines per second per stage) and turns any failure into diagnostics. No
input makes the compiler raise anything but `DiagnosticError`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from avm_vm.diagnostics import Diagnostic, DiagnosticError, Severity, error
from avm_vm.format.bytecode import encode
from avm_vm.format.program import Program
from avmc import ast
from avmc.assemble import assemble
from avmc.checks import check
from avmc.ir import IrProgram
from avmc.lower import lower
from avmc.parser import parse
from avmc.passes import optimize
from avmc.regalloc import allocate_program
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
    ir: IrProgram  # after the passes, over frame registers
    program: Program
    warnings: list[Diagnostic]
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage


def build(
    source: str, filename: str, *, optimize_ir: bool = True, emit_bytes: bool = False
) -> Compilation:
    """Compile ``source``; raises DiagnosticError listing every error (and the warnings)."""
    timings: dict[str, float] = {}
    module = _timed(timings, "parse", lambda: parse(source, filename))
    diagnostics = _timed(timings, "check", lambda: check(module))
    errors = [d for d in diagnostics if d.severity is Severity.ERROR]
    if errors:
        raise DiagnosticError(diagnostics)
    warnings = [d for d in diagnostics if d.severity is not Severity.ERROR]
    ir = _timed(timings, "lower", lambda: lower(module, filename))

    def run_passes() -> IrProgram:
        optimized = optimize(ir) if optimize_ir else ir
        return allocate_program(infer_program_types(optimized))

    ir = _timed(timings, "passes", run_passes)

    def emit() -> Program:
        program = assemble(ir)
        if emit_bytes:
            encode(program)
        return program

    program = _timed(timings, "emit", emit)
    return Compilation(source, filename, module, ir, program, warnings, timings)


def build_path(path: Path | str, *, optimize: bool = True) -> Compilation:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DiagnosticError(error(f"cannot read {path}: {exc.strerror}")) from exc
    filename = str(path)
    return build(read_source(data, filename), filename, optimize_ir=optimize)


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
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start
