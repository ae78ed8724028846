"""Nodes: objects on several machines calling each other over TCP (DESIGN.md §8, spec §11)."""
