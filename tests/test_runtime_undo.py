"""Property: whatever a transaction does, aborting it (or failing its validation, or running
out of fuel inside it) leaves the store byte-for-byte as it was at begin (spec §8.7, §8.6,
DESIGN.md §12), and failed callees inside it change nothing either."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from avm_vm.format.instructions import BY_NAME
from avm_vm.runtime.core import RunError, Runtime, RuntimeOptions
from avm_vm.runtime.handlers.tx import begin_tx
from avm_vm.runtime.store import Journal, ObjectRecord, Store
from avmc.compiler import compile_source

CELL = """
behavior Cell {
  on ["set", v] { set_state([v]); return v }
  on ["fail", v] { set_state([v]); move_object(self, "x"); create Cell; fail "boom" }
  on ["move", m] { return move_object(self, m) }
}
"""

_op = st.one_of(
    st.tuples(st.just("create")),
    st.tuples(st.just("set"), st.integers(0, 5), st.integers(0, 9)),
    st.tuples(st.just("top"), st.integers(0, 9)),
    st.tuples(st.just("destroy"), st.integers(0, 5)),
    st.tuples(st.just("transfer"), st.integers(0, 5), st.sampled_from(["a", "b"])),
    st.tuples(st.just("move"), st.integers(0, 5), st.sampled_from(["local", "m1"])),
    st.tuples(st.just("fetch"), st.integers(0, 5)),
    st.tuples(st.just("callfail"), st.integers(0, 5), st.integers(0, 9)),
    st.tuples(st.just("callmove"), st.integers(0, 5), st.sampled_from(["local", "m2"])),
)


def _program(cells: int, ops: list[tuple], ending: str) -> str:
    """A main that sets up ``cells`` objects, then runs ``ops`` in a tx and ends it.

    The generator tracks which objects may be called (not moved away, hence not remote) and
    which are committed (transfer needs one), so every op succeeds until the ending.
    """
    lines = [f"let o{i} = create Cell" for i in range(cells)]
    lines += [f'call(o{i}, ["set", {100 + i}])' for i in range(cells)]
    lines.append("let t = begin()")
    names = [f"o{i}" for i in range(cells)]
    committed = set(names)
    away: set[str] = set()
    for op in ops:
        kind, args = op[0], op[1:]
        target = names[args[0] % len(names)] if args and kind != "top" else ""
        if kind == "create":
            names.append(f"o{len(names)}")
            lines.append(f"let {names[-1]} = create Cell")
        elif kind == "top":
            lines.append(f"set_state([{args[0]}])")
        elif kind == "destroy":
            lines.append(f"destroy({target})")
        elif kind == "transfer" and target in committed:
            lines.append(f'transfer({target}, "{args[1]}")')
        elif kind in ("move", "fetch") and target in committed:
            lines.append(
                f'move_object({target}, "{args[1]}")' if kind == "move" else f"fetch({target})"
            )
            if kind == "fetch" or args[1] == "local":
                away.discard(target)
            else:
                away.add(target)
        elif target not in away and kind in ("set", "callfail", "callmove"):
            message = {
                "set": f'["set", {args[1] if len(args) > 1 else 0}]',
                "callfail": f'["fail", {args[1]}]',
                "callmove": f'["move", "{args[1]}"]',
            }[kind]
            lines.append(f"call({target}, {message})")
            if kind == "callmove" and target in committed:
                (away.add if args[1] != "local" else away.discard)(target)
    lines += {
        "abort": ["abort(t)", "return 0"],
        "conflict": ["require(false)", "return commit(t)"],
        "fuel": ["while true { }"],
    }[ending]
    return CELL + "main {\n  " + "\n  ".join(lines) + "\n}\n"


def _model_dump(cells: int, code_hash: bytes) -> str:
    """The store the setup must leave, built independently of the runtime."""
    model = Store(Journal())
    for i in range(cells):
        model.install(i, ObjectRecord("Cell", code_hash, "local", None, None))
        model.set_state(i, (100 + i,))
    return model.dump()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cells=st.integers(1, 3),
    ops=st.lists(_op, max_size=12),
    ending=st.sampled_from(["abort", "conflict", "fuel"]),
)
def test_aborted_transaction_leaves_store_identical(cells, ops, ending):
    program = compile_source(_program(cells, ops, ending), "undo.avm")
    runtime = Runtime(program, RuntimeOptions(fuel=20_000))
    at_begin: list[str] = []

    def spy(rt, args):  # capture the store exactly when the tx begins
        at_begin.append(rt.store.dump())
        return begin_tx(rt, args)

    runtime.handlers[BY_NAME["begin_tx"].number] = spy
    try:
        runtime.run_main()
        outcome = "returned"
    except RunError as failure:
        outcome = failure.error.kind.qualified_name
    assert (
        outcome == {"abort": "returned", "conflict": "TxConflict", "fuel": "FuelExhausted"}[ending]
    )
    assert at_begin == [_model_dump(cells, runtime.registry.code_hash("Cell"))]
    assert runtime.store.dump() == at_begin[0]
    assert runtime.tx is None
    assert runtime.journal.entries == [] and runtime.journal.world is None
