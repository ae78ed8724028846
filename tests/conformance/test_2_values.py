"""Values and identifiers (spec §2): fresh ids (§2.5), the answers' encoding (§2.3)."""

from __future__ import annotations

IDS = """
behavior B { on _ { return 0 } }
main { let a = create B; let t = begin(); let b = create B; return [a, b, t] }
"""


def test_2_5_ids_start_at_0_for_each_counter(run):
    """§2.5 [R]: two independent counters from base 0, regardless of interleaving."""
    assert run(IDS).text == "[obj:0, obj:1, tx:0]"


def test_2_5_node_prefix_starts_both_counters_at_prefix_shifted_48(run):
    """§2.5: prefix 1 gives obj:281474976710656, then ...657; prefix 9001 gives
    2533556265372614656 for both the first object and the first transaction."""
    out = run(IDS, node_prefix=1)
    assert out.text == "[obj:281474976710656, obj:281474976710657, tx:281474976710656]"
    assert out.lines[0] == "[0] created obj:281474976710656 (behavior: B)"
    out = run(IDS, node_prefix=9001)
    assert out.text == "[obj:2533556265372614656, obj:2533556265372614657, tx:2533556265372614656]"


def test_2_3_answers_are_encoded_as_values(run):
    """§2.3 [R]: a successful call answers just its output (a callee answering nothing gives
    just nothing, distinguishable from a failed call's nothing, §7.1 step 9); setState and
    abort answer nothing; commit and destroy answer true."""
    out = run("""
    behavior Quiet { on _ { return nothing } }
    main {
      let q = create Quiet
      let t = begin()
      let aborted = abort(t)
      let u = begin()
      return [call(q, 0), set_state([]), aborted, commit(u), destroy(q)]
    }""")
    assert out.text == "[just nothing, nothing, nothing, true, true]"
