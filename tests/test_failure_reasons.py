"""Failures that explain themselves: a failed callee's reason is kept (trace, `call!`,
`else (err, kind)`, `avm call`, across nodes), `atomic ... else` catches every failure of
the block, and `log(value)` shows a value without changing anything else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from node_harness import Nodes, avm, compile_tape, wait_connected

from avm_vm.diagnostics import DiagnosticError
from avm_vm.errors import AvmError, ErrorKind
from avm_vm.node.messages import decode_message, message
from avm_vm.node.requests import run_answer
from avm_vm.node.wire import WireError
from avm_vm.runtime.core import RunError, Runtime, RuntimeOptions
from avm_vm.runtime.runs import RemoteCall
from avm_vm.trace import CallFailure, DuctLink, LogRecorded, ObjectCalled, render_text
from avm_vm.values import render
from avmc.compiler import compile_path, compile_source

EXAMPLES = Path(__file__).parents[1] / "examples"

ACCOUNT = """behavior Account {
  field balance = 0
  on ["deposit", amount] { balance += amount; return balance }
  on ["withdraw", amount] {
    if amount > balance { fail "insufficient funds" }
    balance -= amount
    return balance
  }
  on ["typo", p] { return fst(p) }
  on ["relay", other, msg] { return call!(other, msg) }
}
behavior Probe {
  on ["plain", o, msg] { return call(o, msg) }
  on ["strict", o, msg] {
    atomic { return call!(o, msg) } else (err, kind) { return [kind, err] }
  }
  on ["hop_and_fail", m] { teleport(m); fail "after the hop" }
}
"""


def where(name: str, source: str, needle: str) -> str:
    """``name:line:col`` of the first ``needle`` in ``source`` (1-based, as diagnostics)."""
    before = source[: source.index(needle)]
    return f"{name}:{before.count(chr(10)) + 1}:{len(before) - before.rfind(chr(10))}"


FAIL_AT = where("acct.avm", ACCOUNT, 'fail "insufficient funds"')
TYPO_AT = where("acct.avm", ACCOUNT, "fst(p)")
HOP_AT = where("acct.avm", ACCOUNT, 'fail "after the hop"')


def run(source: str, **options: object) -> tuple[Runtime, object]:
    runtime = Runtime(compile_source(source, "acct.avm"), RuntimeOptions(**options))
    try:
        return runtime, runtime.run_main()
    except RunError as failure:
        return runtime, failure


def called(runtime: Runtime) -> list[ObjectCalled]:
    return [e.event for e in runtime.trace.entries if type(e.event) is ObjectCalled]


# --------------------------------------------------------------------- reasons travel (local)


def test_bank_example_refusal_carries_the_callees_reason() -> None:
    runtime = Runtime(compile_path(EXAMPLES / "bank.avm"))
    at = where("bank.avm", (EXAMPLES / "bank.avm").read_text(), 'fail "insufficient funds"')
    value = runtime.run_main()
    assert render(value).startswith('[["done", 30], ["refused", 500, "insufficient funds"]')
    failed = [e for e in called(runtime) if e.output is None]
    assert failed == [
        ObjectCalled(0, ("withdraw", 500), None, CallFailure("Failed", "insufficient funds", at))
    ]
    text = f'called obj:0 with ["withdraw", 500] -> failed: Failed: insufficient funds ({at})'
    assert text in render_text(runtime.trace.entries)


def test_call_answers_nothing_and_the_trace_keeps_kind_message_and_place() -> None:
    runtime, value = run(
        ACCOUNT
        + 'main { let a = create Account; return [call(a, ["typo", 3]), call(a, ["withdraw", 1])] }'
    )
    assert render(value) == "[nothing, nothing]"
    assert [e.failure for e in called(runtime)] == [
        CallFailure("TypeMismatch", "'fst' expects a pair, found a nat", TYPO_AT),
        CallFailure("Failed", "insufficient funds", FAIL_AT),
    ]


def test_call_bang_fails_with_the_callees_kind_message_and_first_place() -> None:
    """A failure passed up through two `call!`s keeps its kind, message and the place it was
    raised; `else (err, kind)` sees both."""
    runtime, value = run(
        ACCOUNT
        + """main {
      let a = create Account
      let b = create Account
      let p = create Probe
      return [
        call!(p, ["strict", a, ["typo", 3]]),
        call!(p, ["strict", b, ["relay", a, ["withdraw", 9]]]),
        call!(p, ["strict", a, ["deposit", 4]]),
        call(b, ["relay", a, ["withdraw", 9]])
      ]
    }"""
    )
    assert render(value) == (
        '[["TypeMismatch", "\'fst\' expects a pair, found a nat"], '
        '["Failed", "insufficient funds"], 4, nothing]'
    )
    outer = called(runtime)[-1]
    assert outer.output is None and outer.failure == CallFailure(
        "Failed", "insufficient funds", FAIL_AT
    )


def test_main_failing_through_call_bang_reports_the_callee_kind_and_origin() -> None:
    source = ACCOUNT + 'main { let a = create Account; return call!(a, ["typo", 3]) }'
    _, failure = run(source)
    assert isinstance(failure, RunError)
    assert str(failure) == "TypeMismatch: 'fst' expects a pair, found a nat"
    assert failure.origin == CallFailure(
        "TypeMismatch", "'fst' expects a pair, found a nat", TYPO_AT
    )
    # The run itself failed in main, at its call!.
    at = f"{failure.source_name}:{failure.line}:{failure.col}"
    assert at == where("acct.avm", source, "call!(a")


def test_else_binds_the_kind_of_any_failure() -> None:
    _, value = run(
        """main {
      let out = []
      atomic { fail "plain" } else (err, kind) { out ++= [[kind, err]] }
      atomic { let x = [1][3] } else (err, kind) { out ++= [[kind, err]] }
      atomic { let x = 1 - 2 } else (e) { out ++= [e] }
      return out
    }"""
    )
    assert render(value) == (
        '[["Failed", "plain"], ["IndexOutOfRange", "index 3 out of range for a list of length 1"],'
        ' "nat underflow: 1 - 2"]'
    )


def test_else_binding_the_same_name_twice_is_refused() -> None:
    with pytest.raises(DiagnosticError, match="'e' is bound twice"):
        compile_source("main { atomic { } else (e, e) { return e } }", "twice.avm")


# --------------------------------------------------------------------- atomic ... else


def test_else_runs_when_the_commit_fails_after_a_return_in_the_body() -> None:
    """`return` inside the body commits first; a commit that fails (a requirement broke)
    runs the handler, with the state the body wrote rolled back."""
    runtime, value = run(
        """behavior C {
      field n = 0
      on ["bump", ok] {
        atomic { n += 1; require(ok); return ["returned", n] } else (err, kind) {
          return ["else", kind, err, n]
        }
      }
      on ["at_end"] { atomic { n += 10; require(false) } else (err) { return err } return "no" }
    }
    main {
      let c = create C
      return [call!(c, ["bump", false]), call!(c, ["bump", true]), call!(c, ["at_end"])]
    }"""
    )
    assert render(value) == (
        '[["else", "TxConflict", "transaction conflict: tx:0", 0], ["returned", 1], '
        '"transaction conflict: tx:2"]'
    )
    assert runtime.store.state(0) == (1,)
    assert runtime.tx is None


def test_else_gets_the_bodys_failure_after_the_body_closed_the_transaction() -> None:
    """The body aborts its own transaction, then fails: the handler sees that failure (not
    the TxNoActiveTx of aborting again); without a handler it propagates as it was."""
    body = 'let t = unwrap(unsafe reify_tx_state())[0]\n abort(t)\n fail "boom"'
    runtime, value = run(
        f"main {{ atomic {{ {body} }} else (err, kind) {{ return [kind, err] }} }}"
    )
    assert render(value) == '["Failed", "boom"]'
    assert runtime.tx is None
    _, failure = run(f"main {{ atomic {{ {body} }} return 1 }}")
    assert str(failure) == "Failed: boom"


def test_atomic_under_an_object_is_caught_by_else_and_explains_controllers() -> None:
    runtime, value = run(
        """main {
      let me = [self]
      atomic under me[0] { return "ran" } else (err, kind) { return [kind, err] }
    }"""
    )
    kind, text = value  # type: ignore[misc]
    assert kind == "TypeMismatch"
    assert "a controller is a name (a string), found an object reference" in text
    assert runtime.tx is None


def test_a_begin_that_fails_leaves_the_open_transaction_alone() -> None:
    """An atomic nested in an open transaction cannot begin (TxInvalidDuringTx): its else
    runs, and the outer transaction stays open and commits; also in a loop, where the
    block's register still holds the transaction of an earlier round."""
    runtime, value = run(
        """main {
      let out = []
      let i = 0
      while i < 3 {
        let c = [self, "ok"]
        atomic under c[i % 2] { out ++= [i] } else (e, k) { out ++= [k] }
        i += 1
      }
      atomic under "x" {
        atomic under "y" { out ++= ["no"] } else (e, k) { out ++= [k, current_controller()] }
      }
      return out
    }"""
    )
    assert render(value) == ('["TypeMismatch", 1, "TypeMismatch", "TxInvalidDuringTx", just "x"]')
    assert runtime.tx is None
    assert "tx committed: tx:1" in render_text(runtime.trace.entries)


