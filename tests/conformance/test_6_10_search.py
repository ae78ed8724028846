"""Nondeterminism that searches (spec §6.10, our semantics: docs/semantics.md,
"Nondeterminism"): choice points inside a transaction, NoSolution, SearchLimit,
NotSearchable and `solutions`."""

from __future__ import annotations

from avm_vm.trace import SearchEnded


def test_6_10_choose_in_a_transaction_searches(run):
    out = run("main { atomic { let a = choose([4, 5, 6]); require(a % 3 == 0); return a } }")
    assert out.text == "6"
    assert out.events(SearchEnded) == [SearchEnded(0, "solved", 3, 1, (6,))]


def test_6_10_an_exhausted_search_fails_with_no_solution(run):
    out = run("main { atomic { require(choose([1, 2]) > 2) } return 0 }")
    assert out.error == "NoSolution: no choice satisfies the requirements (2 combinations tried)"


def test_6_10_the_attempt_limit(run):
    out = run("main { atomic { require(choose([1, 2, 3]) > 2) } return 0 }", max_search=2)
    assert out.error.startswith("SearchLimit: search limit reached: 2 combinations tried")


def test_6_10_entropy_in_a_searching_transaction_is_refused(run):
    out = run("main { atomic { choose([1]); entropy() } return 0 }")
    assert out.error.startswith("NotSearchable: entropy() cannot run in a transaction that")


def test_6_10_solutions_collects_every_answer(run):
    out = run("main { atomic { let a = choose([3, 1, 2]); require(a != 1); return solutions(a) } }")
    assert out.text == "[3, 2]"
    out = run("main { return solutions(1) }", profile="r")
    assert out.error == "NondetNotImplemented: nondeterminism not implemented: solutions"
