"""Failpoints: named places in the commit protocol where a node kills itself, so that tests
can crash a node at an exact step (docs/transactions.md, "Crash tests"); and places where
it stops and waits, so that a test can kill it there itself, knowing what it was doing.

``AVM_FAILPOINTS=name[,name...]`` in a node's environment arms them; a node reaching an
armed one logs it and sends itself SIGKILL, as a power cut would (`reach`), or waits
`HOLD_SECONDS` (`hold`). Unset (always, outside tests) each is one set lookup.
"""

from __future__ import annotations

import asyncio
import os
import signal

from avm_vm.node.logs import logger

POINTS = frozenset(
    {
        "coordinator-before-prepare",  # the commit parked; no participant was asked yet
        "coordinator-before-decision",  # every vote is in; the decision is not logged
        "coordinator-after-decision",  # the decision is durable; no participant heard it
        "participant-after-prepare",  # its prepare is durable; the vote did not leave
        "participant-before-apply",  # the decision came; it is not applied yet
        "participant-after-apply",  # the decision is applied and durable; no ack left
    }
)
# Where a task of the node waits when armed: the rest of the node goes on serving.
HOLDS = frozenset(
    {
        "solver-before-batch",  # the intent solver chose a batch and has not run it yet
    }
)
HOLD_SECONDS = 600.0  # long enough for any test to do its part meanwhile
ARMED = frozenset(name for name in os.environ.get("AVM_FAILPOINTS", "").split(",") if name)
if ARMED - POINTS - HOLDS:
    unknown = sorted(ARMED - POINTS - HOLDS)
    raise SystemExit(f"AVM_FAILPOINTS names unknown failpoints: {unknown}")


def reach(name: str) -> None:
    """Die here if ``name`` is armed."""
    if name in ARMED:
        logger.critical("failpoint %s reached: killing this node", name)
        os.kill(os.getpid(), signal.SIGKILL)


async def hold(name: str) -> None:
    """Wait here (`HOLD_SECONDS`) if ``name`` is armed."""
    if name in ARMED:
        logger.warning("failpoint %s reached: holding", name)
        await asyncio.sleep(HOLD_SECONDS)