def test_the_atomic_under_example_of_the_language_docs_runs() -> None:
    """docs/language.md's example, as written there."""
    docs = (Path(__file__).parents[1] / "docs" / "language.md").read_text(encoding="utf-8")
    start = docs.index("```\natomic under")
    example = docs[start + 4 : docs.index("```", start + 4)]
    _, value = run(
        "behavior Ping { on _ { return 1 } } behavior Pong { on _ { return 2 } }"
        f' main {{ {example} return "ok" }}'
    )
    assert render(value) == '"ok"'


# --------------------------------------------------------------------- log


LOGGED = """behavior C {
  field n = 0
  on ["add", k] { LOG1 n += k; return n }
}
main {
  let c = create C
  let i = 0
  while i < 6 { LOG2; call!(c, ["add", i]); i += 1 }
  return call!(c, ["add", 0])
}
"""


@pytest.mark.parametrize("jit", ["off", "auto"])
def test_log_changes_no_result_state_or_fuel(jit: str) -> None:
    plain = Runtime(
        compile_source(LOGGED.replace("LOG1", "").replace("LOG2;", ""), "c.avm"),
        RuntimeOptions(jit=jit),
    )
    logged_source = LOGGED.replace("LOG1", "log(k)").replace("LOG2", "log(i)")
    logged = Runtime(compile_source(logged_source, "c.avm"), RuntimeOptions(jit=jit))
    seen: list[tuple[str, str | None]] = []
    logged.log_sink = lambda value, where: seen.append((render(value), where))
    assert logged.run_main() == plain.run_main() == 15
    assert logged.store.states == plain.store.states
    assert (logged.fuel.used, logged.fuel.room) == (plain.fuel.used, plain.fuel.room)
    in_main, in_behavior = (where("c.avm", logged_source, f"log({v})") for v in "ik")
    assert seen[:3] == [("0", in_main), ("0", in_behavior), ("1", in_main)]
    entries = [e for e in logged.trace.entries if type(e.event) is LogRecorded]
    assert len(entries) == 13  # 6 in main's loop, 7 in the behavior
    assert entries[1].event == LogRecorded(0) and entries[1].duct == ((0, "C", 0),)


