"""How `avm node` clusters scale: messages, links and directory entries as the node count
grows, for today's design and a proposed one, on a simulated network (no sockets).

    python bench/scaling_sim.py                   # N = 4, 16, 64, 256, 1000
    python bench/scaling_sim.py --nodes 16 64     # chosen sizes
    python bench/scaling_sim.py --objects 5000    # objects in the cluster (default 2000)

Designs (docs/scaling.md explains them):

- ``today``: what avm_vm/node does now (docs/wire.md). Every node links to every other one
  and keeps each link alive with ping/pong; a create, move or destroy is broadcast to every
  peer as ``create_notify`` / ``destroy_notify``, and every node keeps a full copy of the
  directory (object id → machine), each entry applied as an event on its VM.
- ``ring``: a consistent-hashing directory. Object ids hash onto a ring where each node
  owns ``RING_POINTS`` virtual points; the first point clockwise from an id is the id's
  home node, which stores where the object lives and answers lookups. A create or move
  sends one ``dir_put`` to the home, a destroy one ``dir_del``; callers keep what they
  looked up in a bounded cache and ask the home again when a cached node says the object
  is not there. Membership and failure detection are SWIM-style gossip (one probe per node
  per period, news piggybacked) instead of a keep-alive on N-1 links. Links are opened on
  demand (a pool), not kept to every node.
- ``ring+prefix``: the same, but it uses what ids already say: an id carries its creator's
  16-bit prefix (docs/wire.md, Routing), so a caller with nothing cached tries the creator
  first, and only objects that left their creator are registered at a home node.

The model counts messages; it does not time them. A message is delivered at once and in
order, and every call is checked to reach the node that holds its object. Time appears
only in the keep-alive and gossip models, in units of the ping interval / protocol period
(both 1 s).
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import heapq
import json
import math
import random
import tracemalloc
from abc import ABC, abstractmethod
from collections import Counter, OrderedDict
from dataclasses import dataclass

from avm_vm.node.directory import PREFIX_SHIFT, Directory
from avm_vm.node.peers import DEAD_AFTER, PING_INTERVAL

SIZES = (4, 16, 64, 256, 1000)
OBJECTS = 2_000  # objects in the cluster, spread evenly over the nodes
CALL_PAIRS = 2_000  # (caller, object) pairs, each called twice: cold, then cached
MOVES = 100  # objects moved to another node (then called again)
DESTROYS = 100
RING_POINTS = 64  # virtual points per node on the hash ring
CACHE_SIZE = 4_096  # locations a node caches (least recently used ones are dropped)
INDIRECT_PROBES = 3  # SWIM's k: members asked to probe a node that missed its ack
GOSSIP_FACTOR = 3  # SWIM's lambda: each member passes a piece of news on lambda*log2(N) times
PER_NODE = 10_000  # objects per node, for the directory size a cluster would reach
SEED = 20_260_101
LATENCY = 0.0005  # seconds one way on a link (keep-alive model)
LINK_SECONDS = 600.0  # simulated seconds of an idle link


# ----------------------------------------------------------------------------- network


class Network:
    """Counts messages by kind, and which nodes each node has exchanged messages with."""

    def __init__(self, n: int) -> None:
        self.sent: Counter[str] = Counter()
        self.talked: list[set[int]] = [set() for _ in range(n)]

    def send(self, src: int, dst: int, kind: str) -> None:
        assert src != dst, f"node {src} sends {kind} to itself"
        self.sent[kind] += 1
        self.talked[src].add(dst)
        self.talked[dst].add(src)

    def total(self) -> int:
        return sum(self.sent.values())


def object_id(creator: int, seq: int) -> int:
    """An id as a node makes them: the creator's prefix in bits 63..48 (prefix = index + 1)."""
    return ((creator + 1) << PREFIX_SHIFT) | seq


def creator_of(oid: int) -> int:
    return (oid >> PREFIX_SHIFT) - 1


