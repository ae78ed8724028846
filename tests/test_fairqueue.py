"""The node's job queue serves its sources in turn, each in its own order."""

from __future__ import annotations

import pytest

from avm_vm.node.fairqueue import FairQueue


def test_sources_take_turns_and_keep_their_order() -> None:
    queue: FairQueue[str] = FairQueue()
    for n in range(3):
        queue.append("flood", f"f{n}")
    queue.append("single", "s0")
    queue.append("flood", "f3")
    assert len(queue) == 5 and sorted(queue) == ["f0", "f1", "f2", "f3", "s0"]
    taken = [queue.popleft() for _ in range(5)]
    assert taken == ["f0", "s0", "f1", "f2", "f3"]  # the single call waits for one, not four
    assert len(queue) == 0 and not queue
    with pytest.raises(IndexError):
        queue.popleft()


def test_clear_forgets_everything() -> None:
    queue: FairQueue[int] = FairQueue()
    queue.append(None, 1)
    queue.clear()
    queue.append("a", 2)
    assert queue.popleft() == 2 and len(queue) == 0
