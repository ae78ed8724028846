"""`avm lsp` driven as an editor drives it: a real `avm lsp` process, JSON-RPC messages with
Content-Length headers on its stdin and stdout, every read bounded by a timeout.

Expected positions are found in the test's own source text, and expected descriptions come
from the tables the server reads (builtins, the grammar, docs/language.md), so the tests
check the server against the language rather than against copies of its output.
"""

from __future__ import annotations

import json
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from avm_vm.diagnostics import Diagnostic, Severity, Span
from avm_vm.format.instructions import BY_SOURCE, SYNTAX_INSTRUCTIONS
from avmc.builtins import BUILTINS
from avmc.lsp import analysis as lsp_analysis
from avmc.lsp.analysis import analyse, to_lsp
from avmc.lsp.reference import keywords, words

AVM_LSP = (sys.executable, "-c", "from avm_vm.cli import main; main()", "lsp")
TIMEOUT = 60.0  # seconds for any one answer (two loaded cores; the first compile imports a lot)
EXIT_TIMEOUT = 30.0
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
BIG_FUNCTIONS = 2500  # a file that takes the compiler seconds (about 2 ms a function)

PROGRAM = """\
behavior Counter {
  field count = 0
  on ["add", n] { count += n; return count }
}

fn double(x) {
  let twice = x * 2
  return twice
}

main {
  let c = create Counter
  let total = double(len("abc"))
  return totl
}
"""
FIXED = PROGRAM.replace("return totl", "return total")


class LspClient:
    """A language client over a child process's pipes."""

    def __init__(self, stderr: Path) -> None:
        self.stderr = stderr.open("wb")
        self.process = subprocess.Popen(
            AVM_LSP, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr
        )
        self.inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.backlog: list[dict[str, Any]] = []  # notifications not yet asked for
        self.next_id = 0
        self.log: list[tuple[str, dict[str, Any]]] = []  # ("->" or "<-", message)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        while True:
            length = None
            while True:
                line = stream.readline()
                if not line:
                    self.inbox.put(None)
                    return
                if not line.strip():
                    break
                name, _, value = line.decode("ascii").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            assert length is not None, "a message without Content-Length"
            self.inbox.put(json.loads(stream.read(length)))

    def send(self, message: dict[str, Any]) -> None:
        self.log.append(("->", message))
        body = json.dumps({"jsonrpc": "2.0", **message}).encode("utf-8")
        assert self.process.stdin is not None
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.process.stdin.flush()

    def _receive(self, deadline: float, waiting_for: str) -> dict[str, Any]:
        try:
            message = self.inbox.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no {waiting_for} within {TIMEOUT} s") from None
        assert message is not None, f"the server closed its output waiting for {waiting_for}"
        self.log.append(("<-", message))
        return message

    def request(self, method: str, params: Any) -> Any:
        self.next_id += 1
        ident = self.next_id
        self.send({"id": ident, "method": method, "params": params})
        deadline = time.monotonic() + TIMEOUT
        while True:
            message = self._receive(deadline, f"answer to {method}")
            if message.get("id") == ident and "method" not in message:
                assert "error" not in message, message["error"]
                return message["result"]
            self.backlog.append(message)

    def notify(self, method: str, params: Any) -> None:
        self.send({"method": method, "params": params})

    def notification(self, method: str, match: Callable[[Any], bool]) -> Any:
        """The params of the first notification ``method`` whose params ``match``."""
        for message in self.backlog:
            if message.get("method") == method and match(message["params"]):
                self.backlog.remove(message)
                return message["params"]
        deadline = time.monotonic() + TIMEOUT
        while True:
            message = self._receive(deadline, method)
            if message.get("method") == method and match(message["params"]):
                return message["params"]
            self.backlog.append(message)

    def initialize(self) -> dict[str, Any]:
        result = self.request(
            "initialize", {"processId": None, "rootUri": None, "capabilities": {}}
        )
        self.notify("initialized", {})
        return result

    def close(self) -> int:
        """Shut down and exit as the protocol asks; the process's exit status."""
        if self.process.poll() is None:
            assert self.request("shutdown", None) is None
            self.notify("exit", None)
        status = self.process.wait(timeout=EXIT_TIMEOUT)
        self.stderr.close()
        return status

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=EXIT_TIMEOUT)
        self.stderr.close()

    # ------------------------------------------------------------ document helpers

    def open(self, uri: str, text: str) -> list[dict[str, Any]]:
        """Open a document; the diagnostics published for it."""
        self.did_open(uri, text)
        return self.diagnostics(uri, 1)

    def did_open(self, uri: str, text: str) -> None:
        self.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": uri, "languageId": "avm", "version": 1, "text": text}},
        )

    def change(self, uri: str, version: int, text: str, at: Any = None) -> None:
        """Replace the whole text, or only the range ``at`` (an incremental change)."""
        change = {"text": text} if at is None else {"range": at, "text": text}
        self.notify(
            "textDocument/didChange",
            {"textDocument": {"uri": uri, "version": version}, "contentChanges": [change]},
        )

    def diagnostics(self, uri: str, version: int) -> list[dict[str, Any]]:
        params = self.notification(
            "textDocument/publishDiagnostics",
            lambda p: p["uri"] == uri and p.get("version") == version,
        )
        return params["diagnostics"]

    def at(self, method: str, uri: str, position: dict[str, int]) -> Any:
        return self.request(method, {"textDocument": {"uri": uri}, "position": position})