class Cluster(ABC):
    """What every design shares: the nodes' stores, id making, and the truth to check."""

    name = ""

    def __init__(self, n: int) -> None:
        self.n = n
        self.net = Network(n)
        self.stores: list[set[int]] = [set() for _ in range(n)]
        self.holder: dict[int, int] = {}  # the truth: object → the node holding it
        self.made = [0] * n
        self.vm_events = 0  # events applied on some node's VM

    def create(self, node: int) -> int:
        self.made[node] += 1
        oid = object_id(node, self.made[node])
        self.stores[node].add(oid)
        self.holder[oid] = node
        self.vm_events += 1
        self.announce_create(node, oid)
        return oid

    def move(self, oid: int, to: int) -> None:
        """The machine layer's move: ship the object, then the designs' bookkeeping."""
        src = self.holder[oid]
        self.net.send(src, to, "move_object")
        self.net.send(to, src, "object_response")
        self.stores[src].discard(oid)
        self.stores[to].add(oid)
        self.holder[oid] = to
        self.announce_move(oid, src, to)

    def destroy(self, oid: int) -> None:
        src = self.holder.pop(oid)
        self.stores[src].discard(oid)
        self.announce_destroy(oid, src)

    def call(self, caller: int, oid: int) -> None:
        """Call ``oid`` from ``caller``; the call must reach the node holding it."""
        if oid in self.stores[caller]:
            return
        served = self.route_call(caller, oid)
        assert served == self.holder[oid], f"{self.name}: obj {oid} not found from {caller}"

    def try_call(self, caller: int, node: int, oid: int) -> bool:
        """One `call` and its `call_response`: did ``node`` hold the object?"""
        self.net.send(caller, node, "call")
        self.net.send(node, caller, "call_response")
        return oid in self.stores[node]

    @abstractmethod
    def announce_create(self, node: int, oid: int) -> None:
        """Tell whom the design tells that ``node`` made ``oid``."""

    @abstractmethod
    def announce_move(self, oid: int, src: int, to: int) -> None:
        """Tell whom the design tells that ``oid`` went from ``src`` to ``to``."""

    @abstractmethod
    def announce_destroy(self, oid: int, src: int) -> None:
        """Tell whom the design tells that ``oid`` is gone from ``src``."""

    @abstractmethod
    def route_call(self, caller: int, oid: int) -> int | None:
        """Send the call where the design says; the node that served it, or None."""

    @abstractmethod
    def entries(self, node: int) -> int:
        """Directory entries ``node`` holds."""

    def heaviest(self, entries: list[int]) -> float:
        """The share of all objects the most loaded node's directory holds."""
        return max(entries) / len(self.holder)

    @abstractmethod
    def links(self) -> int:
        """Links a node keeps open and alive, whatever the traffic."""

    @abstractmethod
    def check_directory(self) -> None:
        """Fail unless the directory agrees with where every object is."""


class Today(Cluster):
    """Full mesh, broadcast notices, a full directory on every node (avm_vm/node today)."""

    name = "today"

    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.directories = [Directory(f"n{i}", i + 1) for i in range(n)]
        for i, directory in enumerate(self.directories):
            for peer in range(n):
                if peer != i:
                    directory.add_peer(f"n{peer}", peer + 1)

    def _broadcast(self, src: int, kind: str, oid: int, machine: int | None) -> None:
        """A notice to every peer, each applied there as a VM event (`learn`/`unlearn`)."""
        for peer, directory in enumerate(self.directories):
            if peer == src:
                continue
            self.net.send(src, peer, kind)
            self.vm_events += 1
            if machine is None:
                directory.forget(oid, f"n{src}")
            else:
                directory.learn(oid, f"n{machine}")

    def announce_create(self, node: int, oid: int) -> None:
        self._broadcast(node, "create_notify", oid, node)

    def announce_move(self, oid: int, src: int, to: int) -> None:
        # Both ends announce: the new holder its new object, the old one where it went.
        self.directories[src].learn(oid, f"n{to}")
        self._broadcast(to, "create_notify", oid, to)
        self._broadcast(src, "create_notify", oid, to)

    def announce_destroy(self, oid: int, src: int) -> None:
        self._broadcast(src, "destroy_notify", oid, None)

    def route_call(self, caller: int, oid: int) -> int | None:
        machine = self.directories[caller].locate(oid)
        if machine is None:
            return None
        node = int(machine[1:])
        return node if self.try_call(caller, node, oid) else None

    def entries(self, node: int) -> int:
        return len(self.directories[node].objects)

    def links(self) -> int:
        return self.n - 1  # one kept-alive link to every peer

    def check_directory(self) -> None:
        """Every node knows where every object held elsewhere is, and nothing else."""
        for node, directory in enumerate(self.directories):
            elsewhere = {o: f"n{h}" for o, h in self.holder.items() if h != node}
            assert directory.objects == elsewhere, f"node {node}'s directory is off"


