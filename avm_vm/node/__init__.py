"""Nodes: objects on several machines calling each other over TCP (DESIGN.md §8, spec §11)."""

# The wire protocol's version (docs/wire.md), exchanged in the handshake; kept here so that
# `avm --version` can tell it without loading the networking code.
PROTOCOL_VERSION = 2