def position(text: str, needle: str, occurrence: int = 0, into: int = 0) -> dict[str, int]:
    """Where the ``occurrence``-th ``needle``, as a whole word, starts in ``text`` (plus
    ``into`` characters)."""
    words = re.finditer(rf"(?<![A-Za-z0-9_]){re.escape(needle)}(?![A-Za-z0-9_])", text)
    offset = [match.start() for match in words][occurrence]
    before = text[: offset + into]
    return {"line": before.count("\n"), "character": len(before) - (before.rfind("\n") + 1)}


def word_range(text: str, needle: str, occurrence: int = 0) -> dict[str, dict[str, int]]:
    start = position(text, needle, occurrence)
    return {"start": start, "end": {**start, "character": start["character"] + len(needle)}}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LspClient]:
    lsp = LspClient(tmp_path_factory.mktemp("lsp") / "stderr.txt")
    try:
        capabilities = lsp.initialize()["capabilities"]
        assert capabilities["hoverProvider"]
        assert capabilities["definitionProvider"]
        assert "completionProvider" in capabilities
        yield lsp
    finally:
        lsp.kill()


@pytest.fixture(scope="module")
def fixed(client: LspClient) -> str:
    """The URI of FIXED, open in the client, compiled with no diagnostics."""
    uri = "file:///work/fixed.avm"
    assert client.open(uri, FIXED) == []
    return uri


# ---------------------------------------------------------------- diagnostics


def test_an_error_is_published_with_its_range_and_fixing_it_clears_it(client: LspClient) -> None:
    uri = "file:///work/counter_typo.avm"
    [diagnostic] = client.open(uri, PROGRAM)
    assert diagnostic["severity"] == 1
    assert "totl" in diagnostic["message"]
    assert diagnostic["range"] == word_range(PROGRAM, "totl")
    client.change(uri, 2, "total", at=diagnostic["range"])  # as an editor sends a fix
    assert client.diagnostics(uri, 2) == []


def test_warnings_and_start_only_errors_get_ranges(client: LspClient) -> None:
    uri = "file:///work/warn.avm"
    text = "behavior Idle { }\n\nmain {\n  return 1\n}\n"
    [warning] = client.open(uri, text)
    assert warning["severity"] == 2
    assert warning["range"]["start"] == position(text, "behavior")
    # An unfinished block: the compiler gives only where it stopped; the range still has width.
    client.change(uri, 2, "main {\n  let x = 1\n")
    [diagnostic] = client.diagnostics(uri, 2)
    assert diagnostic["severity"] == 1
    start, end = diagnostic["range"]["start"], diagnostic["range"]["end"]
    assert (end["line"], end["character"]) > (start["line"], start["character"])


def test_ranges_count_utf16_units(client: LspClient) -> None:
    uri = "file:///work/emoji.avm"
    text = 'main {\n  let s = "\U0001f600" ++ nope\n  return s\n}\n'
    [diagnostic] = client.open(uri, text)
    start = position(text, "nope")
    start["character"] += 1  # the emoji is one code point and two UTF-16 units
    assert diagnostic["range"]["start"] == start


def test_hostile_sources_are_diagnostics_and_the_server_goes_on(client: LspClient) -> None:
    uri = "file:///work/hostile.avm"
    [diagnostic] = client.open(uri, "main { return 1 }\u0000\n")
    assert "NUL" in diagnostic["message"]
    client.change(uri, 2, "main { return " + "[" * 5000 + "]" * 5000 + " }\n")
    [diagnostic] = client.diagnostics(uri, 2)
    assert "nests too deeply" in diagnostic["message"]
    client.change(uri, 3, "main { return 1 }\n")
    assert client.diagnostics(uri, 3) == []


