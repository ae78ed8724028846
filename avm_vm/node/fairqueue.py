"""Work waiting for the VM, served fairly: one job from each source in turn.

A client pipelining thousands of calls must not make another client's single call wait
behind all of them (docs/wire.md, "Limits"). Jobs keep their order within a source (a
connection, or a peer node); across sources the queue takes one from each in turn.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

Job = TypeVar("Job")


class FairQueue(Generic[Job]):
    def __init__(self) -> None:
        self.queues: dict[Hashable, deque[Job]] = {}
        self.turns: deque[Hashable] = deque()  # sources with jobs, next to serve first
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Job]:
        for queue in self.queues.values():
            yield from queue

    def append(self, source: Hashable, job: Job) -> None:
        queue = self.queues.get(source)
        if queue is None:
            queue = self.queues[source] = deque()
            self.turns.append(source)
        queue.append(job)
        self.count += 1

    def popleft(self) -> Job:
        """The oldest job of the source whose turn it is (IndexError when empty)."""
        source = self.turns.popleft()
        queue = self.queues[source]
        job = queue.popleft()
        if queue:
            self.turns.append(source)
        else:
            del self.queues[source]
        self.count -= 1
        return job

    def clear(self) -> None:
        self.queues.clear()
        self.turns.clear()
        self.count = 0
