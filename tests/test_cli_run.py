"""`avm run` (avm_vm/cli.py): output, trace options, exit codes, and error reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from avm_vm.cli import main
from avm_vm.format.bytecode import encode
from avmc.compiler import compile_source

PINGPONG = Path(__file__).parents[1] / "examples" / "pingpong.avm"

FAILING = """behavior B {
  on _ { return 1 }
}
main {
  let b = create B
  return destroy(obj:9)
}
"""


def _invoke(*args: str):
    return CliRunner().invoke(main, ["run", *args])


@pytest.fixture
def tape(tmp_path: Path) -> Path:
    path = tmp_path / "pingpong.tape"
    path.write_bytes(encode(compile_source(PINGPONG.read_text(), str(PINGPONG))))
    return path


def test_run_tape_prints_only_the_result(tape):
    result = _invoke(str(tape))
    assert result.exit_code == 0
    assert result.stdout == 'just just just just ["done", 3]\n'
    assert result.stderr == ""


def test_run_avm_source_compiles_first():
    result = _invoke(str(PINGPONG))
    assert result.exit_code == 0
    assert result.stdout == 'just just just just ["done", 3]\n'


def test_trace_goes_to_stderr_in_text(tape):
    result = _invoke(str(tape), "--trace")
    assert result.stdout == 'just just just just ["done", 3]\n'
    assert (
        result.stderr.splitlines()[4]
        == '[4] called obj:1 with ["Pong", 3, 3, obj:1] -> ["done", 3]'
    )


def test_a_trace_is_kept_only_when_asked_for(tape, tmp_path, monkeypatch):
    """A run keeps its trace only for --trace or --trace-out (keeping one costs a
    call-heavy run about a fifth of its time); the result is the same either way."""
    import avm_vm.cli

    kept = []

    class Watched(avm_vm.cli.Runtime):  # type: ignore[misc]
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            kept.append(self.trace.recording)

    monkeypatch.setattr(avm_vm.cli, "Runtime", Watched)
    results = [
        _invoke(str(tape)),
        _invoke(str(tape), "--trace"),
        _invoke(str(tape), "--trace-out", str(tmp_path / "t.txt")),
    ]
    assert kept == [False, True, True]
    assert {result.stdout for result in results} == {'just just just just ["done", 3]\n'}
    assert (tmp_path / "t.txt").read_text().splitlines()[4].startswith("[4] called obj:1")


def test_trace_json_and_duct(tape):
    result = _invoke(str(tape), "--trace", "--trace-format", "json")
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    assert len(entries) == 8 and entries[-1]["duct"] == [[0, "ping", 0]]
    result = _invoke(str(tape), "--trace", "--duct")
    assert result.stderr.splitlines()[-1].endswith("{main > #0 obj:0 ping}")


def test_trace_mermaid_to_a_file(tape, tmp_path):
    out = tmp_path / "calls.mmd"
    result = _invoke(str(tape), "--trace-format", "mermaid", "--trace-out", str(out))
    assert result.exit_code == 0 and result.stderr == ""
    assert out.read_text().startswith("sequenceDiagram\n")


def test_runtime_error_reports_kind_location_source_and_duct(tmp_path):
    source = tmp_path / "fails.avm"
    source.write_text(FAILING)
    result = _invoke(str(source))
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"{source}:6:")
    assert "error: ObjNotFound: object not found: obj:9" in lines[0]
    assert lines[1].strip() == "return destroy(obj:9)"
    assert "while running main" in result.stderr
    assert "duct: main" in result.stderr
    assert "Traceback" not in result.stderr


def test_error_in_a_callee_names_object_and_behavior(tmp_path):
    source = tmp_path / "spin.avm"
    source.write_text(
        "behavior Spin { on _ { while true { } } }\nmain { return call(create Spin, 0) }\n"
    )
    result = _invoke(str(source), "--fuel", "1000")
    assert result.exit_code == 1
    assert "FuelExhausted" in result.stderr
    assert "while running obj:0 (behavior Spin)" in result.stderr
    assert "duct: main > #0 obj:0 Spin" in result.stderr


def test_compile_error_shows_diagnostics(tmp_path):
    source = tmp_path / "bad.avm"
    source.write_text("main { let = }\n")
    result = _invoke(str(source))
    assert result.exit_code == 1
    assert "bad.avm:1:" in result.stderr and "error" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_tape_is_refused_without_traceback(tmp_path):
    bad = tmp_path / "bad.tape"
    bad.write_bytes(b"not a tape file at all")
    result = _invoke(str(bad))
    assert result.exit_code == 1
    assert "bad.tape" in result.stderr
    assert "Traceback" not in result.stderr


def test_truncated_tape_is_refused(tape):
    tape.write_bytes(tape.read_bytes()[:40])
    result = _invoke(str(tape))
    assert result.exit_code == 1 and "Traceback" not in result.stderr


def test_program_without_main(tmp_path):
    source = tmp_path / "lib.avm"
    source.write_text("fn f(x) { return x }\n")
    result = _invoke(str(source))
    assert result.exit_code == 1
    assert "has no main program" in result.stderr


def test_usage_errors_exit_2(tape):
    assert _invoke().exit_code == 2
    assert _invoke(str(tape), "--fuel", "zero").exit_code == 2
    assert _invoke(str(tape), "--trace-format", "xml").exit_code == 2
    assert _invoke("/no/such/file.tape").exit_code == 2


def test_profile_r_and_options(tmp_path):
    source = tmp_path / "opts.avm"
    source.write_text(
        'behavior B { on _ { set_state([1]); fail "x" } }\n'
        "main { let b = create B; call(b, 0)\n"
        "  return [now(), current_machine(), unsafe reflect(b)] }\n"
    )
    result = _invoke(str(source), "--profile", "r", "--now", "42", "--machine", "m9", "--trace")
    assert result.exit_code == 0
    assert result.stdout == '[42, "m9", just [obj:0, "m9", nothing, nothing]]\n'
    assert "[1] state updated" not in result.stderr  # profile R drops the failed callee's trace


def test_version_names_the_package_the_tape_format_and_the_wire_protocol():
    from importlib.metadata import version

    from avm_vm.format.bytecode import VERSION
    from avm_vm.node.auth import PROTOCOL_VERSION

    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        f"avm {version('avm-toolchain')} (package avm-toolchain)",
        f".tape format version {VERSION}",
        f"wire protocol version {PROTOCOL_VERSION}",
    ]


def test_log_prints_on_stderr_as_it_runs_and_leaves_stdout_to_the_result(tmp_path):
    source = tmp_path / "log.avm"
    source.write_text('main {\n  log([1, "a"])\n  log(2)\n  return 5\n}\n')
    result = _invoke(str(source))
    assert result.exit_code == 0
    assert result.stdout == "5\n"
    assert result.stderr.splitlines() == [
        'log: [1, "a"]  (log.avm:2:3)',
        "log: 2  (log.avm:3:3)",
    ]


def test_the_node_commands_load_only_when_used() -> None:
    """`avm run` does not import the networking code; `avm --help` still lists the node
    commands, whose names the lazy group knows without importing them."""
    from avm_vm.cli import NODE_COMMAND_NAMES
    from avm_vm.node.cli import COMMANDS

    assert {command.name for command in COMMANDS} == NODE_COMMAND_NAMES
    probe = (
        "import sys, avm_vm.cli; print('avm_vm.node.cli' in sys.modules, 'asyncio' in sys.modules)"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert loaded.stdout.split() == ["False", "False"], loaded.stderr
    listed = subprocess.run(
        [sys.executable, "-c", "from avm_vm.cli import main; main()", "--help"],
        capture_output=True,
        text=True,
    )
    assert all(name in listed.stdout for name in NODE_COMMAND_NAMES), listed.stdout
