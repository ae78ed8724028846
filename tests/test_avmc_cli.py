"""The avmc command line: outputs and exit codes (0 success, 1 compile error, 2 usage)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from avm_vm.format.bytecode import load
from avmc.cli import main

GOOD = "fn double(x) { return x * 2 }\nmain { return double(21) }\n"
BAD = "main {\n  let x = \n}\n"


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_compile_writes_a_loadable_tape_beside_the_source(tmp_path: Path) -> None:
    source = write(tmp_path, "good.avm", GOOD)
    result = invoke("compile", str(source))
    assert result.exit_code == 0, result.output
    program = load(tmp_path / "good.tape")
    assert program.function_named("double") is not None


def test_compile_error_exits_1_with_location_and_caret(tmp_path: Path) -> None:
    source = write(tmp_path, "bad.avm", BAD)
    result = invoke("compile", str(source), "-o", str(tmp_path / "bad.tape"))
    assert result.exit_code == 1
    assert f"{source}:3:1: error: expected an expression" in result.stderr
    assert "    }\n    ^" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "bad.tape").exists()


def test_emit_ir_prints_the_tape_ir(tmp_path: Path) -> None:
    result = invoke("compile", str(write(tmp_path, "good.avm", GOOD)), "--emit", "ir")
    assert result.exit_code == 0
    assert "pure double(r0) {" in result.stdout
    assert "mul" in result.stdout


def test_check_reports_warnings_and_succeeds(tmp_path: Path) -> None:
    source = write(tmp_path, "warn.avm", "main {\n  return 1\n  return 2\n}\n")
    result = invoke("check", str(source))
    assert result.exit_code == 0
    assert f"{source}:3:3: warning: unreachable code" in result.stderr


def test_check_fails_on_errors(tmp_path: Path) -> None:
    result = invoke("check", str(write(tmp_path, "u.avm", "main { return nope }\n")))
    assert result.exit_code == 1
    assert "nope" in result.stderr


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert invoke("compile", str(tmp_path / "missing.avm")).exit_code == 2
    assert invoke("compile").exit_code == 2
    source = write(tmp_path, "good.avm", GOOD)
    assert invoke("compile", str(source), "--emit", "wasm").exit_code == 2
    assert invoke("cfg", str(source), "--function", "nope").exit_code == 2
    assert invoke("frobnicate").exit_code == 2


def test_disasm_refuses_a_damaged_tape_with_exit_1(tmp_path: Path) -> None:
    source = write(tmp_path, "good.avm", GOOD)
    assert invoke("compile", str(source)).exit_code == 0
    tape = tmp_path / "good.tape"
    data = bytearray(tape.read_bytes())
    data[-1] ^= 0xFF
    tape.write_bytes(bytes(data))
    result = invoke("disasm", str(tape))
    assert result.exit_code == 1
    assert "content hash mismatch" in result.stderr
    assert "Traceback" not in result.output


def test_cfg_renders_mermaid_and_dot(tmp_path: Path) -> None:
    source = write(tmp_path, "good.avm", GOOD)
    mermaid = invoke("cfg", str(source), "--function", "double")
    assert mermaid.exit_code == 0
    assert "flowchart TD\n" in mermaid.stdout
    assert "fn double" in mermaid.stdout and "main" not in mermaid.stdout
    dot = invoke("cfg", str(source), "--format", "dot", "--function", "main")
    assert dot.exit_code == 0
    assert dot.stdout.startswith("digraph")
    assert "fn double" not in dot.stdout


def test_version_names_the_package_and_the_tape_format_it_produces() -> None:
    from importlib.metadata import version

    from avm_vm.format.bytecode import VERSION

    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        f"avmc {version('avm-toolchain')} (package avm-toolchain)",
        f"produces .tape format version {VERSION}",
    ]
