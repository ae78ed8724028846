"""Fixtures shared by the suites that start nodes as real processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from node_harness import Nodes


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
