"""Search at commit (docs/semantics.md, "Nondeterminism"): choice points, backtracking,
the attempt limit, effects a searching transaction refuses, and `solutions`."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from avm_vm import cli as avm_cli
from avm_vm.runtime.core import RunError, Runtime, RuntimeOptions
from avm_vm.trace import SearchEnded, TransactionAborted, TransactionStarted
from avm_vm.values import Value, render
from avmc.compiler import compile_source

JITS = ["off", "on"]


def run(source: str, **options: object) -> tuple[Runtime, Value]:
    runtime = Runtime(compile_source(source, "search.avm"), RuntimeOptions(**options))  # type: ignore[arg-type]
    return runtime, runtime.run_main()


def answer(source: str, **options: object) -> str:
    return render(run(source, **options)[1])


def failure(source: str, **options: object) -> RunError:
    with pytest.raises(RunError) as caught:
        run(source, **options)
    return caught.value


ISSUE = """
main {
  atomic {
    let a = choose([1, 2, 3])
    let b = choose([1, 2, 3])
    require(a + b == 5 and a > b)
    return [a, b]
  }
}
"""


@pytest.mark.parametrize("jit", JITS)
def test_the_issue_program_answers_3_2(jit: str) -> None:
    runtime, value = run(ISSUE, jit=jit)
    assert render(value) == "[3, 2]"
    (ended,) = [e.event for e in runtime.trace.entries if type(e.event) is SearchEnded]
    # depth first in the order given: (1,1) (1,2) (1,3) (2,1) (2,2) (2,3) (3,1) (3,2)
    assert ended == SearchEnded(0, "solved", 8, 1, (3, 2))


def test_an_abandoned_run_leaves_nothing_behind() -> None:
    """Each failed run's state writes, creations and trace entries are undone; the
    committed run's stay, and registers are those of the run that committed."""
    runtime, value = run("""
    behavior Cell {
      on ["set", v] { set_state([v]); return v }
      on ["get"] { return get_state()[0] }
    }
    main {
      let cell = create Cell
      call!(cell, ["set", 0])
      let seen = 0
      atomic {
        seen += 1
        let v = choose([5, 6, 7])
        call!(cell, ["set", v])
        let made = create Cell
        require(v == 7)
      }
      return [seen, call!(cell, ["get"])]
    }""")
    assert render(value) == "[1, 7]"
    assert len(runtime.store) == 2  # the cell and the one made by the committed run
    started = [e for e in runtime.trace.entries if type(e.event) is TransactionStarted]
    assert len(started) == 1
    assert not any(e.reverted for e in runtime.trace.entries)


def test_exhaustion_is_a_no_solution_that_else_catches() -> None:
    out = answer("""
    main {
      let x = 1
      atomic {
        x = choose([1, 2])
        let y = choose([3, 4])
        require(x + y == 9)
        return "solved"
      } else (err, kind) {
        return [kind, err, x]
      }
    }""")
    assert out == (
        '["NoSolution", "no choice satisfies the requirements (4 combinations tried)", 1]'
    )


def test_exhaustion_without_else_fails_the_run() -> None:
    error = failure("main { atomic { let a = choose([1, 2]); require(a > 5) } return 0 }")
    assert str(error) == "NoSolution: no choice satisfies the requirements (2 combinations tried)"


def test_a_transaction_without_choices_still_fails_with_tx_conflict() -> None:
    error = failure("main { atomic { require(false) } return 0 }")
    assert error.error.kind.qualified_name == "TxConflict"


def test_the_attempt_limit() -> None:
    source = """
    main {
      atomic {
        let a = choose([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
        let b = choose([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
        require(a == 10 and b == 10)
        return [a, b]
      } else (err, kind) {
        return [kind, err]
      }
    }"""
    assert answer(source, max_search=100) == "[10, 10]"
    out = answer(source, max_search=99)
    assert out == (
        '["SearchLimit", "search limit reached: 99 combinations tried without satisfying '
        'the requirements (raise it with --max-search)"]'
    )


