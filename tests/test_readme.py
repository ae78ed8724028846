"""Every command block of the README runs as written (in a scratch directory holding the
examples), and prints what its comments promise.

The first block's second command (install the test extras, lint, run the tests) is what CI
runs, so this file does not run the test suite from inside itself; its first command
installs the package into a fresh virtual environment and runs an example (slow suite).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
BLOCK_SECONDS = 120

# What each usage block must print: the answers its comments name.
PROMISES = {
    1: [(ROOT / "examples" / "bank.expected").read_text().strip()],  # `avm run bank.tape`
    2: ['just just just just ["done", 3]', "peers: 1"],
    3: ["just 5", "snapshot at event", "match", "no problem found"],
    4: ['just ["refused", 500, "insufficient funds"]', "just 0", 'just ["done", 30]', "just 30"],
}


def _run(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a block with bash in its own process group, which is killed afterwards, so a
    node it started never outlives the test."""
    process = subprocess.Popen(
        ["bash", "-c", script],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=BLOCK_SECONDS)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def _scratch(tmp_path: Path) -> Path:
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    return tmp_path


def test_the_readme_has_its_blocks() -> None:
    assert len(BLOCKS) == 1 + len(PROMISES)
    first = BLOCKS[0].strip().splitlines()
    assert len(first) == 2
    assert first[1] == "pip install -e '.[test]' && ruff check . && python -m pytest"


@pytest.mark.parametrize("index", sorted(PROMISES))
def test_a_usage_block_runs_as_written(index: int, tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    result = _run(BLOCKS[index], _scratch(tmp_path), env)
    shown = f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    assert result.returncode == 0, shown
    assert "Traceback" not in result.stderr, shown
    for promise in PROMISES[index]:
        assert promise in result.stdout + result.stderr, shown


@pytest.mark.slow
def test_the_install_command_runs_as_written(tmp_path: Path) -> None:
    """`pip install .` into a fresh environment (the dependencies come from this one's
    site-packages, so nothing is downloaded but the build backend), then the example."""
    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True, system_site_packages=True)
    env = dict(os.environ)
    env["PATH"] = f"{environment / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PYTHONPATH", None)
    first = BLOCKS[0].strip().splitlines()[0]
    result = subprocess.run(
        ["bash", "-c", first.replace("/tmp/pingpong.tape", str(tmp_path / "pingpong.tape"))],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert '["done", 3]' in result.stdout
