"""The runtime: runs and their outcomes, the object store, transactions, the behavior registry
and the effect handlers.
"""
