"""Fixtures shared by the suites: node processes, and a JIT compile thread left idle."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from node_harness import Nodes

from avm_vm.jit import tiering


@pytest.fixture(autouse=True)
def _compile_thread_idle() -> Iterator[None]:
    """After each test, wait for compilations it started in this process (auto mode
    compiles on a thread of its own), so they do not run on into a later test's timing."""
    yield
    assert tiering._compiler.idle(60), "a JIT compilation still runs 60 s after its test"


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Nodes]:
    """A group of node processes, all killed at teardown; their logs are printed, which
    pytest shows when the test failed."""
    cluster = Nodes(tmp_path)
    try:
        yield cluster
    finally:
        cluster.close()
        for node in cluster.started:
            print(node.log())
