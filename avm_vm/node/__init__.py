"""Nodes: objects on several machines calling each other over TCP (DESIGN.md §8, spec §11)."""

# The wire protocol's version (docs/wire.md), exchanged in the handshake; kept here so that
# `avm --version` can tell it without loading the networking code.
PROTOCOL_VERSION = 3
# The oldest version still served: protocol 3 added transactions across nodes, and a node
# never sends a version-2 peer a call that joins one (docs/transactions.md).
OLDEST_PROTOCOL_VERSION = 2
