"""Diagnostics that help: hints for common slips, "did you mean", colour, the JSON form,
warnings and whole-expression carets under `avm run`, and the fuel limit's message.

The rendered golden files are in tests/compile_errors (hint_*.avm); these tests check the
decisions behind them: when a hint appears and when it must not.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from node_harness import AVM

from avm_vm import cli as avm_cli
from avm_vm.cli_options import RUN_FUEL
from avm_vm.diagnostics import (
    Diagnostic,
    DiagnosticError,
    Severity,
    Span,
    error,
    use_color,
    warning,
)
from avmc import cli as avmc_cli
from avmc.checks import check
from avmc.parser import parse
from avmc.source import failure_span, span_at

ESC = "\x1b["


def found(source: str) -> list[Diagnostic]:
    return check(parse(source, "t.avm"))


def hints(source: str) -> list[tuple[str, str | None]]:
    return [(d.message, d.hint) for d in found(source)]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- rendering


def test_a_hint_is_rendered_after_the_caret_and_notes() -> None:
    diagnostic = Diagnostic(
        Severity.ERROR, "undefined name 'cont'", Span("f.avm", 1, 8, 1, 12), ("n",), "h?"
    )
    assert diagnostic.render("return cont") == (
        "f.avm:1:8: error: undefined name 'cont'\n"
        "    return cont\n"
        "           ^^^^\n"
        "  note: n\n"
        "  hint: h?"
    )


def test_a_span_over_several_lines_underlines_the_rest_of_its_first_line() -> None:
    rendered = warning("w", Span("f.avm", 1, 3, 3, 2)).render("x while  \n y\n}")
    assert rendered.splitlines()[-1] == "      ^^^^^"


def test_colour_marks_severity_location_and_caret_only_when_asked() -> None:
    diagnostic = error("boom", Span("f.avm", 1, 1, 1, 3), hint="try")
    plain = diagnostic.render("ab", color=False)
    assert ESC not in plain
    coloured = diagnostic.render("ab", color=True)
    assert f"{ESC}1;31merror:{ESC}0m" in coloured  # red
    assert f"{ESC}1;31m    ^^{ESC}0m" in coloured  # the caret line too
    assert f"{ESC}1;33mwarning:" in warning("w").render(color=True)  # yellow
    # Stripped of its escapes, the coloured text is the plain one.
    assert _strip(coloured) == plain


def _strip(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_use_color_follows_the_mode_the_terminal_and_no_color(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert use_color(_Tty(), "auto")
    assert not use_color(io.StringIO(), "auto")  # not a terminal
    assert not use_color(_Tty(), "never")
    assert use_color(io.StringIO(), "always")
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_color(_Tty(), "auto")
    assert use_color(_Tty(), "always")  # an explicit request wins
    monkeypatch.setenv("NO_COLOR", "")  # set but empty: no effect (no-color.org)
    assert use_color(_Tty(), "auto")
    monkeypatch.setenv("TERM", "dumb")
    assert not use_color(_Tty(), "auto")


def test_as_json_has_every_field_even_without_a_span() -> None:
    assert error("no file").as_json() == {
        "severity": "error",
        "message": "no file",
        "hint": None,
        "notes": [],
        "file": None,
        "line": None,
        "col": None,
        "end_line": None,
        "end_col": None,
    }


# ---------------------------------------------------------------- did you mean


@pytest.mark.parametrize(
    ("source", "message", "hint"),
    [
        ("main { let total = 1 return totl }", "undefined name 'totl'", "'total'"),
        ("main { return slef }", "undefined name 'slef'", "'self'"),
        ("main { let x = 1\n retrun x }", "undefined name 'retrun'", "'return'"),
        ("fn double(x) { return x }\nmain { return doubel(1) }", "undefined function", "'double'"),
        ("main { return lenn([1]) }", "undefined function 'lenn'", "'len'"),
        ("main { return nwo() }", "undefined function 'nwo'", "'now'"),
        ("behavior Bank { on _ { } }\nmain { return create Bnak }", "undefined behavior", "'Bank'"),
        (
            "behavior B { field count = 0\n on _ { cuont = 1 } }",
            "assignment to undeclared variable 'cuont'",
            "'count'",
        ),
        (
            "fn pick(m) { return true }\nmain { return unsafe scry_meta(pik) }",
            "'pik' is not a fn",
            "'pick'",
        ),
    ],
)
def test_a_misspelled_name_gets_the_closest_one(source: str, message: str, hint: str) -> None:
    [(text, given)] = hints(source)
    assert text.startswith(message)
    assert given == f"did you mean {hint}?"


def test_no_suggestion_when_nothing_is_close() -> None:
    assert hints("main { let apples = 1 return zebra }") == [("undefined name 'zebra'", None)]


def test_a_name_out_of_scope_is_not_suggested() -> None:
    source = "main { if true { let total = 1 } return totl }"
    assert hints(source) == [("undefined name 'totl'", None)]


# ---------------------------------------------------------------- call used as a value

ECHO = "behavior E { on n { return n } }\n"


def call_warnings(body: str) -> list[str]:
    return [
        d.message
        for d in found(ECHO + "main { let e = create E\n" + body + "\n}")
        if d.severity is Severity.WARNING and "`call`" in d.message
    ]


@pytest.mark.parametrize(
    ("body", "needs"),
    [
        ("return call(e, 1) + 1", "'+' needs nats"),
        ("return 1 * call(e, 1)", "'*' needs nats"),
        ("return call(e, 1) < 2", "'<' compares nats or strings"),
        ('return call(e, "a") ++ "b"', "'++' joins strings or lists"),
        ("return len(call(e, [1]))", "len needs a string or a list"),
        ("return fst(call(e, (1, 2)))", "fst needs a pair"),
        ("if call(e, true) { return 1 }", "a condition needs a bool"),
        ("for x in call(e, [1]) { }", "'for' goes over a list or a string"),
        ("return call(e, [1])[0]", "indexing needs a list or a string"),
        ("let r = call(e, 1)\nreturn r + 1", "'+' needs nats"),
    ],
)
def test_the_answer_of_call_where_a_maybe_never_fits_warns(body: str, needs: str) -> None:
    [message] = call_warnings(body)
    assert message.startswith(needs + ", but ")
    assert "maybe" in message


def test_the_warning_points_to_call_bang() -> None:
    [diagnostic] = [d for d in found(ECHO + "main { return call(create E, 1) + 1 }")]
    assert diagnostic.severity is Severity.WARNING
    assert "`call!(...)`" in (diagnostic.hint or "")
    assert diagnostic.span is not None and diagnostic.span.col == 15  # the call itself


@pytest.mark.parametrize(
    "body",
    [
        "return call!(e, 1) + 1",
        "return call(e, 1) == nothing",
        "return unwrap(call(e, 1)) + 1",
        "return str(call(e, 1))",
        "let r = call(e, 1)\nr = just 2\nreturn r",
        "let r = call(e, 1)\nwhile true { r = 2 }\nreturn r + 1",  # reassigned: unknown
        "let r = call(e, 1)\nmatch r { just v => { return v + 1 } _ => { return 0 } }",
        "let r = call!(e, 1)\nreturn r + 1",
    ],
)
def test_no_warning_where_the_maybe_is_handled_or_unknown(body: str) -> None:
    assert call_warnings(body) == []


# ---------------------------------------------------------------- controllers


@pytest.mark.parametrize(
    ("statement", "where"),
    [
        ("atomic under self { }", "`atomic under`"),
        ("atomic under sender { }", "`atomic under`"),
        ("let t = begin(obj:1)", "begin"),
        ("transfer(self, self)", "transfer"),
        ("let o = create C under self", "`create ... under`"),
    ],
)
def test_an_object_given_as_a_controller_is_an_error(statement: str, where: str) -> None:
    source = "behavior C { on _ { " + statement + " } }"
    [diagnostic] = found(source)
    assert diagnostic.severity is Severity.ERROR
    assert (
        diagnostic.message == f"the controller of {where} must be a name (a string), not an object"
    )
    assert "controllers are names" in (diagnostic.hint or "")


@pytest.mark.parametrize(
    "statement",
    [
        'atomic under "bank" { }',
        "atomic under current_controller() { }",
        "atomic under input { }",  # a message may well be a name
        'let o = create C under "c"',
        'transfer(self, "d")',
        "atomic { }",
    ],
)
def test_names_and_unknowns_are_accepted_as_controllers(statement: str) -> None:
    assert found("behavior C { on _ { " + statement + " } }") == []


# ---------------------------------------------------------------- unary minus


@pytest.mark.parametrize("source", ["main { let x = -1 }", "main { return 2 * -x }"])
def test_unary_minus_gets_a_hint(source: str) -> None:
    with pytest.raises(DiagnosticError) as caught:
        parse(source, "t.avm")
    [diagnostic] = caught.value.diagnostics
    assert "found '-'" in diagnostic.message
    assert "no unary minus" in (diagnostic.hint or "")


def test_a_binary_minus_in_the_wrong_place_gets_no_unary_hint() -> None:
    with pytest.raises(DiagnosticError) as caught:
        parse("main { let - = 1 }", "t.avm")
    assert caught.value.diagnostics[0].hint is None


# ---------------------------------------------------------------- span_at


def test_span_at_takes_the_outermost_expression_starting_there() -> None:
    source = "main {\n  let y = a + b * c\n  fail y\n}\n"
    assert span_at(source, "f", 2, 11) == Span("f", 2, 11, 2, 20)  # a + b * c, not a
    assert span_at(source, "f", 2, 15) == Span("f", 2, 15, 2, 20)  # b * c
    assert span_at(source, "f", 3, 3) == Span("f", 3, 3, 3, 9)  # the statement `fail y`
    assert span_at(source, "f", 2, 4) is None  # nothing starts inside `let`
    assert span_at("main {", "f", 1, 1) is None  # no longer parses


FAILING = "main {\n  return call!(o, 1) + xs[9] - len(f(x) - 1)\n}\n"


@pytest.mark.parametrize(
    ("col", "kind", "message", "culprit"),
    [
        (10, "Failed", "boom", "call!(o, 1)"),
        (10, "UnwrapNothing", "expected just a value, found nothing", "call!(o, 1)"),
        (10, "TypeMismatch", "'+' expects two nats, found a list and a nat", "call!(o, 1) + xs[9]"),
        (10, "ArithmeticError", "nat underflow: 2 - 7", "call!(o, 1) + xs[9] - len(f(x) - 1)"),
        (10, "FuelExhausted", "out of fuel after 9 steps", "call!(o, 1) + xs[9] - len(f(x) - 1)"),
        (24, "IndexOutOfRange", "index 9 out of range for a list of length 2", "xs[9]"),
        (24, "TypeMismatch", "indexing expects a string or a list, found a nat", "xs[9]"),
        (32, "TypeMismatch", "'len' expects a string or a list, found a nat", "len(f(x) - 1)"),
        (36, "ArithmeticError", "nat underflow: 0 - 1", "f(x) - 1"),
        (36, "TypeMismatch", "f: expected something", "f(x)"),
    ],
)
def test_failure_span_picks_what_the_error_names(
    col: int, kind: str, message: str, culprit: str
) -> None:
    span = failure_span(FAILING, "f", 2, col, kind, message)
    assert span is not None and span.line == span.end_line == 2
    assert FAILING.splitlines()[1][span.col - 1 : span.end_col - 1] == culprit


# ---------------------------------------------------------------- avm run and avmc check

CALL_PLUS = ECHO + "main {\n  let e = create E\n  return call(e, 1) + 2\n}\n"


def run(*args: str):
    return CliRunner().invoke(avm_cli.main, ["run", *args])


def test_avm_run_shows_compiler_warnings_and_the_whole_failing_expression(
    tmp_path: Path,
) -> None:
    result = run(str(write(tmp_path, "p.avm", CALL_PLUS)))
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0].endswith(
        "warning: '+' needs nats, but the answer of `call` is a maybe "
        "(`just` v, or `nothing` when the call fails): this fails when it runs"
    )
    failure = lines.index(next(line for line in lines if "error: TypeMismatch" in line))
    assert lines[failure + 1] == "      return call(e, 1) + 2"
    assert lines[failure + 2] == "             ^^^^^^^^^^^^^^"  # the whole `+`, not one char
    assert any(line.startswith("  hint: a maybe") for line in lines[failure:])
    assert result.stdout == ""


def test_avm_run_of_a_tape_still_spans_the_expression_when_the_source_is_there(
    tmp_path: Path,
) -> None:
    source = write(tmp_path, "p.avm", "main {\n  let x = 5\n  return x / (x - 5)\n}\n")
    assert CliRunner().invoke(avmc_cli.main, ["compile", str(source)]).exit_code == 0
    result = run(str(tmp_path / "p.tape"))
    assert result.exit_code == 1
    assert "    return x / (x - 5)\n             ^^^^^^^^^^^\n" in result.stderr
    source.unlink()  # without the source there is no caret line at all
    assert "^" not in run(str(tmp_path / "p.tape")).stderr


def test_avm_run_colours_on_request_only(tmp_path: Path) -> None:
    source = str(write(tmp_path, "p.avm", CALL_PLUS))
    assert ESC not in run(source).stderr  # not a terminal
    assert ESC not in run(source, "--color", "never").stderr
    coloured = run(source, "--color", "always").stderr
    assert f"{ESC}1;33mwarning:" in coloured and f"{ESC}1;31merror:" in coloured


def test_avmc_check_json_is_one_document_for_tools(tmp_path: Path) -> None:
    source = write(tmp_path, "t.avm", "main {\n  let count = 1\n  return cuont\n}\n")
    result = CliRunner().invoke(avmc_cli.main, ["check", "--format", "json", str(source)])
    assert result.exit_code == 1
    assert json.loads(result.stdout) == [
        {
            "severity": "error",
            "message": "undefined name 'cuont'",
            "hint": "did you mean 'count'?",
            "notes": [],
            "file": str(source),
            "line": 3,
            "col": 10,
            "end_line": 3,
            "end_col": 15,
        }
    ]


def test_avmc_check_json_with_warnings_only_exits_0(tmp_path: Path) -> None:
    source = write(tmp_path, "t.avm", CALL_PLUS)
    result = CliRunner().invoke(avmc_cli.main, ["check", "--format", "json", str(source)])
    assert result.exit_code == 0
    [entry] = json.loads(result.stdout)
    assert entry["severity"] == "warning" and entry["line"] == 4
    clean = write(tmp_path, "ok.avm", "main { return 1 }\n")
    result = CliRunner().invoke(avmc_cli.main, ["check", "--format", "json", str(clean)])
    assert (result.exit_code, json.loads(result.stdout)) == (0, [])


def test_avmc_colour_is_a_group_option(tmp_path: Path) -> None:
    source = str(write(tmp_path, "t.avm", "main { return nope }\n"))
    coloured = CliRunner().invoke(avmc_cli.main, ["--color", "always", "check", source])
    assert coloured.exit_code == 1 and f"{ESC}1;31merror:" in coloured.stderr
    plain = CliRunner().invoke(avmc_cli.main, ["check", source])
    assert ESC not in plain.stderr


# ---------------------------------------------------------------- fuel


def test_the_run_fuel_default_is_documented_in_the_help() -> None:
    help_text = CliRunner().invoke(avm_cli.main, ["run", "--help"]).stdout
    assert f"default: {RUN_FUEL}" in " ".join(help_text.split())


def test_running_out_of_fuel_names_the_option(tmp_path: Path) -> None:
    source = write(tmp_path, "spin.avm", "main {\n  let i = 0\n  while true { i += 1 }\n}\n")
    result = run(str(source), "--fuel", "5000", "--jit", "off")
    assert result.exit_code == 1
    assert "FuelExhausted: out of fuel after 5000 steps" in result.stderr
    assert "hint: raise the limit with --fuel" in result.stderr


def test_an_endless_loop_stops_by_default(tmp_path: Path) -> None:
    """With no options, an endless loop ends on its own with the fuel message (within
    seconds: the time bound here only guards against hanging, see docs/semantics.md)."""
    source = write(tmp_path, "spin.avm", "main {\n  let i = 0\n  while true { i += 1 }\n}\n")
    done = subprocess.run(
        [*AVM, "run", str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    assert f"out of fuel after {RUN_FUEL} steps" in done.stderr
    assert "--fuel" in done.stderr
