"""Compiler and loader limits (issue 16): the compiler stays near-linear in program size,
every limit of the `.tape` format is a clear error in `avmc check` and `avmc compile`,
`avm run` of a source file verifies what it compiled, the verifier refuses effects in pure
functions, and a node refuses an upgrade that changes a field's type."""

from __future__ import annotations

import base64
import sys
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner

import avmc.compiler
from avm_vm.cli import main as avm_main
from avm_vm.diagnostics import DiagnosticError
from avm_vm.format.bytecode import decode, encode
from avm_vm.format.opcodes import Op
from avm_vm.format.program import Function, FunctionKind, Program
from avm_vm.format.verify import MAX_DEPTH, MAX_REGISTERS
from avm_vm.node.directory import Directory
from avm_vm.node.engine import Engine, LoadError
from avm_vm.runtime.core import Runtime, RuntimeOptions
from avmc.cli import main as avmc_main
from avmc.compiler import build, compile_path, compile_source
from avmc.lower import lower
from avmc.parser import parse
from avmc.passes import optimize
from avmc.regalloc import allocate_program
from avmc.types import infer_program_types

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(ROOT / "bench"))
from genprog import long_behavior  # noqa: E402


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- scaling


def allocation_peak(clauses: int) -> int:
    """Peak bytes the register allocator holds for a behavior of ``clauses`` clauses."""
    ir = infer_program_types(optimize(lower(parse(long_behavior(clauses), "b.avm"), "b.avm")))
    tracemalloc.start()
    try:
        allocate_program(ir)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_register_allocation_memory_grows_linearly() -> None:
    # Liveness sets used to be bitsets over every register of the function, one per block:
    # quadratic (4x the clauses took 8.5x the memory here, and 3.2 GB at 30k clauses).
    # Memory is deterministic, so the ratio needs no slack for a loaded machine.
    small, large = allocation_peak(400), allocation_peak(1600)
    assert large / small < 6, (small, large)


# --------------------------------------------------------------------------- format limits


def params_source(count: int) -> str:
    names = ", ".join(f"p{i}" for i in range(count))
    return f"fn f({names}) {{ return p0 }}\n"


@pytest.mark.parametrize("command", ["check", "compile"])
def test_too_many_parameters_is_a_located_error(tmp_path: Path, command: str) -> None:
    source = write(tmp_path, "wide.avm", params_source(MAX_REGISTERS + 1))
    result = CliRunner().invoke(avmc_main, [command, str(source)])
    assert result.exit_code == 1, result.output
    assert f"{source}:1:1: error: function f has 65536 parameters, more than the 65535" in (
        result.stderr
    )
    assert "Traceback" not in result.output
    assert not (tmp_path / "wide.tape").exists()


def test_the_largest_parameter_count_compiles(tmp_path: Path) -> None:
    source = write(tmp_path, "widest.avm", params_source(MAX_REGISTERS))
    program = compile_path(source)
    assert program.function_named("f").nparams == MAX_REGISTERS  # type: ignore[union-attr]


@pytest.mark.slow
@pytest.mark.parametrize("command", ["check", "compile"])
def test_too_many_live_values_is_a_located_error(tmp_path: Path, command: str) -> None:
    items = ", ".join(f"y + {i}" for i in range(MAX_REGISTERS + 1))
    source = write(tmp_path, "live.avm", f"fn g(y) {{ return [{items}] }}\n")
    result = CliRunner().invoke(avmc_main, [command, str(source)])
    assert result.exit_code == 1, result.output
    assert f"{source}:1:1: error: function g needs 65538 registers" in result.stderr
    assert "Traceback" not in result.output


def test_running_out_of_memory_is_a_diagnostic(monkeypatch: pytest.MonkeyPatch) -> None:
    def exhausted(source: str, filename: str) -> None:
        raise MemoryError

    monkeypatch.setattr(avmc.compiler, "parse", exhausted)
    with pytest.raises(DiagnosticError, match=r"out of memory compiling the program \(parse\)"):
        build("main { return 1 }", "m.avm")


