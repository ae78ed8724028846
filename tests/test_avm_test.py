"""`avm test`: tests written in the language (`test`, `assert`, `expect_fail`) and the runner.

The examples' own tests run through the real `avm` command; the rest drives the command
in-process on small programs written to a temporary directory.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from node_harness import avm as avm_process

from avm_vm.cli import main as avm
from avm_vm.diagnostics import DiagnosticError
from avm_vm.runtime.core import Runtime
from avm_vm.values import Value
from avm_vm.vm.interpreter import Interpreter
from avmc.cli import main as avmc
from avmc.compiler import build
from avmc.lower import TEST_PREFIX

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.avm"))

ACCOUNT = """
behavior Account {
  field balance = 0
  on ["deposit", n] {
    balance += n
    return balance
  }
  on ["withdraw", n] {
    if n > balance { fail "insufficient funds" }
    balance -= n
    return balance
  }
  on ["balance"] { return balance }
}

main { return 1 }
"""


def run_avm_test(*args: str) -> Result:
    return CliRunner().invoke(avm, ["test", *args], catch_exceptions=False)


def write(directory: Path, name: str, tests: str) -> Path:
    path = directory / name
    path.write_text(ACCOUNT + tests, encoding="utf-8")
    return path


def outcomes(*args: str) -> dict[str, dict]:
    """The --json report's tests by name."""
    result = run_avm_test("--json", *args)
    return {test["name"]: test for test in json.loads(result.output)["tests"]}


# ---------------------------------------------------------------- the examples