def test_log_of_a_failed_callee_stays_marked_reverted() -> None:
    runtime, value = run(
        'behavior B { on _ { log("before"); fail "no" } } main { log(1); return call(create B, 0) }'
    )
    assert render(value) == "nothing"
    logs = [
        (e.event.value, e.reverted) for e in runtime.trace.entries if type(e.event) is LogRecorded
    ]
    assert logs == [(1, False), ("before", True)]


def test_log_is_an_instruction_a_pure_fn_may_not_use() -> None:
    with pytest.raises(DiagnosticError, match="log"):
        compile_source("fn f(x) { log(x); return x } main { return f(1) }", "pure.avm")


# --------------------------------------------------------------------- the wire


def test_a_failed_answer_without_the_failure_field_is_still_accepted() -> None:
    """A peer that predates the field answers as before: the caller's call fails with
    MachineUnreachable, as it always did; with the field, the caller gets the failure."""
    old = {
        "type": "call_response",
        "request_id": 4,
        "ok": False,
        "value": None,
        "error_kind": "Failed",
        "error": "no",
    }
    request = RemoteCall("beta", 5, 1, 0, DuctLink(5, "@beta", 0, None))
    answer = run_answer(request, decode_message(old))
    assert isinstance(answer, AvmError) and answer.kind is ErrorKind.MACHINE_UNREACHABLE
    failure = {"kind": "Failed", "message": "no", "location": "b.avm:1:2"}
    assert run_answer(request, decode_message({**old, "failure": failure})) == CallFailure(
        "Failed", "no", "b.avm:1:2"
    )
    with pytest.raises(WireError, match=r"call_response\.failure must be"):
        decode_message({**old, "failure": {"kind": "Failed", "message": "no"}})
    with pytest.raises(WireError, match="unexpected field"):
        decode_message({**old, "reason": "no"})
    with pytest.raises(WireError, match="lacks field 'error'"):
        decode_message({k: v for k, v in old.items() if k != "error"})
    assert message("call_response", **{k: v for k, v in old.items() if k != "type"}) == old


