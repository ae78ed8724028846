"""Transactions (spec §8, profile R rules) and the runtime's undo of failed callees."""

from __future__ import annotations

from avm_vm.runtime.core import Runtime
from avm_vm.trace import TransactionAborted
from avm_vm.values import NO_OBJECT_ID, Value

CELL = """
behavior Cell {
  field value = 0
  on ["set", v] { value = v; return v }
  on ["inc"] { value += 1; return value }
  on ["get"] { return value }
  on ["raw"] { return get_state() }
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


def test_8_atomic_else_sees_a_failed_commit_and_the_error_kind(run):
    """docs/language.md atomic: the handler also runs when the commit fails (here after a
    `return` in the body), and `else (err, kind)` binds the kind; the store is as before."""
    out = run(
        CELL
        + """
    main {
      let c = create Cell
      let r = 0
      atomic { call!(c, ["set", 3]); require(false); return 1 } else (err, kind) {
        r = [kind, err]
      }
      return [r, call!(c, ["get"])]
    }"""
    )
    assert out.text == '[["TxConflict", "transaction conflict: tx:0"], 0]'


def test_8_atomic_without_else_fails_with_the_bodys_own_error(run):
    """docs/language.md atomic: with no handler, the block fails again with the body's very
    error (its kind too), once the transaction is aborted."""
    out = run("main { atomic { let x = [1][5] } return 0 }")
    assert out.error == "IndexOutOfRange: index 5 out of range for a list of length 1"
    assert out.runtime.tx is None
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
    assert out.lines[-2:] == [
        "[1] tx started: tx:0 (reverted)",
        "[2] called obj:0 with 0 -> failed: Failed: oops (test.avm:2:39)",
    ]


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


def test_8_6_commit_order_creates_transfers_states_destroys(run):
    """§8.6 [R] step 3: creates first (a pending creation's state applies), then transfers,
    then states, then destroys (so a destroyed object's pending state and transfer do not
    bring it back; [A] applies states last and would)."""
    out = run(
        CELL
        + """
    main {
      let kept = create Cell
      let gone = create Cell
      let t = begin()
      let fresh = create Cell under "c"
      call(fresh, ["set", 1])
      transfer(kept, "x")
      call(gone, ["set", 5])
      transfer(gone, "y")
      destroy(gone)
      let answer = commit(t)
      return [answer, unsafe reflect(fresh), get_controller(kept), call!(fresh, ["get"])]
    }"""
    )
    assert out.text == '[true, just [obj:2, "local", just "c", just "c"], just "x", 1]'
    store = out.runtime.store
    assert 1 not in store and 1 not in store.states
    assert store.state(2) == (1,)


def test_8_6_transfer_of_an_object_gone_out_of_band_is_skipped(compile, run_on):
    """§8.6 step 3.2: transfers skip objects without metadata; a transfer does not put the
    object in the read set (§8.2), so the commit succeeds and nothing is reinstalled."""
    runtime = Runtime(
        compile(CELL + 'main { let c = create Cell; begin(); transfer(c, "x"); fail "open" }')
    )
    assert run_on(runtime).error == "Failed: open"
    runtime.store.remove(0)
    commit = compile("main { return commit(tx:0) }")
    runtime.load(commit)
    assert run_on(runtime, commit).text == "true"
    assert 0 not in runtime.store and len(runtime.store) == 0


def test_8_9_read_your_writes_inside_a_tx(run):
    """§8.9 as amended (docs/semantics.md "Read-your-writes"): inside a tx, getState sees the
    latest pending setState, so two increments make 2; the reference (--profile r) reads the
    committed store and loses one."""
    source = (
        CELL
        + """
    main {
      let c = create Cell
      let t = begin()
      call(c, ["inc"])
      let seen = call!(c, ["get"])
      call(c, ["inc"])
      commit(t)
      return [seen, call!(c, ["get"])]
    }"""
    )
    assert run(source).text == "[1, 2]"
    assert run(source, profile="r").text == "[0, 1]"


def test_8_9_object_created_in_a_tx_has_no_state_entry_until_commit(run):
    """§8.9: a pending creation reads []; with read-your-writes it then sees its own pending
    write (the reference keeps reading []); the store gets the entry at commit."""
    source = (
        CELL
        + """
    main {
      let t = begin()
      let c = create Cell
      let before = call!(c, ["raw"])
      call(c, ["set", 4])
      let after = call!(c, ["raw"])
      commit(t)
      return [before, after, call!(c, ["raw"])]
    }"""
    )
    assert run(source).text == "[[], [4], [4]]"
    assert run(source, profile="r").text == "[[], [], [4]]"


def test_8_9_remote_calls_escape_the_transaction(compile, run_on):
    """§8.9, §7.5: a remote call runs at once through the transport, leaves no txLog or
    read-set entry, and an abort does not undo it."""
    sent: list[tuple[str, int, Value, int]] = []

    class Recorder:
        def call(self, machine: str, target: int, message: Value, sender: int) -> Value:
            sent.append((machine, target, message, sender))
            return "ok"

    program = compile(
        CELL
        + """
    main {
      let c = create Cell
      move_object(c, "far")
      let t = begin()
      let r = call(c, ["set", 1])
      let during = unsafe reify_tx_state()
      abort(t)
      return [r, during]
    }"""
    )
    out = run_on(Runtime(program, transport=Recorder()))
    assert out.text == '[just "ok", just [tx:0, 0, 0, 0, 0]]'
    assert sent == [("far", 0, ("set", 1), NO_OBJECT_ID)]
    assert out.lines[3:] == ['[3] called obj:0 with ["set", 1] -> "ok"', "[4] tx aborted: tx:0"]


def test_8_9_ids_allocated_in_an_aborted_tx_are_not_reused(run):
    """§8.9, §2.5: the object and tx counters are never rolled back."""
    out = run(
        CELL
        + """
    main {
      let t = begin()
      let a = create Cell
      abort(t)
      let u = begin()
      return [a, create Cell, t, u]
    }"""
    )
    assert out.text == "[obj:0, obj:1, tx:0, tx:1]"


def test_8_7_abort_keeps_pure_registry_changes(run):
    """§8.7: an abort does not roll back registerPure/updatePure (not transactional)."""
    out = run("""
    fn one(x) { return 1 }
    fn two(x) { return 2 }
    main {
      let t = begin()
      unsafe register_pure("fresh", one)
      update_pure("one", two)
      abort(t)
      return [call_pure("fresh", [0]), call_pure("one", [0])]
    }""")
    assert out.text == "[1, 2]"


def test_ours_an_object_locked_by_a_commit_across_nodes_answers_at_once(run_on, compile):
    """docs/transactions.md: while a transaction that reached other nodes commits, its
    objects are locked; a call into one fails at once with ObjLocked (no wait)."""
    make = compile(CELL + "main { return create Cell }")
    use = compile('main { return call(obj:0, ["get"]) }')
    runtime = Runtime((make, use))
    assert run_on(runtime, make).text == "obj:0"
    runtime.store.lock({0}, 7)
    out = run_on(runtime, use)
    assert out.error == "ObjLocked: obj:0 is locked while tx:7 commits across nodes; try again"
    runtime.store.unlock({0}, 7)
    assert run_on(runtime, use).text == "just 0"


class _Elder:
    """A network whose only other machine cannot join transactions."""

    def locate(self, object_id: int) -> str | None:
        return "elder" if object_id >> 48 == 9 else None

    def is_peer(self, machine: str) -> bool:
        return machine == "elder"

    def cannot_join(self, machine: str) -> str | None:
        return "it is too old"


def test_ours_a_remote_call_that_cannot_join_fails_inside_a_transaction(run_on, compile):
    """docs/transactions.md: a remote call inside a transaction joins it, or fails
    (TxCannotJoin) naming the call and the node; it never escapes the transaction."""
    program = compile(f'main {{ atomic {{ return call(obj:{9 << 48}, "hi") }} }}')
    out = run_on(Runtime(program, network=_Elder()))
    assert out.error == (
        f"TxCannotJoin: the call to obj:{9 << 48} on node elder cannot join tx:0: it is too old"
    )
