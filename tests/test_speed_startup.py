"""Start-up of `avm run` (bench/startup_bench.py measures it): beyond what test_startup.py
keeps out, the default JIT mode (auto) sets up tiering without the compile thread's queue,
which only a function that gets hot needs."""

from __future__ import annotations

from pathlib import Path

from test_startup import _run


def test_a_short_run_in_auto_mode_loads_tiering_but_not_its_compile_queue(
    tmp_path: Path,
) -> None:
    code, output, loaded = _run(tmp_path, "--jit", "auto")
    assert (code, output) == (0, "1\n")
    assert "avm_vm.jit.tiering" in loaded  # the check below looks at a run that tiers
    assert "queue" not in loaded


def test_the_probe_sees_the_queue_of_a_compiling_run(tmp_path: Path) -> None:
    """The check above can fail: a run that compiles (jit on) does start the queue."""
    code, _, loaded = _run(tmp_path, "--jit", "on")
    assert code == 0
    assert "queue" in loaded