def test_reasons_cross_nodes_and_avm_call_reports_a_failed_target(tmp_path: Path) -> None:
    """Two real nodes: a call from alpha to an account on beta that fails answers nothing
    with the reason on alpha's trace, `call!` fails with beta's kind and message, and `avm
    call` of a failing target prints nothing, the reason on stderr, and exits 1."""
    tape = compile_tape(ACCOUNT, tmp_path, "acct")
    trace_file = tmp_path / "alpha-trace.jsonl"
    nodes = Nodes(tmp_path)
    try:
        beta = nodes.start("beta", [tape], options=["--jit", "off"])
        alpha = nodes.start(
            "alpha",
            [tape],
            peers={"beta": beta},
            options=["--jit", "off", "--trace-out", str(trace_file)],
        )
        wait_connected(alpha, ["beta"])
        account = avm("create", beta.address, "Account").stdout.strip()
        probe = avm("create", alpha.address, "Probe").stdout.strip()
        assert account.startswith("obj:") and probe.startswith("obj:")

        plain = avm("call", alpha.address, probe, f'["plain", {account}, ["withdraw", 5]]')
        assert (plain.returncode, plain.stdout.strip()) == (0, "just nothing"), plain.stderr
        strict = avm("call", alpha.address, probe, f'["strict", {account}, ["typo", 3]]')
        assert (
            strict.stdout.strip() == 'just ["TypeMismatch", "\'fst\' expects a pair, found a nat"]'
        )

        direct = avm("call", beta.address, account, '["withdraw", 5]')
        assert direct.returncode == 1
        assert direct.stdout.strip() == "nothing"
        assert f"Failed: insufficient funds ({FAIL_AT})" in direct.stderr
        # A teleported activation that fails on beta: alpha's client learns why and where.
        hop = avm("call", alpha.address, probe, '["hop_and_fail", "beta"]')
        assert (hop.returncode, hop.stdout.strip()) == (1, "nothing"), hop.stderr
        assert f"Failed: after the hop ({HOP_AT})" in hop.stderr
        ok = avm("call", beta.address, account, '["deposit", 5]')
        assert (ok.returncode, ok.stdout.strip(), ok.stderr) == (0, "just 5", "")
    finally:
        nodes.close()
    failures = [
        json.loads(line)["event_type"]["ObjectCalled"].get("failure")
        for line in trace_file.read_text(encoding="utf-8").splitlines()
        if '"ObjectCalled"' in line
    ]
    assert {"kind": "Failed", "message": "insufficient funds", "location": FAIL_AT} in failures
    assert {
        "kind": "TypeMismatch",
        "message": "'fst' expects a pair, found a nat",
        "location": TYPO_AT,
    } in failures