def test_folding_never_builds_a_constant_deeper_than_the_format_allows() -> None:
    lets = "".join(f"  let a{i + 1} = [a{i}]\n" for i in range(MAX_DEPTH + 10))
    source = f"main {{\n  let a0 = [1]\n{lets}  return a{MAX_DEPTH + 10}\n}}\n"
    program = decode(encode(build(source, "deep.avm").program))
    value = Runtime(program).run_main()
    depth = 0
    while value != 1:
        (value,) = value
        depth += 1
    assert depth == MAX_DEPTH + 11


def test_folding_stays_small_when_a_string_doubles() -> None:
    lets = "".join(f"  let s{i + 1} = s{i} ++ s{i}\n" for i in range(20))
    source = f'main {{\n  let s0 = "abcdefgh"\n{lets}  return s20\n}}\n'
    program = build(source, "double.avm").program
    assert len(encode(program)) < 2**21  # the 8 MiB string is built at run time, not stored
    assert Runtime(program).run_main() == "abcdefgh" * 2**20


# --------------------------------------------------------------------------- avm run


def test_avm_run_of_source_verifies_what_it_compiled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A compiler that emitted broken code must be caught before anything runs."""
    real = avmc.compiler.assemble

    def broken(ir: object) -> Program:
        program = real(ir)  # type: ignore[arg-type]
        main = program.functions[program.main]  # type: ignore[index]
        cut = Function(
            main.name, main.kind, main.nparams, main.reg_types, main.code[:-1], main.lines[:-1]
        )
        functions = list(program.functions)
        functions[program.main] = cut  # type: ignore[index]
        return Program(program.source_name, program.constants, tuple(functions), (), program.main)

    monkeypatch.setattr(avmc.compiler, "assemble", broken)
    source = write(tmp_path, "two.avm", "main {\n  let x = 1\n  return x + 1\n}\n")
    result = CliRunner().invoke(avm_main, ["run", str(source)])
    assert result.exit_code == 1
    assert "function 'main' can run off its end" in result.stderr
    assert result.stdout == ""


# --------------------------------------------------------------------------- pure functions


def test_compiled_pure_functions_never_perform_effects() -> None:
    checked = 0
    for path in sorted(EXAMPLES.glob("*.avm")):
        for function in compile_path(path).functions:
            if function.kind is FunctionKind.PURE:
                assert all(instr[0] is not Op.EFFECT for instr in function.code), function.name
                checked += 1
    assert checked


def test_an_instruction_in_a_fn_is_a_check_error(tmp_path: Path) -> None:
    source = write(tmp_path, "impure.avm", "fn f(x) { return now() }\n")
    result = CliRunner().invoke(avmc_main, ["check", str(source)])
    assert result.exit_code == 1
    assert "impure.avm:1:18: error:" in result.stderr


# --------------------------------------------------------------------------- upgrades

COUNTER = """behavior Counter {
  field count = 0
  field name = "c"
  on ["inc"] { count += 1; return count }
}
"""


def engine_with(source: str) -> Engine:
    engine = Engine(RuntimeOptions(machine="a", node_prefix=7), Directory("a", 7))
    tape = encode(compile_source(source, "counter.avm"))
    engine.apply({"k": "load", "t": 0, "tape": base64.b64encode(tape).decode(), "upgrade": False})
    return engine


def test_upgrade_that_changes_a_field_type_is_refused() -> None:
    engine = engine_with(COUNTER)
    retyped = encode(compile_source(COUNTER.replace("count = 0", 'count = ""'), "v2.avm"))
    program = engine.check_load(retyped, upgrade=True)  # it would load...
    with pytest.raises(LoadError, match="field count changes type from nat to str"):
        engine.check_field_types(program)  # ...but `avm load` refuses it before logging it
    # A log written before the rule holds such an upgrade: it replays as it ran.
    event = {"k": "load", "t": 0, "tape": base64.b64encode(retyped).decode(), "upgrade": True}
    engine.apply(event)


def test_upgrade_that_keeps_field_types_is_accepted() -> None:
    engine = engine_with(COUNTER)
    same_kinds = COUNTER.replace("count = 0", "count = 5").replace('"c"', '"d"')
    new_code = same_kinds.replace("count += 1", "count += 2")
    program = engine.check_load(encode(compile_source(new_code, "v2.avm")), upgrade=True)
    engine.check_field_types(program)
    assert program.behaviors[0].name == "Counter"