def test_the_examples_tests_pass_under_avm_test() -> None:
    done = avm_process("test", str(ROOT / "examples"), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for example in EXAMPLES:
        line = next(line for line in lines if line.startswith(f"{example} "))
        assert set(line.split(" ", 1)[1]) == {"."}, line
    assert " passed, 0 failed in " in lines[-1]


def test_every_example_has_tests_of_its_own() -> None:
    result = run_avm_test("--json", str(ROOT / "examples"))
    per_file: dict[str, int] = {}
    for test in json.loads(result.output)["tests"]:
        per_file[Path(test["file"]).name] = per_file.get(Path(test["file"]).name, 0) + 1
    assert {example.name for example in EXAMPLES} == set(per_file)
    assert min(per_file.values()) >= 2, per_file


def test_tests_stay_out_of_the_tape_unless_asked(tmp_path: Path) -> None:
    source = (ROOT / "examples" / "bank.avm").read_text(encoding="utf-8")
    plain = build(source, "bank.avm").program
    assert not any(f.name.startswith(TEST_PREFIX) for f in plain.functions)
    tape = tmp_path / "bank.tape"
    result = CliRunner().invoke(avmc, ["compile", "--tests", "examples/bank.avm", "-o", str(tape)])
    assert result.exit_code == 0, result.output
    # The compiled tests run from the .tape file as from the source.
    report = run_avm_test(str(tape))
    assert report.exit_code == 0, report.output
    assert "4 passed, 0 failed" in report.output
    run = CliRunner().invoke(avm, ["run", "examples/bank.avm"])
    assert run.output == (ROOT / "examples" / "bank.expected").read_text(encoding="utf-8")


# ---------------------------------------------------------------- failures and output


def test_a_failing_test_exits_1_naming_it_with_the_reason(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bank.avm",
        """
test "deposit" {
  let a = create Account
  call!(a, ["deposit", 100])
  assert call!(a, ["balance"]) == 100
}

test "balance after a withdrawal" {
  let a = create Account
  call!(a, ["deposit", 100])
  let balance = call!(a, ["balance"])
  assert balance == 70
}
""",
    )
    result = run_avm_test(str(path))
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"{path} .F"
    assert f'{path}: test "balance after a withdrawal" (line 24)' in result.output
    assert f"{path}:28:3: Failed: assertion failed: balance == 70 (left: 100, right: 70)" in lines
    # The trace excerpt of that test, and only of that test (a fresh world each).
    assert "  [0] created obj:0 (behavior: Account)" in lines
    assert '  [2] called obj:0 with ["deposit", 100] -> 100' in lines
    assert lines[-1].startswith("1 passed, 1 failed in ")
    verbose = run_avm_test("-v", str(path))
    assert f"{path}::deposit PASSED" in verbose.output
    assert f"{path}::balance after a withdrawal FAILED" in verbose.output


def test_assertion_messages_show_the_expression_and_operands(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "asserts.avm",
        """
test "strings are quoted" { assert "a" ++ "b" == "abc" }
test "parentheses are kept" { assert (1 + 2) * 3 >= 10, "a sum " ++ "times three" }
test "not a comparison" {
  let xs = [1, 2]
  assert len(xs) > 2 or not (xs[0] == 1)
}
test "not a bool" { assert 3 }
""",
    )
    tests = outcomes(str(path))
    message = {name: test["failure"]["message"] for name, test in tests.items()}
    assert message["strings are quoted"] == (
        'assertion failed: "a" ++ "b" == "abc" (left: "ab", right: "abc")'
    )
    assert message["parentheses are kept"] == (
        "assertion failed: (1 + 2) * 3 >= 10 (left: 9, right: 10): a sum times three"
    )
    assert message["not a comparison"] == "assertion failed: len(xs) > 2 or not xs[0] == 1"
    assert tests["not a bool"]["failure"]["kind"] == "TypeMismatch"


def test_expect_fail_checks_that_the_block_fails_and_why(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "expect.avm",
        """
test "any failure" {
  let a = create Account
  expect_fail { call!(a, ["withdraw", 1]) }
}
test "kind and message of the callee" {
  let a = create Account
  expect_fail Failed "insufficient funds" { call!(a, ["withdraw", 1]) }
}
test "a message alone" { expect_fail "boom" { fail "boom" } }
test "another kind" { expect_fail IndexOutOfRange { let x = [][0] } }
test "a transaction conflict is a kind too" { expect_fail TxNoActiveTx { commit(tx:7) } }
test "no failure" {
  let a = create Account
  expect_fail { call!(a, ["deposit", 1]) }
}
test "the wrong message" {
  let a = create Account
  expect_fail "not allowed" { call!(a, ["withdraw", 1]) }
}
test "the wrong kind" { expect_fail TypeMismatch { fail "boom" } }
test "what the block did stays done" {
  let a = create Account
  expect_fail {
    call!(a, ["deposit", 5])
    call!(a, ["withdraw", 50])
  }
  assert call!(a, ["balance"]) == 5
}
""",
    )
    tests = outcomes(str(path))
    passed = {name for name, test in tests.items() if test["outcome"] == "passed"}
    assert passed == {
        "any failure",
        "kind and message of the callee",
        "a message alone",
        "another kind",
        "a transaction conflict is a kind too",
        "what the block did stays done",
    }
    message = {name: (t["failure"] or {}).get("message") for name, t in tests.items()}
    assert message["no failure"] == "expect_fail: expected a failure, but the block did not fail"
    assert message["the wrong message"] == (
        'expect_fail: expected a failure with message "not allowed", but the block failed '
        "with Failed: insufficient funds"
    )
    assert message["the wrong kind"] == (
        "expect_fail: expected a failure of kind TypeMismatch, but the block failed with "
        "Failed: boom"
    )


def test_each_test_runs_in_a_fresh_world(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "fresh.avm",
        """
test "first" {
  assert create Account == obj:0
  let t = begin()
}
test "second" {
  assert create Account == obj:0, "no object of another test"
  atomic { assert create Account == obj:1 }
}
""",
    )
    tests = outcomes(str(path))
    assert [test["outcome"] for test in tests.values()] == ["passed", "passed"]


def test_running_out_of_fuel_fails_the_test(tmp_path: Path) -> None:
    path = write(
        tmp_path, "fuel.avm", 'test "loops" { while true {} }\ntest "quick" { assert true }\n'
    )
    result = run_avm_test("--fuel", "5000", "--json", str(path))
    assert result.exit_code == 1
    tests = {test["name"]: test for test in json.loads(result.output)["tests"]}
    failure = tests["loops"]["failure"]
    assert failure["kind"] == "FuelExhausted"
    assert failure["message"] == "out of fuel after 5000 steps"
    assert tests["quick"]["outcome"] == "passed"


def test_k_selects_tests_by_name(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "k.avm",
        'test "alpha one" { assert true }\ntest "beta" { assert false }\n'
        'test "alpha two" { assert 1 == 1 }\n',
    )
    result = run_avm_test("-k", "alpha", str(path))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == f"{path} .."
    assert set(outcomes("-k", "alpha", str(path))) == {"alpha one", "alpha two"}
    assert run_avm_test("-k", "bet", str(path)).exit_code == 1


def test_json_report(tmp_path: Path) -> None:
    path = write(tmp_path, "j.avm", 'test "ok" { assert true }\n\ntest "bad" { fail "no" }\n')
    result = run_avm_test("--json", str(path))
    assert result.exit_code == 1
    document = json.loads(result.output)  # the whole output is the one document
    assert (document["passed"], document["failed"], document["errors"]) == (1, 1, [])
    ok, bad = document["tests"]
    assert ok["outcome"] == "passed" and ok["failure"] is None and ok["duration"] >= 0
    assert (bad["file"], bad["name"], bad["line"], bad["outcome"]) == (
        str(path),
        "bad",
        19,
        "failed",
    )
    assert bad["failure"]["kind"] == "Failed"
    assert bad["failure"]["message"] == "no"
    assert bad["failure"]["location"] == f"{path}:19:14"


def test_junit_xml_parses_and_counts(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "x.avm",
        'test "ok" { assert true }\ntest "bad <&>" { fail "control \\u{1} & <tag>" }\n',
    )
    broken = tmp_path / "broken.avm"
    broken.write_text("main { return }}\n", encoding="utf-8")
    report = tmp_path / "report.xml"
    result = run_avm_test("--junit-xml", str(report), str(path), str(broken))
    assert result.exit_code == 2
    root = ElementTree.parse(report).getroot()
    suites = {suite.get("name"): suite for suite in root.iter("testsuite")}
    suite = suites[str(path)]
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("2", "1", "0")
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert cases["ok"].find("failure") is None
    failure = cases["bad <&>"].find("failure")
    assert failure is not None and failure.get("type") == "Failed"
    assert failure.get("message") == "control \\x01 & <tag>"
    assert suites[str(broken)].get("errors") == "1"


def test_a_file_that_does_not_compile_does_not_stop_the_others(tmp_path: Path) -> None:
    write(tmp_path, "good.avm", 'test "fine" { assert true }\n')
    (tmp_path / "bad.avm").write_text('test "broken" { assert nope }\n', encoding="utf-8")
    (tmp_path / "none.avm").write_text("main { return 1 }\n", encoding="utf-8")
    result = run_avm_test(str(tmp_path))
    assert result.exit_code == 2
    assert f"{tmp_path / 'good.avm'} ." in result.output
    assert "none.avm" not in result.output  # no tests: skipped
    assert "undefined name 'nope'" in result.output
    assert "1 passed, 0 failed, 1 file did not compile in " in result.output


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert run_avm_test(str(tmp_path / "missing.avm")).exit_code == 2
    assert run_avm_test("--fuel", "0", str(tmp_path)).exit_code == 2


# ---------------------------------------------------------------- compile-time rules


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("main { assert true }", "assert is only allowed in a test"),
        ('fn f() { expect_fail { fail "x" } }', "expect_fail is only allowed in a test"),
        (
            "behavior B { on _ { assert true } }",
            'assert is only allowed in a test: write it inside `test "name" { ... }`',
        ),
        ('test "t" { expect_fail Nope { fail 1 } }', "unknown error kind 'Nope'"),
        ('test "t" {}\ntest "t" {}', 'duplicate test "t" (the first is at line 1)'),
        (
            'test "t" { while true { expect_fail { break } } }',
            "break cannot leave an expect_fail block",
        ),
        ('test "t" { expect_fail { return 1 } }', "return cannot leave an expect_fail block"),
    ],
)
def test_compile_errors(source: str, message: str) -> None:
    with pytest.raises(DiagnosticError) as caught:
        build(source, "t.avm", tests=True)
    assert message in caught.value.render()


def test_a_test_may_share_a_name_with_an_item() -> None:
    program = build('fn main2() { return 1 }\ntest "main2" { assert main2() == 1 }', "t.avm")
    assert [f.name for f in program.program.functions] == ["main2"]


def test_a_fault_of_the_toolchain_fails_only_its_test(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "bug.avm", 'test "hit" { assert true }\ntest "spared" { assert true }\n')
    run_function = Runtime.run_function

    def faulty(self: Runtime, interpreter: Interpreter, function: int, args: tuple = ()) -> Value:
        if interpreter.program.functions[function].name == TEST_PREFIX + "hit":
            raise RuntimeError("a bug")
        return run_function(self, interpreter, function, args)

    monkeypatch.setattr(Runtime, "run_function", faulty)
    tests = outcomes(str(path))
    assert tests["hit"]["failure"]["kind"] == "InternalError"
    assert tests["hit"]["failure"]["message"] == "RuntimeError('a bug')"
    assert tests["spared"]["outcome"] == "passed"