class HashRing:
    """Consistent hashing (Karger et al., 1997) with virtual points, as in Dynamo or ketama:
    a key belongs to the node owning the first point clockwise from the key's hash."""

    def __init__(self, nodes: range, points: int) -> None:
        ring = sorted(
            (_hash(f"node-{node}#{v}".encode()), node) for node in nodes for v in range(points)
        )
        self.hashes = [h for h, _ in ring]
        self.owners = [node for _, node in ring]

    def home(self, oid: int) -> int:
        index = bisect.bisect(self.hashes, _hash(oid.to_bytes(8, "big")))
        return self.owners[index % len(self.owners)]

    def shares(self, n: int) -> list[float]:
        """The fraction of the hash space each node owns."""
        share = [0.0] * n
        previous = self.hashes[-1] - (1 << 64)
        for h, node in zip(self.hashes, self.owners, strict=True):
            share[node] += (h - previous) / (1 << 64)
            previous = h
        return share


def _hash(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class Ring(Cluster):
    """A consistent-hashing home directory, location caches, optional creator-first hint."""

    def __init__(self, n: int, prefix_hint: bool) -> None:
        super().__init__(n)
        self.prefix_hint = prefix_hint
        self.name = "ring+prefix" if prefix_hint else "ring"
        self.ring = HashRing(range(n), RING_POINTS)
        self.homes: list[dict[int, int]] = [{} for _ in range(n)]  # entries a node is home of
        self.caches: list[OrderedDict[int, int]] = [OrderedDict() for _ in range(n)]

    def _put(self, src: int, oid: int, where: int) -> None:
        home = self.ring.home(oid)
        if home != src:
            self.net.send(src, home, "dir_put")
        self.homes[home][oid] = where

    def announce_create(self, node: int, oid: int) -> None:
        if not self.prefix_hint:  # with the hint, the id itself says where a new object is
            self._put(node, oid, node)

    def announce_move(self, oid: int, src: int, to: int) -> None:
        self._put(to, oid, to)

    def announce_destroy(self, oid: int, src: int) -> None:
        home = self.ring.home(oid)
        if oid in self.homes[home]:
            if home != src:
                self.net.send(src, home, "dir_del")
            del self.homes[home][oid]

    def _lookup(self, caller: int, oid: int) -> int | None:
        home = self.ring.home(oid)
        if home != caller:
            self.net.send(caller, home, "dir_get")
            self.net.send(home, caller, "dir_answer")
        return self.homes[home].get(oid)

    def route_call(self, caller: int, oid: int) -> int | None:
        cache = self.caches[caller]
        guess = cache.get(oid)
        if guess is None and self.prefix_hint:
            guess = creator_of(oid)
        if guess is not None and guess != caller and self.try_call(caller, guess, oid):
            self._remember(caller, oid, guess)
            return guess
        # No guess, or the guessed node answered that the object is not there: ask its home.
        where = self._lookup(caller, oid)
        if where is None or not self.try_call(caller, where, oid):
            return None
        self._remember(caller, oid, where)
        return where

    def _remember(self, caller: int, oid: int, where: int) -> None:
        cache = self.caches[caller]
        cache[oid] = where
        cache.move_to_end(oid)
        if len(cache) > CACHE_SIZE:
            cache.popitem(last=False)

    def entries(self, node: int) -> int:
        return len(self.homes[node])

    def heaviest(self, entries: list[int]) -> float:
        """From the heaviest node's arc of the ring, not from the few objects a run has:
        entries land on homes by hash, so that arc is the load the node can expect."""
        return sum(entries) / len(self.holder) * max(self.ring.shares(self.n))

    def links(self) -> int:
        return 0  # links are a pool opened on demand; nothing is kept alive per peer

    def check_directory(self) -> None:
        """Each registered object's home says where it is; the rest are at their creator."""
        for oid, node in self.holder.items():
            where = self.homes[self.ring.home(oid)].get(oid)
            if where is None:
                assert self.prefix_hint and node == creator_of(oid), f"obj {oid} unregistered"
            else:
                assert where == node, f"obj {oid}'s home says {where}, it is on {node}"
        registered = sum(len(home) for home in self.homes)
        assert registered <= len(self.holder), "a destroyed object is still registered"


DESIGNS = ("today", "ring", "ring+prefix")


def make(design: str, n: int) -> Cluster:
    if design == "today":
        return Today(n)
    return Ring(n, prefix_hint=design == "ring+prefix")


# ----------------------------------------------------------------------------- workload


@dataclass
class Costs:
    """Mean messages per operation, and what a node keeps, for one design at one size."""

    design: str
    n: int
    create: float
    call_cold: float  # a caller's first call to an object
    call_warm: float  # the same call again
    move: float
    call_moved: float  # a call to a moved object, from a node that called it before
    destroy: float
    vm_events_per_create: float  # on all nodes' VMs together
    links: int
    talked_max: int  # most distinct nodes one node exchanged messages with
    share_mean: float  # directory entries per node, as a share of all objects
    share_max: float


def run(design: str, n: int, objects: int = OBJECTS, seed: int = SEED) -> Costs:
    """The workload on one design: create, call (cold, then warm), move, call the moved
    ones again, destroy; each phase's messages counted, every call checked."""
    rng = random.Random(seed)
    cluster = make(design, n)
    net = cluster.net

    def per_op(count: int, before: int) -> float:
        return (net.total() - before) / count

    before = net.total()
    ids = [cluster.create(i % n) for i in range(objects)]
    create = per_op(objects, before)
    vm_per_create = cluster.vm_events / objects
    pairs = []
    while len(pairs) < CALL_PAIRS:  # calls that leave the caller's node
        caller, oid = rng.randrange(n), rng.choice(ids)
        if cluster.holder[oid] != caller:
            pairs.append((caller, oid))
    costs = []
    for _ in range(2):  # cold, then warm
        before = net.total()
        for caller, oid in pairs:
            cluster.call(caller, oid)
        costs.append(per_op(len(pairs), before))
    before = net.total()
    moved = rng.sample(ids, MOVES)
    for oid in moved:
        cluster.move(oid, rng.choice([m for m in range(n) if m != cluster.holder[oid]]))
    move = per_op(MOVES, before)
    moved_set = set(moved)
    again = [(c, o) for c, o in pairs if o in moved_set and cluster.holder[o] != c]
    before = net.total()
    for caller, oid in again:
        cluster.call(caller, oid)
    call_moved = per_op(len(again), before) if again else math.nan
    cluster.check_directory()
    before = net.total()
    for oid in rng.sample(ids, DESTROYS):
        cluster.destroy(oid)
    destroy = per_op(DESTROYS, before)
    cluster.check_directory()
    entries = [cluster.entries(node) for node in range(n)]
    return Costs(
        design,
        n,
        create,
        costs[0],
        costs[1],
        move,
        call_moved,
        destroy,
        vm_per_create,
        cluster.links(),
        max(len(peers) for peers in net.talked),
        sum(entries) / n / len(cluster.holder),
        cluster.heaviest(entries),
    )


# ----------------------------------------------------------------------------- liveness


def idle_link(seconds: float, seed: int, die_at: float | None = None) -> tuple[int, float | None]:
    """One link under the keep-alive of avm_vm/node/peers.py: each end wakes every
    PING_INTERVAL (at its own phase), pings when it has heard nothing for PING_INTERVAL,
    and closes after DEAD_AFTER of silence. Answers the messages sent in ``seconds``, and
    when end 0 closed the link if end 1 died at ``die_at``."""
    rng = random.Random(seed)
    heard = [0.0, 0.0]
    wakes = [(rng.uniform(0, PING_INTERVAL), end) for end in (0, 1)]
    heapq.heapify(wakes)
    messages = 0
    while wakes:
        t, end = heapq.heappop(wakes)
        if t > seconds:
            break
        dead = die_at is not None and t >= die_at
        if dead and end == 1:
            continue  # a dead end neither wakes nor answers
        silent = t - heard[end]
        if silent >= DEAD_AFTER:
            return messages, t - (die_at or 0.0)
        if silent >= PING_INTERVAL:
            messages += 1  # ping
            if not dead:
                heard[1 - end] = t + LATENCY
                messages += 1  # pong
                heard[end] = t + 2 * LATENCY
        heapq.heappush(wakes, (t + PING_INTERVAL, end))
    return messages, None


def link_rate(seed: int = SEED) -> float:
    """Keep-alive messages per second on one idle link (both directions)."""
    messages, closed = idle_link(LINK_SECONDS, seed)
    assert closed is None, "the keep-alive closed a link whose peer was alive"
    return messages / LINK_SECONDS


def link_detection(samples: int = 200, seed: int = SEED) -> float:
    """Mean seconds from a peer's death to its link being closed (every peer, on its own)."""
    rng = random.Random(seed)
    total = 0.0
    for _ in range(samples):
        _, after = idle_link(60.0, rng.randrange(1 << 30), die_at=rng.uniform(10, 20))
        assert after is not None, "a dead peer was never noticed"
        total += after
    return total / samples


def gossip_budget(n: int) -> int:
    return GOSSIP_FACTOR * max(1, math.ceil(math.log2(n)))


def swim(n: int, seed: int = SEED) -> tuple[int, float]:
    """SWIM (Das, Gupta, Motivala, 2002) after node 0 dies: each period every live member
    probes the next member of its own shuffled round-robin list (ping, ack); one that gets
    no ack asks INDIRECT_PROBES others to probe too, then declares the node failed. News
    rides on pings and acks, each member passing it on gossip_budget(n) times. Answers the
    periods until every live member knows, and messages sent per member per period. (The
    suspicion sub-protocol, which delays declaring a failure, is left out.)"""
    rng = random.Random(seed)
    members = list(range(1, n))
    helpers = min(INDIRECT_PROBES, len(members) - 1)
    rounds = {m: [o for o in range(n) if o != m] for m in members}
    for order in rounds.values():
        rng.shuffle(order)
    turn = dict.fromkeys(members, 0)
    left: dict[int, int] = {}  # member that knows → times it will still pass the news on
    sent = periods = 0
    while len(left) < len(members):
        periods += 1
        assert periods <= 10 * n, "the failure never spread"
        for m in rng.sample(members, len(members)):
            order = rounds[m]
            target = order[turn[m] % len(order)]
            turn[m] += 1
            if turn[m] % len(order) == 0:
                rng.shuffle(order)
            if target == 0:  # no ack: ping-req to helpers, each of them pings, none answers
                sent += 1 + 2 * helpers
                left.setdefault(m, gossip_budget(n))
                continue
            sent += 2
            for speaker, hearer in ((m, target), (target, m)):  # the ping, then the ack
                if left.get(speaker, 0) > 0:
                    left[speaker] -= 1
                    left.setdefault(hearer, gossip_budget(n))
    return periods, sent / (len(members) * periods)


# ----------------------------------------------------------------------------- memory


def directory_entry_bytes(entries: int = 20_000) -> float:
    """Bytes one entry of a real `Directory` takes when learned from decoded notices, as a
    node does (a fresh id int and machine-name str per notice), measured with tracemalloc."""
    texts = [
        json.dumps({"object_id": object_id(7, i), "machine_id": "node-0007"})
        for i in range(entries)
    ]
    directory = Directory("node-0001", 1)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for text in texts:
            notice = json.loads(text)
            directory.learn(notice["object_id"], notice["machine_id"])
        del notice
        used = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    return used / entries


# ----------------------------------------------------------------------------- report


def tables(sizes: tuple[int, ...], objects: int) -> str:
    entry_bytes = directory_entry_bytes()
    rate = link_rate()
    detect = link_detection()
    ops = [
        f"Messages per operation ({objects} objects; calls leave the caller's node)",
        "",
        "| N | design | create | call, cold | call, cached | move | call after move "
        "| destroy | VM events per create |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    node = [
        "Standing cost per node. Directory: entries a node holds per 1,000 objects in the "
        "cluster (mean / heaviest node). MiB: the heaviest node's, in a cluster whose nodes hold "
        f"{PER_NODE:,} objects each, at {entry_bytes:.0f} B per entry (measured on a real "
        "Directory).",
        "",
        "| N | design | links kept alive | peers talked to (max) | idle msgs/s sent "
        "| failure known by all | directory per 1,000 objects | directory MiB |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for n in sizes:
        periods, per_period = swim(n)
        for design in DESIGNS:
            c = run(design, n, objects)
            ops.append(
                f"| {n} | {design} | {c.create:.2f} | {c.call_cold:.2f} | {c.call_warm:.2f} "
                f"| {c.move:.2f} | {c.call_moved:.2f} | {c.destroy:.2f} "
                f"| {c.vm_events_per_create:.0f} |"
            )
            if design == "today":
                idle = rate * (n - 1) / 2  # each link's traffic is split between its ends
                known = f"{detect:.1f} s (each peer alone)"
            else:
                idle = per_period / PING_INTERVAL
                known = f"{periods} periods = {periods * PING_INTERVAL:.0f} s"
            mib = c.share_max * n * PER_NODE * entry_bytes / (1 << 20)
            node.append(
                f"| {n} | {design} | {c.links} | {c.talked_max} | {idle:.1f} | {known} "
                f"| {1000 * c.share_mean:.1f} / {1000 * c.share_max:.1f} | {mib:,.1f} |"
            )
    return "\n".join([*ops, "", *node])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--objects", type=int, default=OBJECTS)
    args = parser.parse_args()
    if min(args.nodes) < 4 or args.objects < MOVES + DESTROYS:
        parser.error(f"need at least 4 nodes and {MOVES + DESTROYS} objects")
    print(tables(tuple(args.nodes), args.objects))


if __name__ == "__main__":
    main()