def test_fuel_bounds_the_whole_search() -> None:
    """Fuel is never given back when a run is undone: a search that would succeed runs
    out of it, and the error is fatal (no else catches it)."""
    source = """
    main {
      atomic {
        let a = choose([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
        let b = choose([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
        let c = choose([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
        require(a + b + c == 30)
        return [a, b, c]
      } else (err, kind) {
        return kind
      }
    }"""
    assert answer(source) == "[10, 10, 10]"
    runtime = Runtime(compile_source(source, "fuel.avm"), RuntimeOptions(fuel=1_000_000))
    runtime.run_main()
    used = 1_000_000 - runtime.fuel.remaining
    assert used > 1_000 * 32  # every one of the 1,000 runs paid its instructions
    error = failure(source, fuel=used // 2)
    assert error.error.kind.qualified_name == "FuelExhausted"


@pytest.mark.parametrize("jit", JITS)
def test_choices_made_by_callees_take_part(jit: str) -> None:
    out = answer(
        """
    behavior Picker {
      on ["pick", options] { return choose(options) }
      on ["pair"] {
        let a = call!(self, ["pick", [1, 2, 3]])
        return [a, call!(self, ["pick", [10, 20, 30]])]
      }
    }
    main {
      let p = create Picker
      atomic {
        let pair = call!(p, ["pair"])
        require(pair[0] * pair[1] == 60)
        return pair
      }
    }""",
        jit=jit,
    )
    assert out == "[2, 30]"


def test_a_dead_end_in_a_callee_unwinds_it() -> None:
    """`choose([])` deep in a callee ends the run at once: the callee's effects are
    undone and the body re-runs with the next choice."""
    out = answer("""
    behavior Cell {
      on ["try", v] {
        set_state([v])
        if v < 3 { choose([]) }
        return v
      }
      on ["get"] { return get_state()[0] }
    }
    main {
      let cell = create Cell
      atomic { call!(cell, ["try", choose([1, 2, 3, 4])]) }
      return call!(cell, ["get"])
    }""")
    assert out == "3"


def test_a_failed_requirement_after_a_choice_ends_the_run_early() -> None:
    """Only the runs that pass the requirement reach the log after it."""
    logged: list[Value] = []
    runtime = Runtime(
        compile_source(
            """
        main {
          atomic {
            let a = choose([1, 2, 3, 4])
            require(a % 2 == 0)
            log(a)
            require(a > 2)
            return a
          }
        }""",
            "early.avm",
        )
    )
    runtime.log_sink = lambda value, where: logged.append(value)
    assert runtime.run_main() == 4
    assert logged == [2, 4]


@pytest.mark.parametrize(
    "effect, what",
    [
        ("entropy()", "entropy()"),
        ("now()", "now()"),
        ('unsafe register_pure("f", f)', "register_pure"),
    ],
)
def test_effects_that_cannot_be_searched_are_refused(effect: str, what: str) -> None:
    source = f"""
    fn f(x) {{ return x }}
    main {{
      atomic {{
        let a = choose([1, 2])
        {effect}
        return a
      }} else (err, kind) {{
        return [kind, err]
      }}
    }}"""
    assert answer(source) == (
        f'["NotSearchable", "{what} cannot run in a transaction that searches (it has made a '
        'choice or is being re-run): its effect could not be undone or repeated"]'
    )


def test_an_effect_before_the_first_choice_is_refused_when_the_body_re_runs() -> None:
    out = answer("""
    main {
      atomic {
        let t = now()
        let a = choose([1, 2])
        require(a == 2)
        return a
      } else (err, kind) {
        return kind
      }
    }""")
    assert out == '"NotSearchable"'
    # Without a second run there is nothing to refuse.
    assert answer("main { atomic { let t = now(); return choose([1, 2]) } }") == "1"


def test_a_remote_call_is_refused_in_a_searching_transaction() -> None:
    class Transport:
        def __init__(self) -> None:
            self.calls = 0

        def call(self, machine: str, target: int, message: Value, sender: int) -> Value:
            self.calls += 1
            return 1

    source = """
    main {
      let far = create Far
      move_object(far, "elsewhere")
      atomic {
        let a = choose([1, 2])
        call(far, a)
        return a
      } else (err, kind) {
        return [kind, err]
      }
    }
    behavior Far { on x { return x } }
    """
    transport = Transport()
    runtime = Runtime(compile_source(source, "far.avm"), transport=transport)
    out = render(runtime.run_main())
    assert out.startswith('["NotSearchable", "a call to an object on another machine cannot')
    assert transport.calls == 0


@pytest.mark.parametrize("jit", JITS)
def test_label_backtracks_inside_a_transaction(jit: str) -> None:
    """Outside a transaction label keeps its first consistent value; inside one it is a
    choice point that the requirement sends back to its next value."""
    source = """
    main {
      let x = new_var([1, 2, 3, 4])
      let y = new_var([1, 2, 3, 4])
      post(["lt", x, y])
      let first = [label(x), label(y)]
      let x2 = new_var([1, 2, 3, 4])
      let y2 = new_var([1, 2, 3, 4])
      post(["lt", x2, y2])
      atomic {
        let a = label(x2)
        let b = label(y2)
        require(a + b == 7 and a > 2)
        return [first, [a, b]]
      }
    }"""
    assert answer(source, jit=jit) == "[[1, 2], [3, 4]]"


def test_label_with_no_value_left_backtracks_the_earlier_label() -> None:
    out = answer("""
    main {
      atomic {
        let x = new_var([1, 2, 3])
        let y = new_var([1, 2, 3])
        post(["neq_offset", y, x, 1])
        post(["neq", x, y])
        let a = label(x)
        narrow(y, [a + 1, a + 2])
        return [a, label(y)]
      }
    }""")
    # x = 1: y in {2, 3} minus {x + 1}, {x}: y = 3
    assert out == "[1, 3]"


@pytest.mark.parametrize("jit", JITS)
def test_solutions_collects_every_answer_and_undoes_every_run(jit: str) -> None:
    runtime, value = run(
        """
    behavior Cell { on v { set_state([v]); return v } }
    main {
      let cell = create Cell
      let all = []
      atomic {
        let a = choose([1, 2, 3, 4])
        let b = choose([1, 2, 3, 4])
        call!(cell, a * 10 + b)
        require(a < b)
        all = solutions([a, b])
        call!(cell, 99)
      }
      return all
    }""",
        jit=jit,
    )
    assert render(value) == "[[1, 2], [1, 3], [1, 4], [2, 3], [2, 4], [3, 4]]"
    assert runtime.store.state(0) == (99,)  # only what ran after the search was committed
    ended = [e.event for e in runtime.trace.entries if type(e.event) is SearchEnded]
    assert ended == [SearchEnded(0, "collected", 16, 6, None)]


def test_solutions_with_no_run_reaching_it_is_no_solution() -> None:
    out = answer("""
    main {
      let all = ["untouched"]
      atomic {
        all = solutions(choose([]))
      } else (err, kind) {
        return [kind, all]
      }
      return all
    }""")
    assert out == '["NoSolution", ["untouched"]]'


def test_solutions_where_no_requirement_holds_answers_an_empty_list() -> None:
    """A requirement made before the first choice is checked where `solutions` runs (one
    made after it ends a run early, so that run never reaches `solutions`)."""
    source = "main { atomic { require(X); let a = choose([1, 2]); return solutions(a) } }"
    assert answer(source.replace("X", "false")) == "[]"
    assert answer(source.replace("X", "true")) == "[1, 2]"


def test_solutions_must_run_where_the_transaction_began() -> None:
    error = failure("""
    behavior B { on x { return solutions(x) } }
    main { let b = create B; atomic { call!(b, choose([1, 2])) } return 0 }""")
    assert "solutions: run it in the function that began tx:0" in str(error)


def test_no_choice_after_solutions_answered() -> None:
    error = failure("main { atomic { let all = solutions(choose([1])); choose([2]) } return 0 }")
    assert "choose: the search of tx:0 is over" in str(error)


def test_an_aborted_search_is_in_the_trace() -> None:
    runtime, value = run(
        ISSUE.replace("a > b", "a > 5")
        .replace("return [a, b]", "return 0")
        .replace("  }\n}", "  } else { return 1 }\n}")
    )
    assert value == 1
    kinds = [type(e.event) for e in runtime.trace.entries]
    assert kinds == [TransactionStarted, SearchEnded, TransactionAborted]
    assert runtime.trace.entries[1].event == SearchEnded(0, "exhausted", 9, 0, None)


def test_max_search_on_the_command_line(tmp_path) -> None:
    source = tmp_path / "limit.avm"
    source.write_text(ISSUE)
    runner = CliRunner()
    ran = runner.invoke(avm_cli.main, ["run", str(source), "--max-search", "3"])
    assert ran.exit_code == 1
    assert "SearchLimit: search limit reached: 3 combinations tried" in ran.output
    assert runner.invoke(avm_cli.main, ["run", str(source)]).stdout == "[3, 2]\n"


def test_explicit_begin_and_commit_search_too() -> None:
    source = """
    main {
      let t = begin()
      let a = choose([1, 2, 3])
      require(a == 3)
      commit(t)
      return [a, t]
    }"""
    assert answer(source) == "[3, tx:0]"


# Without the JIT in the slow suite: tests/test_examples.py checks the same output on the VM.
@pytest.mark.parametrize(
    "jit", [pytest.param(j, marks=pytest.mark.slow) if j == "off" else j for j in JITS]
)
def test_the_nqueens_example_with_and_without_the_jit(jit: str) -> None:
    examples = Path(__file__).parents[1] / "examples"
    ran = CliRunner().invoke(avm_cli.main, ["run", str(examples / "nqueens.avm"), "--jit", jit])
    assert ran.exit_code == 0, ran.output
    assert ran.stdout == (examples / "nqueens.expected").read_text(encoding="utf-8")
    # the table of the issue: solution counts for N = 1..8
    for n, count in enumerate([1, 0, 0, 2, 10, 4, 40, 92], start=1):
        assert f"[{n}, {count}, " in ran.stdout
