"""`avm run FILE.tape` loads only what running a program needs: no compiler, no JIT backend,
no event loop, no trace renderers (start-up time is paid by every run; bench/startup_bench.py
measures it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from avm_vm.format.bytecode import encode
from avmc.compiler import compile_source

# Packages a plain run must not import, with why each would be a waste.
NOT_NEEDED = {
    "avmc": "the compiler: a .tape is already compiled",
    "llvmlite": "the JIT backend: nothing is hot at start-up",
    "asyncio": "the event loop: only the node servers use it",
    "avm_vm.trace.text": "the text trace renderer: no --trace",
    "avm_vm.trace.jsonl": "the JSON trace renderer: no --trace",
    "avm_vm.trace.mermaid": "the Mermaid trace renderer: no --trace",
}

# Runs `avm run FILE [OPTIONS]` in a fresh interpreter, then reports the result and every
# module loaded.
PROBE = """
import json, sys
from click.testing import CliRunner
from avm_vm.cli import main
result = CliRunner().invoke(main, ["run", *sys.argv[1:]])
print(json.dumps({"output": result.output, "code": result.exit_code, "modules": list(sys.modules)}))
"""


def _run(tmp_path: Path, *options: str) -> tuple[int, str, set[str]]:
    """Exit code, output and loaded modules of `avm run` of a trivial program."""
    tape = tmp_path / "trivial.tape"
    tape.write_bytes(encode(compile_source("main { return 1 }", "trivial.avm")))
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(tape), *options],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(done.stdout)
    return report["code"], report["output"], set(report["modules"])


def test_running_a_tape_imports_only_what_it_needs(tmp_path: Path) -> None:
    code, output, loaded = _run(tmp_path)
    assert (code, output) == (0, "1\n")
    wasted = {
        name: why
        for name, why in NOT_NEEDED.items()
        if any(module == name or module.startswith(name + ".") for module in loaded)
    }
    assert not wasted


def test_the_probe_sees_what_a_trace_loads(tmp_path: Path) -> None:
    """The check above can fail: asking for a trace does load its renderer."""
    code, _, loaded = _run(tmp_path, "--trace")
    assert code == 0
    assert "avm_vm.trace.text" in loaded
