"""Hypothesis strategies for AVM values, shared by the codec, text and bytecode tests."""

from __future__ import annotations

from hypothesis import strategies as st

from avm_vm.values import NAT_MAX, NOTHING, Just, ObjectRef, Pair, TxRef, Value


def values(
    text: st.SearchStrategy[str] | None = None, max_leaves: int = 30
) -> st.SearchStrategy[Value]:
    """Every value kind, nested; nats include the edges, strings come from ``text``."""
    return st.recursive(
        st.integers(0, NAT_MAX)
        | st.sampled_from([0, 1, NAT_MAX, 2**53 + 1])
        | st.booleans()
        | (st.text() if text is None else text)
        | st.just(NOTHING)
        | st.builds(ObjectRef, st.integers(0, NAT_MAX))
        | st.builds(TxRef, st.integers(0, NAT_MAX)),
        lambda inner: (
            st.lists(inner, max_size=4).map(tuple)
            | st.builds(Pair, inner, inner)
            | st.builds(Just, inner)
        ),
        max_leaves=max_leaves,
    )