def test_a_compiler_crash_becomes_a_diagnostic(monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(source: str, filename: str) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(lsp_analysis, "build", crash)
    [diagnostic] = analyse("main { return 1 }\n", "crash.avm").diagnostics
    assert "internal compiler error" in diagnostic.message
    assert "boom" in diagnostic.message


def test_notes_and_hints_join_the_message_and_a_bare_position_covers_its_word() -> None:
    lines = ["main {", "  return undefined_thing", "}"]
    start_only = Span("t.avm", 2, 10)
    found = Diagnostic(Severity.ERROR, "undefined", start_only, ("a note",), "did you mean 'x'?")
    diagnostic = to_lsp(found, lines)
    assert diagnostic.message == "undefined\nnote: a note\nhint: did you mean 'x'?"
    start, end = diagnostic.range.start, diagnostic.range.end
    assert (start.line, start.character) == (1, 9)
    assert (end.line, end.character) == (1, 9 + len("undefined_thing"))


def test_a_long_compile_does_not_hold_up_other_requests(client: LspClient, fixed: str) -> None:
    """Compiles run off the event loop: a hover is answered while a large file compiles."""
    big = "".join(
        f"fn f{i}(x) {{\n  let y = x * {i} + 1\n  if y > 10 {{ return y - 1 }}\n  return y\n}}\n"
        for i in range(BIG_FUNCTIONS)
    )
    uri = "file:///work/big.avm"
    client.did_open(uri, big + "main { return f1(2) }\n")
    hover = client.at("textDocument/hover", fixed, position(FIXED, "len"))
    assert BUILTINS["len"].doc in hover["contents"]["value"]
    published = [
        m["params"]["uri"] for m in client.backlog if "params" in m and "uri" in m["params"]
    ]
    assert uri not in published, "the hover waited for another document's compile"
    assert client.diagnostics(uri, 1) == []


def test_requests_answer_about_the_latest_text(client: LspClient) -> None:
    """A hover sent right after an edit waits for that edit's compile."""
    uri = "file:///work/latest.avm"
    client.open(uri, FIXED)
    renamed = FIXED.replace("double", "triple")
    client.change(uri, 2, renamed)
    hover = client.at("textDocument/hover", uri, position(renamed, "triple", 1))
    assert "fn triple(x)" in hover["contents"]["value"]


# ---------------------------------------------------------------- hover


def test_hover_on_a_builtin_shows_its_description(client: LspClient, fixed: str) -> None:
    hover = client.at("textDocument/hover", fixed, position(FIXED, "len(", into=1))
    assert hover["contents"]["kind"] == "markdown"
    assert BUILTINS["len"].doc in hover["contents"]["value"]
    assert hover["range"] == word_range(FIXED, "len")


def test_hover_on_an_instruction_shows_the_docs_row(client: LspClient) -> None:
    uri = "file:///work/hover_instruction.avm"
    text = "main {\n  let t = begin()\n  commit(t)\n  return t\n}\n"
    client.open(uri, text)
    hover = client.at("textDocument/hover", uri, position(text, "commit"))
    assert hover["contents"]["value"] == words()["commit"].markdown()
    assert "commitTx" in hover["contents"]["value"]


def test_hover_on_a_behavior_shows_its_fields_and_clauses(client: LspClient, fixed: str) -> None:
    hover = client.at("textDocument/hover", fixed, position(FIXED, "Counter", 1, into=3))
    value = hover["contents"]["value"]
    assert "behavior Counter" in value
    assert "field count = 0" in value
    assert 'on ["add", n]' in value
    hover = client.at("textDocument/hover", fixed, position(FIXED, "double", 1))
    assert "fn double(x)" in hover["contents"]["value"]


# ---------------------------------------------------------------- definition


@pytest.mark.parametrize(
    ("use", "definition"),
    [
        (("double", 1), ("double", 0)),  # a function called in main
        (("count", 1), ("count", 0)),  # a field assigned in a clause
        (("count", 2), ("count", 0)),  # a field read
        (("twice", 1), ("twice", 0)),  # a local
        (("x", 1), ("x", 0)),  # a parameter
        (("n", 1), ("n", 0)),  # a pattern binding
        (("Counter", 1), ("Counter", 0)),  # a behavior created
        (("total", 1), ("total", 0)),  # a local of main
    ],
)
def test_definition(
    client: LspClient, fixed: str, use: tuple[str, int], definition: tuple[str, int]
) -> None:
    name, occurrence = use
    location = client.at("textDocument/definition", fixed, position(FIXED, name, occurrence))
    assert location == {"uri": fixed, "range": word_range(FIXED, *definition)}


def test_no_definition_for_a_builtin(client: LspClient, fixed: str) -> None:
    assert client.at("textDocument/definition", fixed, position(FIXED, "len")) is None


# ---------------------------------------------------------------- completion


def test_completion_offers_keywords_builtins_and_names_in_scope(
    client: LspClient, fixed: str
) -> None:
    result = client.at("textDocument/completion", fixed, position(FIXED, "total", 1))
    labels = {item["label"] for item in result["items"]}
    assert set(keywords()) <= labels
    assert {"behavior", "atomic", "match"} <= labels
    assert set(BUILTINS) <= labels
    assert {"call", "begin", "commit"} <= labels
    assert {"Counter", "double", "c", "total"} <= labels
    # Names of other bodies are out of scope: double's local and parameter, Counter's field.
    assert not {"twice", "x", "count", "n"} & labels


def test_completion_keeps_names_while_the_text_does_not_parse(client: LspClient) -> None:
    uri = "file:///work/typing.avm"
    client.open(uri, FIXED)
    typing = FIXED.replace("return total", "return tot +")
    client.change(uri, 2, typing)
    assert client.diagnostics(uri, 2)  # the unfinished expression is an error
    result = client.at("textDocument/completion", uri, position(typing, "tot +", into=3))
    assert {"total", "c", "double"} <= {item["label"] for item in result["items"]}


def test_names_written_inside_a_statement_resolve_to_where_they_are_bound() -> None:
    """Handler names, ``..rest`` and loop variables: positions found by the server itself."""
    text = (
        "fn total(xs) {\n  let sum = 0\n  for v in xs { sum += v }\n"
        "  match xs { [first, ..rest] => { return sum + first + len(rest) } _ => { return sum } }\n"
        "}\n"
        "behavior B { on _ { return 1 } }\n"
        'main {\n  atomic { fail "no" } else (why, kind) { return [why, kind] }\n'
        "  return total([1, 2])\n}\n"
    )
    result = analyse(text, "names.avm")
    assert result.diagnostics == []
    assert result.index is not None
    for name in ("v", "rest", "why", "kind"):
        use = position(text, name, 1)
        symbol = result.index.use_at((use["line"] + 1, use["character"] + 1))
        assert symbol is not None and symbol.symbol is not None, name
        defined = position(text, name, 0)
        assert (symbol.symbol.span.line, symbol.symbol.span.col) == (
            defined["line"] + 1,
            defined["character"] + 1,
        )


def test_names_inside_tests_resolve_and_test_keywords_complete() -> None:
    text = (
        'test "sums" {\n  let total = 1\n  assert total == 1, "one"\n'
        "  expect_fail Failed { fail str(total) }\n}\n"
    )
    result = analyse(text, "tests.avm")
    assert result.diagnostics == []
    assert result.index is not None
    for occurrence in (1, 2):
        use = position(text, "total", occurrence)
        symbol = result.index.use_at((use["line"] + 1, use["character"] + 1))
        assert symbol is not None and symbol.symbol is not None
        assert (symbol.symbol.span.line, symbol.symbol.span.col) == (2, 7)
    assert {"test", "assert", "expect_fail"} <= set(words())


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.avm")), ids=lambda p: p.name)
def test_every_name_of_an_example_resolves_where_it_is_written(example: Path) -> None:
    """Each written name is a builtin, an instruction or a definition of the file, and both
    the use and the definition positions point at that very name in the text."""
    text = example.read_text(encoding="utf-8")
    result = analyse(text, str(example))
    assert result.index is not None
    lines = text.split("\n")

    def written(span: Span) -> str:
        return lines[span.line - 1][span.col - 1 : span.end_col - 1]

    for use in result.index.uses:
        assert written(use.span) == use.name.removesuffix("!"), use  # `call!` is written `call`
        if use.symbol is None:
            assert use.name in words(), f"{use.name} at line {use.span.line} resolves to nothing"
        else:
            assert written(use.symbol.span) == use.name, use.symbol


# ---------------------------------------------------------------- the language's tables


def test_every_builtin_and_instruction_has_a_description() -> None:
    for name in BUILTINS:
        assert words()[name].description == BUILTINS[name].doc
    # Each instruction's hover quotes its row of docs/language.md, beyond the safety line.
    assert set(BY_SOURCE) - SYNTAX_INSTRUCTIONS <= set(words())
    for name in set(BY_SOURCE) & set(words()):
        assert "—" in words()[name].description, f"{name} has no row in docs/language.md"
    assert {"create", "self", "input", "sender"} == SYNTAX_INSTRUCTIONS & set(keywords())


# ---------------------------------------------------------------- lifetime


def test_shutdown_then_exit_exits_0_and_exit_alone_exits_1(tmp_path: Path) -> None:
    polite = LspClient(tmp_path / "polite.txt")
    try:
        polite.initialize()
        assert polite.close() == 0
    finally:
        polite.kill()
    abrupt = LspClient(tmp_path / "abrupt.txt")
    try:
        abrupt.initialize()
        abrupt.notify("exit", None)
        assert abrupt.process.wait(timeout=EXIT_TIMEOUT) == 1
    finally:
        abrupt.kill()
