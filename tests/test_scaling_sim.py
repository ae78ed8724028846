"""The scaling simulation (bench/scaling_sim.py) against counts derived by hand, so the
figures in docs/scaling.md rest on something that can fail.

Today's design broadcasts: a create reaches the N-1 other nodes, a move is announced by both
of its ends. The ring design sends one message to an object's home node unless the sender
is that home, and a caller pays a lookup (two messages) only when it has nothing cached.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from scaling_sim import (
    DEAD_AFTER,
    DESIGNS,
    INDIRECT_PROBES,
    PING_INTERVAL,
    RING_POINTS,
    Cluster,
    HashRing,
    Ring,
    Today,
    directory_entry_bytes,
    idle_link,
    link_rate,
    run,
    swim,
    tables,
)

WORKLOAD = 400  # objects: enough for the run's 100 moves and 100 destroys


def messages(cluster: Cluster, operation: Callable[..., object], *args: int) -> int:
    """The messages ``operation(*args)`` sent in ``cluster``."""
    before = cluster.net.total()
    operation(*args)
    return cluster.net.total() - before


@pytest.mark.parametrize("n", [4, 7, 12])
def test_today_broadcasts_every_change_to_every_peer(n: int) -> None:
    costs = run("today", n, WORKLOAD)
    assert costs.create == n - 1  # one create_notify per peer
    assert costs.destroy == n - 1
    assert costs.move == 2 + 2 * (n - 1)  # move_object, its answer, both ends announce
    assert costs.call_cold == costs.call_warm == costs.call_moved == 2  # call, call_response
    assert costs.vm_events_per_create == n  # the create, then a learn event on every peer
    assert costs.links == costs.talked_max == n - 1
    assert costs.share_mean == pytest.approx((n - 1) / n)  # all but a node's own objects
    assert (n - 1) / n <= costs.share_max <= 1


def created(cluster: Cluster, creator: int) -> tuple[int, int]:
    """A new object on ``creator`` and the messages its create sent."""
    before = cluster.net.total()
    oid = cluster.create(creator)
    return oid, cluster.net.total() - before


@pytest.mark.parametrize("n", [5, 16])
def test_ring_costs_one_message_to_the_home_node(n: int) -> None:
    cluster = Ring(n, prefix_hint=False)
    home = cluster.ring.home
    for i in range(60):
        creator, caller, to = i % n, (i + 1) % n, (i + 2) % n
        oid, sent = created(cluster, creator)
        assert sent == (home(oid) != creator)
        lookup = 2 * (home(oid) != caller)
        assert messages(cluster, cluster.call, caller, oid) == lookup + 2
        assert messages(cluster, cluster.call, caller, oid) == 2  # cached
        assert messages(cluster, cluster.move, oid, to) == 2 + (home(oid) != to)
        # The cached node answers that the object left; then the lookup, then the call.
        assert messages(cluster, cluster.call, caller, oid) == 2 + lookup + 2
        assert messages(cluster, cluster.destroy, oid) == (home(oid) != to)
    cluster.check_directory()


@pytest.mark.parametrize("n", [5, 16])
def test_ring_with_prefix_registers_only_objects_that_moved(n: int) -> None:
    cluster = Ring(n, prefix_hint=True)
    home = cluster.ring.home
    for i in range(60):
        creator, caller, to, stranger = i % n, (i + 1) % n, (i + 2) % n, (i + 3) % n
        oid, sent = created(cluster, creator)
        assert sent == 0
        assert messages(cluster, cluster.call, caller, oid) == 2  # straight to creator
        assert messages(cluster, cluster.move, oid, to) == 2 + (home(oid) != to)
        # The creator says no, the home says where: miss, lookup, call.
        lookup = 2 * (home(oid) != stranger)
        assert messages(cluster, cluster.call, stranger, oid) == 2 + lookup + 2
        assert messages(cluster, cluster.destroy, oid) == (home(oid) != to)
        assert not any(oid in entries for entries in cluster.homes)
    cluster.check_directory()


@pytest.mark.parametrize("n", [8, 64])
def test_workload_means_match_the_per_operation_counts(n: int) -> None:
    ring = run("ring", n)
    assert ring.create == pytest.approx(1 - 1 / n, abs=0.03)  # creators are spread evenly
    assert ring.call_warm == 2
    assert ring.vm_events_per_create == 1
    assert ring.share_mean * n == pytest.approx(1)  # every live object has one entry
    prefix = run("ring+prefix", n)
    assert prefix.create == 0
    assert prefix.call_cold == prefix.call_warm == 2  # nothing has moved yet
    assert prefix.share_mean < ring.share_mean / 10  # only moved objects are registered


def test_the_ring_moves_only_what_a_joining_node_takes() -> None:
    before, after = HashRing(range(16), RING_POINTS), HashRing(range(17), RING_POINTS)
    ids = [(7 << 48) | i for i in range(5_000)]
    moved = [oid for oid in ids if before.home(oid) != after.home(oid)]
    assert all(after.home(oid) == 16 for oid in moved)
    assert len(moved) / len(ids) == pytest.approx(1 / 17, abs=0.03)
    shares = before.shares(16)
    assert sum(shares) == pytest.approx(1)
    assert max(shares) * 16 < 1.5  # virtual points keep the heaviest node near its share


def test_a_broken_directory_is_caught() -> None:
    today = Today(4)
    oid = today.create(0)
    today.directories[2].objects.clear()
    with pytest.raises(AssertionError, match="directory is off"):
        today.check_directory()
    ring = Ring(4, prefix_hint=False)
    oid = ring.create(0)
    ring.homes[ring.ring.home(oid)][oid] = 3  # a wrong location
    with pytest.raises(AssertionError, match="not found"):
        ring.call(1, oid)


def test_keep_alive_on_an_idle_link() -> None:
    # The ends alternate: one pings, the other has just heard it and stays quiet at its next
    # wake, as does the pinger (it heard the pong); the other end pings 1 + d s later, and
    # the first again 3 s after its last ping: two pings and two pongs every 3 s.
    assert link_rate() == pytest.approx(4 / (3 * PING_INTERVAL), abs=0.01)
    # A peer is last heard less than 2 intervals before it dies, and the survivor closes at
    # its first wake DEAD_AFTER past that.
    for seed in range(50):
        _, after = idle_link(60.0, seed, die_at=10.0 + seed / 10)
        assert after is not None
        assert DEAD_AFTER - 2 * PING_INTERVAL < after < DEAD_AFTER + PING_INTERVAL


@pytest.mark.parametrize("n", [8, 32, 128])
def test_swim_spreads_a_failure_in_logarithmic_periods(n: int) -> None:
    periods, per_member = swim(n)
    assert periods <= 3 * math.ceil(math.log2(n)) + 3
    # A probe of a live member is a ping and an ack; of the dead one, a ping and k
    # ping-reqs with k pings; each member probes the dead one about once per n-1 periods.
    expected = 2 + (2 * INDIRECT_PROBES - 1) / (n - 1)
    assert per_member == pytest.approx(expected, abs=(2 * INDIRECT_PROBES - 1) / 2)


def test_directory_entry_bytes_counts_the_id_the_name_and_the_slot() -> None:
    size = directory_entry_bytes(5_000)
    floor = sys.getsizeof((7 << 48) | 1) + sys.getsizeof("node-0007") + 8
    assert floor < size < 400


def test_tables_have_a_row_per_size_and_design() -> None:
    text = tables((4, 6), WORKLOAD)
    for n in (4, 6):
        for design in DESIGNS:
            assert text.count(f"| {n} | {design} |") == 2, (n, design)
