"""`avm repl` (docs/repl.md): the session's commands and snippets, then a recorded session
through a pseudo-terminal (line editing, completion, history)."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from avm_vm.repl import Session, literal
from avm_vm.values import Just, Pair

ROOT = Path(__file__).resolve().parent.parent
BANK = ROOT / "examples" / "bank.avm"
PURELIB = ROOT / "examples" / "purelib.avm"


@pytest.fixture
def session() -> Session:
    session = Session()
    assert session.execute(f":load {BANK}").startswith("loaded")
    return session


def test_snippets_bind_variables_and_print_values(session: Session) -> None:
    assert session.execute("let a = create Account") == "a = obj:0"
    assert session.execute('call!(a, ["deposit", 100])') == "100"
    assert session.execute('call(a, ["withdraw", 500])') == "nothing"
    assert session.execute(":state a") == "[100]"
    assert session.execute("let n = 0\nwhile n < 3 { n += 1 }") == "n = 3"
    assert session.execute("n * 2") == "6"
    assert session.execute("n = n + 1") == "ok"  # an assignment keeps the new value
    assert session.execute("n") == "4"
    assert session.execute("return [n, a]") == "[4, obj:0]"
    assert session.execute(":vars") == "a = obj:0\nn = 4"


def test_the_trace_of_the_last_input_shows_the_failure(session: Session) -> None:
    session.execute("let a = create Account")
    session.execute('call(a, ["withdraw", 5])')
    trace = session.execute(":trace")
    assert 'called obj:0 with ["withdraw", 5] -> failed: Failed: insufficient funds' in trace
    assert "created" not in trace  # only the last input's entries
    assert "created obj:0" in session.execute(":trace all")
    assert session.execute(":trace 1").count("\n") == 0


def test_errors_point_into_what_was_typed(session: Session) -> None:
    undefined = session.execute("let q = 1\nq + missing")
    assert undefined.startswith("<repl>:2:5: error: undefined name 'missing'")
    assert "q + missing" in undefined
    assert session.execute('fail "boom"') == "error: Failed: boom (line 1)"
    assert session.execute(":vars") == "(no variables)"  # nothing was kept from failed lines
    assert session.execute(":nope").startswith("error: unknown command :nope")
    assert session.execute(":state 5").startswith("error: 5 is not an object")


def test_functions_of_loaded_files_and_reload(tmp_path: Path) -> None:
    session = Session()
    session.execute(f":load {PURELIB}")
    assert session.execute("fib(10)") == "55"
    source = tmp_path / "counter.avm"
    source.write_text('behavior C { field n = 0\n on ["inc"] { n += 1; return n } }\n')
    session.execute(f":load {source}")
    session.execute("let c = create C")
    assert session.execute('call!(c, ["inc"])') == "1"
    source.write_text('behavior C { field n = 0\n on ["inc"] { n += 10; return n } }\n')
    assert session.execute(":reload") == "reloaded 2 file(s)"
    assert session.execute('call!(c, ["inc"])') == "11"  # new code, the state kept
    source.write_text("behavior C {\n")
    assert "nothing was reloaded" in session.execute(":reload")
    assert session.execute('call!(c, ["inc"])') == "21"


@pytest.mark.parametrize(
    "value",
    ['a "quoted"\n\ttext\\', (1, (2, ())), Pair(True, Just(Pair("x", False))), 2**64 - 1],
)
def test_session_values_survive_their_source_form(session: Session, value: object) -> None:
    session.variables["v"] = value  # type: ignore[assignment]
    assert session.execute("v == v") == "true"
    assert session.execute("let w = v") == f"w = {session.execute('v')}"
    assert session.variables["w"] == value
    assert literal(value)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ a terminal


class Terminal:
    """`avm repl` on a pseudo-terminal, read until the next prompt."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from avm_vm.cli import main; main()", "repl", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=ROOT,
            env=env,
            close_fds=True,
        )
        os.close(slave)
        self.transcript = ""

    def until(self, pattern: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        start = len(self.transcript)
        while not re.search(pattern, self.transcript[start:]):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {pattern!r} in {self.transcript[start:]!r}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:  # the other side closed
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"repl ended before {pattern!r}: {self.transcript!r}")
                self.transcript += chunk.decode("utf-8", "replace").replace("\r\n", "\n")
        return self.transcript[start:]

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def close(self) -> int:
        try:
            return self.process.wait(timeout=30)
        finally:
            os.close(self.master)


def test_a_recorded_terminal_session(tmp_path: Path) -> None:
    history = tmp_path / "history"
    env = {**os.environ, "AVM_REPL_HISTORY": str(history), "TERM": "dumb", "NO_COLOR": "1"}
    term = Terminal([str(BANK)], env)
    try:
        assert "2 behaviors loaded" in term.until(r"avm> ")
        term.send("let alice = create Acc\t\n")  # Tab completes the behavior's name
        assert "alice = obj:0" in term.until(r"avm> ")
        term.send('call!(ali\t, ["deposit",\n')  # an open bracket continues the line
        term.until(r"\.\.\.> ")
        term.send("100])\n")
        assert "100" in term.until(r"avm> ")
        term.send('call(alice, ["withdraw", 500])\n')
        assert "nothing" in term.until(r"avm> ")
        term.send(":trace\n")
        assert "failed: Failed: insufficient funds" in term.until(r"avm> ")
        term.send(":quit\n")
        assert term.close() == 0
    finally:
        if term.process.poll() is None:
            term.process.kill()
    lines = history.read_text().splitlines()
    assert "let alice = create Account" in lines and ":trace" in lines
