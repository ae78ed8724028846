"""Transactions (spec §8, profile R rules) and the runtime's undo of failed callees."""

from __future__ import annotations

from avm_vm.runtime import Runtime
from avm_vm.trace import TransactionAborted

CELL = """
behavior Cell {
  field value = 0
  on ["set", v] { value = v; return v }
  on ["get"] { return value }
  on ["move", m] { return move_object(self, m) }
}
"""


def test_8_3_begin_commit_events_and_controllers(run):
    """§8.3, §8.6, §10.3: the start event carries the new controller, entries inside the tx
    carry it, the commit event carries none."""
    out = run(CELL + 'main { let t = begin("alice"); let c = create Cell; return commit(t) }')
    assert out.text == "true"
    assert out.lines == [
        "[0] tx started: tx:0 @ctrl:alice",
        "[1] created obj:0 (behavior: Cell) @ctrl:alice",
        "[2] tx committed: tx:0",
    ]
    assert out.runtime.tx is None


def test_8_3_nested_begin_is_tx_invalid_during_tx(run):
    """§8.3 [R]: TxInvalidDuringTx; the open tx is left untouched."""
    out = run("main { begin(); begin() }")
    assert out.error == "TxInvalidDuringTx: operation invalid during active transaction"
    assert out.runtime.tx is not None and out.runtime.tx.id == 0


def test_8_6_commit_without_tx_is_no_active_tx(run):
    """§8.6: TxNoActiveTx."""
    assert run("main { return commit(tx:0) }").error == "TxNoActiveTx: no active transaction"
    assert run("main { return abort(tx:0) }").error == "TxNoActiveTx: no active transaction"


def test_8_6_commit_with_wrong_id_is_tx_not_found(run):
    """§8.6, §8.7: TxNotFound(id); nothing changes, the tx stays open."""
    out = run("main { begin(); return commit(tx:7) }")
    assert out.error == "TxNotFound: transaction not found: tx:7"
    assert out.runtime.tx is not None
    out = run("main { begin(); return abort(tx:7) }")
    assert out.error == "TxNotFound: transaction not found: tx:7"


def test_8_7_abort_restores_store_and_answers_nothing(run):
    """§8.7: buffers dropped; direct changes (moveObject) undone; TransactionAborted."""
    out = run(
        CELL
        + """
    main {
      let c = create Cell
      call(c, ["set", 1])
      let t = begin()
      call(c, ["set", 2])
      move_object(c, "far")
      let d = create Cell
      let r = abort(t)
      return [r, call!(c, ["get"]), get_machine(c)]
    }"""
    )
    assert out.text == '[nothing, 1, just "local"]'
    assert 1 not in out.runtime.store
    assert out.events(TransactionAborted) == [TransactionAborted(0)]


def test_8_5_out_of_band_removal_fails_validation_and_rolls_back(compile, run_on):
    """§8.5, §8.6: an observed object removed behind the tx's back: TxConflict, the store
    restored to its state at begin, the tx closed."""
    first = compile(
        CELL
        + """
    main {
      let c = create Cell
      let t = begin()
      call(c, ["move", "elsewhere"])
      fail "leave the transaction open"
    }"""
    )
    runtime = Runtime(first)
    assert run_on(runtime).error == "Failed: leave the transaction open"
    assert runtime.tx is not None  # §8.8: an error at top level keeps the tx open
    runtime.store.remove(0)  # an out-of-band change: the object disappears
    second = compile("main { return commit(tx:0) }")
    runtime.load(second)
    out = run_on(runtime, second)
    assert out.error == "TxConflict: transaction conflict: tx:0"
    assert runtime.tx is None
    # Like the reference's snapshot, the rollback restores the store as it was at begin.
    assert runtime.store.get(0).machine == "local"


def test_8_6_commit_applies_moves_and_states(run):
    out = run(
        CELL
        + """
    main {
      let c = create Cell
      let t = begin()
      call(c, ["set", 5])
      call(c, ["move", "m2"])
      commit(t)
      return [get_machine(c), unsafe reflect(c)]
    }"""
    )
    assert out.text == '[just "m2", just [obj:0, "m2", nothing, nothing]]'
    assert out.runtime.store.state(0) == (5,)


def test_8_atomic_block_aborts_on_failure(run):
    """docs/language.md atomic: the body's failure aborts the tx, the store is as before."""
    out = run(
        CELL
        + """
    main {
      let c = create Cell
      atomic { call!(c, ["set", 3]); fail "no" } else (why) { return [why, call!(c, ["get"])] }
    }"""
    )
    assert out.text == '["no", 0]'
    assert len(out.events(TransactionAborted)) == 1


def test_8_8_open_tx_survives_top_level_error(run):
    """§8.8: a failing top-level program leaves the tx open (profile R)."""
    out = run("main { begin(); fail 1 }")
    assert out.error == "Failed: 1"
    assert out.runtime.tx is not None


def test_7_failed_callee_undoes_the_tx_it_began(run):
    """docs/semantics.md: a failed callee's effects are undone, including a tx it began."""
    out = run("""
    behavior Opener { on _ { begin(); fail "oops" } }
    main { let r = call(create Opener, 0); return [r, current_controller()] }""")
    assert out.text == "[nothing, nothing]"
    assert out.runtime.tx is None
    assert out.lines[-2:] == ["[1] tx started: tx:0 (reverted)", "[2] called obj:0 with 0"]


def test_7_failed_callee_undoes_its_abort_of_the_callers_tx(run):
    """A callee that aborts the caller's tx and then fails: the tx is back, with its overlay
    and its world log (the later abort still restores the moved object)."""
    out = run(
        CELL
        + """
    behavior Saboteur { on [t] { abort(t); fail "undo me" } }
    main {
      let c = create Cell
      let t = begin()
      call(c, ["set", 8])
      move_object(c, "far")
      let s = create Saboteur
      let r = call(s, [t])
      let during = [get_machine(c), unsafe reify_tx_state()]
      abort(t)
      return [r, during, get_machine(c)]
    }"""
    )
    # The txLog keeps the call to the saboteur itself (recorded before it ran, §7.1).
    assert out.text == '[nothing, [just "far", just [tx:0, 2, 1, 0, 2]], just "local"]'
    assert out.runtime.store.state(0) == ()
