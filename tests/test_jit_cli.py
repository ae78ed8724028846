"""`avmc compile --emit llvm` and `avm run --jit`: outputs and exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from avm_vm import cli as avm_cli
from avmc import cli as avmc_cli

SOURCE = """
fn fib(n) { if n < 2 { return n } return fib(n - 1) + fib(n - 2) }
fn shout(s) { return s ++ "!" }
main { return [fib(15), shout("hi")] }
"""


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "prog.avm"
    path.write_text(SOURCE)
    return path


def avmc(*args: str):
    return CliRunner().invoke(avmc_cli.main, list(args))


def test_emit_llvm_prints_each_function(source: Path) -> None:
    result = avmc("compile", str(source), "--emit", "llvm")
    assert result.exit_code == 0, result.output
    assert "; function fib\n" in result.stdout
    assert 'define i32 @"avm_entry_0"' in result.stdout
    assert "; function shout has no native code: no block starts natively; the VM runs it" in (
        result.stdout
    )


def test_emit_llvm_for_one_function(source: Path, tmp_path: Path) -> None:
    result = avmc("compile", str(source), "--emit", "llvm", "--function", "fib")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("; function fib\n")
    assert "shout" not in result.stdout
    out = tmp_path / "fib.ll"
    written = avmc("compile", str(source), "--emit", "llvm", "--function", "fib", "-o", str(out))
    assert written.exit_code == 0, written.output
    assert out.read_text() == result.stdout


def test_emit_llvm_for_a_function_without_a_plan(source: Path) -> None:
    result = avmc("compile", str(source), "--emit", "llvm", "--function", "shout")
    assert result.exit_code == 0
    assert result.stdout.startswith("; function shout has no native code")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--emit", "llvm", "--function", "nope"], "no function 'nope' (have: fib, shout, main)"),
        (["--function", "fib"], "--function only applies to --emit llvm"),
    ],
)
def test_function_usage_errors(source: Path, args: list[str], message: str) -> None:
    result = avmc("compile", str(source), *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("mode", ["off", "auto", "on"])
def test_avm_run_in_every_jit_mode(source: Path, mode: str) -> None:
    result = CliRunner().invoke(avm_cli.main, ["run", str(source), "--jit", mode])
    assert result.exit_code == 0, result.output
    assert result.stdout == '[610, "hi!"]\n'
