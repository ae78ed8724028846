"""The real-process harness's own checks must be able to fail: `own_errors` finds a node's
reports of its own failures in both log formats."""

from __future__ import annotations

from node_harness import own_errors


def test_own_errors_finds_failures_in_stamped_and_bare_lines() -> None:
    log = "\n".join(
        [
            "2026-12-05T03:09:40.176Z ERROR avm.node: internal error in the vm: boom",
            "2026-12-05T03:09:40.177Z INFO avm.node: peer beta connected",
            "error cleaning up a connection",
            "2026-12-05T03:09:41.000Z WARNING avm.node: a call timed out",
        ]
    )
    assert own_errors(log) == [
        "2026-12-05T03:09:40.176Z ERROR avm.node: internal error in the vm: boom",
        "error cleaning up a connection",
    ]
