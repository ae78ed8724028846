"""The spec's examples (§14), through compiled programs: PingPong, Battleship, N-queens."""

from __future__ import annotations

import pytest

from avm_vm.values import render

PINGPONG_PREFIX = [
    "[0] tx started: tx:0",
    "[1] created obj:0 (behavior: ping)",
    "[2] created obj:1 (behavior: pong)",
    "[3] tx committed: tx:0",
]

# The calls of §14.1 for each max, innermost first (post-order, §7.3).
PINGPONG_CALLS = {
    0: ['[4] called obj:0 with ["Ping", 0, 0, obj:1] -> ["done", 0]'],
    1: [
        '[4] called obj:1 with ["Pong", 1, 1, obj:1] -> ["done", 1]',
        '[5] called obj:0 with ["Ping", 0, 1, obj:1] -> just ["done", 1]',
    ],
    2: [
        '[4] called obj:0 with ["Ping", 2, 2, obj:1] -> ["done", 2]',
        '[5] called obj:1 with ["Pong", 1, 2, obj:1] -> just ["done", 2]',
        '[6] called obj:0 with ["Ping", 0, 2, obj:1] -> just just ["done", 2]',
    ],
    3: [
        '[4] called obj:1 with ["Pong", 3, 3, obj:1] -> ["done", 3]',
        '[5] called obj:0 with ["Ping", 2, 3, obj:1] -> just ["done", 3]',
        '[6] called obj:1 with ["Pong", 1, 3, obj:1] -> just just ["done", 3]',
        '[7] called obj:0 with ["Ping", 0, 3, obj:1] -> just just just ["done", 3]',
    ],
}


@pytest.mark.parametrize("rounds", sorted(PINGPONG_CALLS))
def test_14_1_pingpong_value_and_trace(run, pingpong, rounds):
    """§14.1: max + 1 calls, each wrapping the answer in one more just; the trace has
    4 + max + 1 entries (5 for max 0 ... 8 for max 3), no controller."""
    out = run(pingpong(rounds))
    assert out.text == "just " * (rounds + 1) + f'["done", {rounds}]'
    assert out.lines == PINGPONG_PREFIX + PINGPONG_CALLS[rounds]


def test_14_3_battleship_trace_and_final_states(run, example):
    """§14.3 [R]: [just true, just false]; 12 entries; board 1 (obj:0) keeps both ship
    messages, board 2 (obj:1) one."""
    out = run(example("battleship"))
    assert out.text == "[just true, just false]"
    assert out.lines == [
        "[0] tx started: tx:0",
        "[1] created obj:0 (behavior: board)",
        "[2] created obj:1 (behavior: board)",
        "[3] tx committed: tx:0",
        '[4] state updated: obj:0 = [["ship", 0, 0, 3]]',
        '[5] called obj:0 with ["ship", 0, 0, 3] -> true',
        '[6] state updated: obj:0 = [["ship", 0, 0, 3], ["ship", 5, 2, 2]]',
        '[7] called obj:0 with ["ship", 5, 2, 2] -> true',
        '[8] state updated: obj:1 = [["ship", 1, 1, 4]]',
        '[9] called obj:1 with ["ship", 1, 1, 4] -> true',
        '[10] called obj:1 with ["coord", 1, 1] -> true',
        '[11] called obj:1 with ["coord", 9, 9] -> false',
    ]
    store = out.runtime.store
    assert store.state(0) == (("ship", 0, 0, 3), ("ship", 5, 2, 2))
    assert store.state(1) == (("ship", 1, 1, 4),)


QUEENS = """
main {
  let n = N
  let wanted = WANTED
  let qs = []
  while len(qs) < n {
    let domain = []
    let v = 1
    while v <= n { domain = append(domain, v); v += 1 }
    qs = append(qs, new_var(domain))
  }
  post(["alldiff", qs])
  let a = 0
  while a < n {
    let b = a + 1
    while b < n {
      post(["neq_offset", qs[a], qs[b], b - a])  // the two diagonals
      post(["neq_offset", qs[b], qs[a], b - a])
      b += 1
    }
    a += 1
  }
  // Depth-first search, backtracking by abort (spec §6.9): each node fixes its prefix of
  // queens inside a transaction, reads the next queen's propagated domain, and aborts.
  let found = []
  let stack = [[]]
  while len(stack) > 0 and len(found) < wanted {
    let prefix = stack[len(stack) - 1]
    stack = stack[:len(stack) - 1]
    let t = begin()
    let ok = true
    let k = 0
    for v in prefix { if ok { ok = narrow(qs[k], [v]) } k += 1 }
    if ok and len(prefix) == n { found = append(found, prefix) }
    if ok and len(prefix) < n {
      let vars = (unsafe reify_constraints())[0]
      let domain = vars[qs[len(prefix)]][1]
      let j = len(domain)
      while j > 0 { j -= 1; stack = append(stack, append(prefix, domain[j])) }
    }
    abort(t)
  }
  return found
}
"""


def _queens(n: int, wanted: int) -> str:
    return QUEENS.replace("= N", f"= {n}").replace("= WANTED", f"= {wanted}")


@pytest.mark.parametrize(
    ("n", "count", "first"),
    [
        (1, 1, "[1]"),
        (2, 0, None),
        (3, 0, None),
        (4, 2, "[2, 4, 1, 3]"),
        (5, 10, "[1, 3, 5, 2, 4]"),
        (6, 4, "[2, 4, 6, 1, 3, 5]"),
    ],
)
def test_14_5_n_queens_counts_and_first_solutions(run, n, count, first):
    """§14.5's table through the FD layer: every solution, in lexicographic order."""
    out = run(_queens(n, 100))
    assert len(out.value) == count
    assert (render(out.value[0]) if out.value else None) == first


def test_14_5_n_queens_4_has_exactly_the_two_solutions(run):
    assert run(_queens(4, 100)).text == "[[2, 4, 1, 3], [3, 1, 4, 2]]"


@pytest.mark.parametrize(
    ("n", "first"), [(7, "[[1, 3, 5, 7, 2, 4, 6]]"), (8, "[[1, 5, 8, 6, 3, 7, 2, 4]]")]
)
def test_14_5_n_queens_first_solution_of_larger_boards(run, n, first):
    """§14.5: the search stops at the first solution."""
    assert run(_queens(n, 1)).text == first
