"""Behavior clauses dispatched on the message's head (`avmc.lower._clauses`): a run of
clauses whose patterns start with literal strings is entered by a binary search on the
message's first item, and the meaning stays "the first clause whose pattern matches and
whose guard holds runs". Every program here is also compiled with the dispatch turned off
(clauses tried one after the other), which must answer the same."""

from __future__ import annotations

import math

import pytest

from avm_vm.format.opcodes import Op
from avm_vm.format.program import Program
from avm_vm.runtime.core import Runtime, RuntimeOptions
from avm_vm.values import render
from avmc import lower
from avmc.compiler import compile_source

# Clauses with literal heads (enough of them to be dispatched), a guard that fails for some
# messages, two clauses sharing a head, a variable head in the middle of the literal ones,
# a second run of literal heads after it, and clauses any message reaches.
MIXED = """
behavior Mixed {
  on ["a", x] if x > 10 { return "a big" }
  on ["b", x] { return "b" }
  on ["c", x] if x == 1 { return "c one" }
  on ["d"] { return "d alone" }
  on ["a", x] if x > 5 { return "a middle" }
  on ["e", x, ..rest] { return ["e", rest] }
  on ["f", x] { return "f" }
  on ["g", x] { return "g" }
  on ["h", x] { return "h" }
  on ["i", x] { return "i" }
  on [h, x] if h == "c" { return "c by a variable head" }
  on ["c", x] { return "c shadowed by the variable head" }
  on ["j", x] { return "j" }
  on ["k", x] { return "k" }
  on ["l", x] { return "l" }
  on ["m", x] { return "m" }
  on ["n", x] { return "n" }
  on ["o", x] { return "o" }
  on ["p", x] { return "p" }
  on ["q", x] { return "q" }
  on ["a", x] { return "a small" }
  on [3, x] { return "three" }
  on [] { return "empty" }
  on [x, y] { return ["any pair", x, y] }
  on m if m == "hello" { return "a plain string" }
}
"""

MESSAGES = """[
  ["a", 20], ["a", 7], ["a", 1], ["b", 0], ["c", 1], ["c", 2], ["d"], ["d", 1], ["e", 1],
  ["e", 1, 2, 3], ["i", 0], ["j", 0], ["q", 9], ["r", 0], ["", 0], ["aa", 0], [3, 4],
  [4, 5], [], ["a"], ["a", 1, 2], [[1], 2], "hello", "a"
]"""

EXPECTED = [
    '"a big"',
    '"a middle"',
    '"a small"',
    '"b"',
    '"c one"',
    '"c by a variable head"',
    '"d alone"',
    '["any pair", "d", 1]',
    '["e", []]',
    '["e", [2, 3]]',
    '"i"',
    '"j"',
    '"q"',
    '["any pair", "r", 0]',
    '["any pair", "", 0]',
    '["any pair", "aa", 0]',
    '"three"',
    '["any pair", 4, 5]',
    '"empty"',
    '"failed"',
    '"failed"',
    '["any pair", [1], 2]',
    '"a plain string"',
    '"failed"',
]


def _main(behavior: str, messages: str) -> str:
    """A main that sends each message and collects the answers (failures as "failed")."""
    return (
        behavior
        + f"""
main {{
  let o = create {behavior.split()[1]}
  let out = []
  for m in {messages} {{
    atomic {{ out = append(out, call!(o, m)) }} else {{ out = append(out, "failed") }}
  }}
  return out
}}
"""
    )


def _compile(source: str, dispatch: bool, monkeypatch: pytest.MonkeyPatch) -> Program:
    with monkeypatch.context() as patch:
        if not dispatch:
            patch.setattr(lower, "MIN_DISPATCH_HEADS", 10**9)
        return compile_source(source, "dispatch.avm")


def _run(program: Program) -> tuple[str, int]:
    runtime = Runtime(program, RuntimeOptions(jit="off"))
    return render(runtime.run_main()), runtime.fuel.used


def _string_comparisons(program: Program) -> int:
    """The `<` tests in the behavior's code: the search's."""
    behavior = program.functions[program.behaviors[0].function]
    return sum(1 for instr in behavior.code if instr[0] is Op.LT)


def test_dispatch_keeps_the_order_of_clauses(monkeypatch: pytest.MonkeyPatch) -> None:
    source = _main(MIXED, MESSAGES)
    dispatched = _compile(source, True, monkeypatch)
    in_turn = _compile(source, False, monkeypatch)
    assert _string_comparisons(dispatched) > 0  # the search is there
    assert _string_comparisons(in_turn) == 0
    answer, _ = _run(dispatched)
    assert answer == "[" + ", ".join(EXPECTED) + "]"
    assert _run(in_turn)[0] == answer


def _numbered(clauses: int, called: int) -> str:
    """A behavior of ``clauses`` clauses `on ["m<i>", x]`, and a main calling clause
    ``called`` (the heads sort as strings, not in clause order)."""
    lines = ["behavior Big {"]
    lines += [f'  on ["m{i}", x] {{ return x + {i} }}' for i in range(clauses)]
    lines += ["}", f'main {{ return call!(create Big, ["m{called}", 1]) }}']
    return "\n".join(lines) + "\n"


def test_few_literal_heads_are_tried_in_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    few = _numbered(lower.MIN_DISPATCH_HEADS - 1, 0)
    assert _string_comparisons(_compile(few, True, monkeypatch)) == 0
    enough = _numbered(lower.MIN_DISPATCH_HEADS, 0)
    assert _string_comparisons(_compile(enough, True, monkeypatch)) > 0


def test_finding_the_last_clause_costs_logarithmic_fuel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fuel counts the instructions run, so it counts the comparisons made: 10 times the
    clauses cost a few more comparisons, not 10 times the fuel."""
    small, large = 1_000, 10_000
    used = {}
    for clauses in (small, large):
        answer, used[clauses] = _run(_compile(_numbered(clauses, clauses - 1), True, monkeypatch))
        assert answer == str(clauses)
    # A level of the search is about 3 instructions; 10x the heads adds log2(10) levels.
    levels = math.ceil(math.log2(large / small)) + 1
    assert used[large] - used[small] <= 3 * levels + lower.LINEAR_HEADS * 3
    # Tried in turn, the last clause costs thousands of steps more than the first.
    in_turn = _run(_compile(_numbered(small, small - 1), False, monkeypatch))[1]
    assert in_turn - used[small] > small
