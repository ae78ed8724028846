"""The location directory (spec §11.3): which machine holds an object this node does not.

Peers announce their objects (create_notify) and forget them (destroy_notify); the runtime
consults the directory when routing a call to an object missing from its store (the
reference never does, §11.3). Object ids carry their creator's 16-bit prefix (§2.5), so an
object no notification has reached yet is still found on the node that made it.

Written by the node's event loop, read by the VM's worker thread: each operation is one
dict access, which the GIL makes atomic.
"""

from __future__ import annotations

PREFIX_SHIFT = 48
JOINING_PROTOCOL = 3  # the first wire protocol whose calls can join a transaction


class Directory:
    """Object id → machine for objects elsewhere, and the machines this node can reach."""

    def __init__(self, name: str, prefix: int) -> None:
        self.name = name  # this node's machine
        self.prefix = prefix
        self.objects: dict[int, str] = {}
        self.prefixes: dict[int, str] = {}  # id prefix → the peer that creates such ids
        self.peers: set[str] = set()  # configured or connected peers
        self.versions: dict[str, int] = {}  # the wire protocol each peer spoke when it connected

    # The runtime's `Network` protocol.

    def locate(self, object_id: int) -> str | None:
        machine = self.objects.get(object_id)
        if machine is not None:
            return machine
        prefix = object_id >> PREFIX_SHIFT
        return None if prefix == self.prefix else self.prefixes.get(prefix)

    def is_peer(self, machine: str) -> bool:
        return machine in self.peers

    def cannot_join(self, machine: str) -> str | None:
        version = self.versions.get(machine, JOINING_PROTOCOL)
        if version >= JOINING_PROTOCOL:
            return None
        return (
            f"node {machine} speaks wire protocol {version}, which predates transactions "
            f"across nodes (protocol {JOINING_PROTOCOL}); upgrade it, or run this node "
            "with --profile r to keep remote calls outside transactions"
        )

    # Updates.

    def learn(self, object_id: int, machine: str) -> None:
        """A create_notify: the object lives on ``machine`` (the latest word wins)."""
        if machine == self.name:
            self.objects.pop(object_id, None)  # our store is the authority for ours
        else:
            self.objects[object_id] = machine

    def forget(self, object_id: int, machine: str) -> None:
        """A destroy_notify from ``machine``: only the object's last known owner may retract
        it, so a late notice from a node the object has left does not erase its new home."""
        if self.objects.get(object_id) == machine:
            del self.objects[object_id]

    def add_peer(self, machine: str, prefix: int | None = None, version: int | None = None) -> None:
        self.peers.add(machine)
        if version is not None:
            self.versions[machine] = version
        if prefix is not None and prefix != self.prefix:
            self.prefixes[prefix] = machine
