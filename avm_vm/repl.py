"""`avm repl`: an interactive world, like the Erlang shell.

Files given on the command line (or with `:load`) are loaded into one `World`. A line that
is not a `:command` is a snippet of the language: an expression (its value is printed) or
statements. Each snippet is compiled as the `main` of a small program that declares the
loaded behaviors `extern`, includes the loaded files' `fn`s, and starts with a `let` for
each session variable; a `let` at the snippet's top level makes a new session variable.
So a snippet behaves exactly as the same lines would in a program's `main`.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TextIO

from avm_vm.api import LoadFailed, World, read_program, to_avm
from avm_vm.diagnostics import Diagnostic, DiagnosticError
from avm_vm.format.bytecode import decode
from avm_vm.format.instructions import BY_NAME
from avm_vm.format.program import Program
from avm_vm.runtime.runs import Done, Failed
from avm_vm.trace import LogRecorded, render_text
from avm_vm.values import Just, NothingType, ObjectRef, Pair, TxRef, Value, render

SNIPPET = "<repl>"
# The tag of a statements snippet's answer: its variables, as opposed to its own `return`.
_VARS_TAG = "\x00repl variables"
HISTORY = Path(os.environ.get("AVM_REPL_HISTORY", "~/.avm_history")).expanduser()

HELP = """\
Type a statement or an expression of the language; `let x = ...` keeps x for later lines.
  let a = create Account         call!(a, ["deposit", 100])         a
Commands:
  :load FILE...    load .avm or .tape files       :reload   reload every loaded file
  :state X         the state of object X          :objects  objects in the store
  :trace [N|all]   trace of the last input (or the last N entries, or all of it)
  :vars            session variables              :behaviors  loaded behaviors
  :help            this text                      :quit     leave (or Ctrl-D)
A line ending inside braces or brackets continues on the next line."""

COMMANDS = (":load", ":reload", ":state", ":objects", ":trace", ":vars", ":behaviors")
COMMANDS += (":help", ":quit")
KEYWORDS = ("let", "if", "else", "while", "for", "in", "match", "return", "fail", "atomic")
KEYWORDS += ("create", "call!", "just", "nothing", "true", "false", "self", "under")


@dataclass
class Session:
    """The REPL's state: the world, the files it came from, and the session variables."""

    files: list[Path] = field(default_factory=list)
    world: World = field(default_factory=World)
    variables: dict[str, Value] = field(default_factory=dict)
    functions: str = ""  # the `fn` items of the loaded source files
    last_mark: int = 0  # trace length before the last input

    # ----------------------------------------------------------------- commands

    def execute(self, text: str) -> str:
        """Run one input (a command or a snippet) and answer what to print."""
        text = text.strip()
        if not text:
            return ""
        if text.startswith(":"):
            name, _, rest = text.partition(" ")
            command = _COMMANDS.get(name)
            if command is None:
                return f"error: unknown command {name} (:help lists them)"
            return command(self, rest.strip())
        self.last_mark = len(self.world.runtime.trace.entries)
        return self._snippet(text)

    def load(self, argument: str) -> str:
        paths = [Path(word) for word in argument.split()]
        if not paths:
            return "error: :load needs at least one file"
        try:
            for path in paths:
                self._add(path, read_program(path), replace=False)
        except (LoadFailed, ValueError) as error:
            return f"error: {error}"
        return f"loaded {', '.join(map(str, paths))}"

    def reload(self, _: str = "") -> str:
        """Recompile every loaded file; behaviors get the new code, objects keep state."""
        try:
            programs = [(path, read_program(path)) for path in self.files]
        except LoadFailed as error:
            return f"error: {error} (nothing was reloaded)"
        self.functions = ""
        for path, program in programs:
            self.world.runtime.load(program, replace=True)
            self.functions += _functions_of(path)
        return f"reloaded {len(programs)} file(s)"

    def state(self, argument: str) -> str:
        target = self._object(argument)
        if isinstance(target, str):
            return target
        try:
            return render(to_avm(self.world.state(target)))
        except KeyError as error:
            return f"error: {error.args[0]}"

    def objects(self, _: str = "") -> str:
        runtime = self.world.runtime
        lines = [
            f"obj:{object_id}  {runtime.store.get(object_id).behavior}"  # type: ignore[union-attr]
            for object_id in runtime.store.ids()
        ]
        return "\n".join(lines) or "(no objects)"

    def trace(self, argument: str) -> str:
        entries = self.world.runtime.trace.entries
        if argument == "all":
            shown = entries
        elif argument:
            if not argument.isdigit():
                return "error: :trace takes a number of entries, or all"
            shown = entries[-int(argument) :] if int(argument) else []
        else:
            shown = entries[self.last_mark :]
        return render_text(shown) or "(no trace entries)"

    def show_variables(self, _: str = "") -> str:
        lines = [f"{name} = {render(value)}" for name, value in self.variables.items()]
        return "\n".join(lines) or "(no variables)"

    def behaviors(self, _: str = "") -> str:
        return ", ".join(self.world.behaviors) or "(no behaviors loaded)"

    # ----------------------------------------------------------------- snippets

    def _snippet(self, text: str) -> str:
        """Compile ``text`` as an expression if it is one, else as statements, and run it."""
        declared: list[str] = []
        kept: list[str] = []
        try:
            program = _compile(self._program(f"return (\n{text}\n)"))
        except DiagnosticError:
            try:
                declared = _top_level_lets(text)
                kept = [*self.variables, *(name for name in declared if name not in self.variables)]
                answer = f'return ("{_VARS_TAG}", [{", ".join(kept)}])'
                program = _compile(self._program(f"\n{text}\n{answer}"))
            except DiagnosticError as error:
                return _shifted(error, text)
        interpreter = self.world.runtime.load(program)
        assert program.main is not None
        outcome = self.world.runtime.start(interpreter, program.main)
        printed = self._logs()
        if type(outcome) is Failed:
            failure = outcome.failure
            where = ""
            if failure.source_name == SNIPPET and failure.line > 1:
                where = f" (line {failure.line - 1})"
            elif failure.line:
                where = f" ({failure.source_name}:{failure.line}:{failure.col})"
            return printed + f"error: {failure}{where}"
        assert type(outcome) is Done
        value = outcome.value
        if kept and type(value) is Pair and value.first == _VARS_TAG:
            self.variables.update(zip(kept, value.second, strict=True))  # type: ignore[arg-type]
            shown = [f"{name} = {render(self.variables[name])}" for name in declared]
            return printed + ("\n".join(shown) or "ok")
        return printed + render(value)

    def _program(self, body: str) -> str:
        """A program whose main runs ``body`` after binding the session variables; the
        body starts on line 2 (or line 3 for an expression), as the user typed it."""
        externs = "".join(f"extern behavior {name}\n" for name in self.world.behaviors)
        lets = " ".join(f"let {name} = {literal(value)}" for name, value in self.variables.items())
        return f"main {{ {lets} {body}\n}}\n{externs}{self.functions}"

    def _logs(self) -> str:
        entries = self.world.runtime.trace.entries[self.last_mark :]
        logs = [f"log: {render(e.event.value)}" for e in entries if type(e.event) is LogRecorded]
        return "".join(line + "\n" for line in logs)

    def _add(self, path: Path, program: Program, replace: bool) -> None:
        self.world.runtime.load(program, replace=replace)
        self.files.append(path)
        self.functions += _functions_of(path)

    def _object(self, argument: str) -> ObjectRef | str:
        value = self.variables.get(argument)
        if value is None and argument.startswith("obj:") and argument[4:].isdigit():
            value = ObjectRef(int(argument[4:]))
        if type(value) is not ObjectRef:
            return f"error: {argument or 'nothing'} is not an object (a variable or obj:N)"
        return value


_COMMANDS: dict[str, Callable[[Session, str], str]] = {
    ":load": Session.load,
    ":reload": Session.reload,
    ":state": Session.state,
    ":objects": Session.objects,
    ":trace": Session.trace,
    ":vars": Session.show_variables,
    ":behaviors": Session.behaviors,
    ":help": lambda session, _: HELP,
}


# ------------------------------------------------------------------------------ helpers


def literal(value: Value) -> str:
    """``value`` as source text the compiler reads back to the same value."""
    kind = type(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is str:
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')  # type: ignore[union-attr]
        escaped = escaped.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
        return '"' + escaped.replace("\0", "\\0") + '"'
    if kind is tuple:
        return "[" + ", ".join(literal(item) for item in value) + "]"  # type: ignore[union-attr]
    if kind is Pair:
        return f"({literal(value.first)}, {literal(value.second)})"  # type: ignore[union-attr]
    if kind is Just:
        return f"just ({literal(value.value)})"  # type: ignore[union-attr]
    if kind is NothingType:
        return "nothing"
    if kind is ObjectRef:
        return f"obj:{value.id}"  # type: ignore[union-attr]
    if kind is TxRef:
        return f"tx:{value.id}"  # type: ignore[union-attr]
    raise TypeError(f"not an AVM value: {value!r}")


def _compile(source: str) -> Program:
    """The snippet program, compiled and verified; raises `DiagnosticError`."""
    from avmc.compiler import build

    return decode(build(source, SNIPPET).tape, SNIPPET)


def _top_level_lets(text: str) -> list[str]:
    """The names the snippet's own top-level `let`s declare, in order."""
    from avmc import ast
    from avmc.parser import parse

    module = parse(f"main {{\n{text}\n}}", SNIPPET)
    main = next(item for item in module.items if isinstance(item, ast.MainDef))
    return [stmt.name for stmt in main.body.stmts if isinstance(stmt, ast.Let)]


def _functions_of(path: Path) -> str:
    """The source text of the `fn` items of a source file ("" for a .tape file)."""
    if path.suffix != ".avm":
        return ""
    from avmc import ast
    from avmc.parser import parse

    text = path.read_text(encoding="utf-8")
    items = parse(text, str(path)).items
    lines = text.splitlines(keepends=True)
    starts = [_offset(lines, item.span.line, item.span.col) for item in items] + [len(text)]
    chunks = [
        text[starts[i] : starts[i + 1]]
        for i, item in enumerate(items)
        if isinstance(item, ast.FunctionDef)
    ]
    return "".join(chunk.rstrip() + "\n" for chunk in chunks)


def _offset(lines: list[str], line: int, col: int) -> int:
    return sum(len(text) for text in lines[: line - 1]) + col - 1


def _shifted(error: DiagnosticError, text: str) -> str:
    """The snippet's diagnostics, located in what the user typed (line 1 is its first)."""
    rendered = []
    for diagnostic in error.diagnostics:
        span = diagnostic.span
        if span is not None and span.file == SNIPPET and span.line >= 2:
            moved = replace(span, line=span.line - 1)
            if span.end_line is not None:
                moved = replace(moved, end_line=span.end_line - 1)
            diagnostic = Diagnostic(
                diagnostic.severity, diagnostic.message, moved, diagnostic.notes, diagnostic.hint
            )
            rendered.append(diagnostic.render(text))
        else:
            rendered.append(diagnostic.render())
    return "\n".join(rendered)


def _balanced(text: str) -> bool:
    """Whether every bracket opened in ``text`` (outside strings) is closed."""
    depth, in_string, escaped = 0, False, False
    for char in text:
        if in_string:
            escaped = not escaped and char == "\\"
            if char == '"' and not escaped:
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
    return depth <= 0


# ------------------------------------------------------------------------------ the loop


def run(files: list[Path], out: TextIO = sys.stdout) -> int:
    """The interactive loop: read, run, print, until `:quit` or end of input."""
    session = Session()
    for path in files:
        message = session.load(str(path))
        if message.startswith("error"):
            print(message, file=sys.stderr)
            return 1
    _line_editing(session)
    print(f"avm repl: {len(session.world.behaviors)} behaviors loaded; :help for help", file=out)
    while True:
        try:
            text = _read(out)
        except EOFError:
            print(file=out)
            return 0
        except KeyboardInterrupt:
            print("\n(interrupted; :quit or Ctrl-D leaves)", file=out)
            continue
        if text.strip() in (":quit", ":q"):
            return 0
        try:
            answer = session.execute(text)
        except KeyboardInterrupt:
            answer = "(interrupted)"
        if answer:
            print(answer, file=out, flush=True)


def _read(out: TextIO) -> str:
    text = input("avm> ")
    while not _balanced(text):
        text += "\n" + input("...> ")
    return text


def _line_editing(session: Session) -> None:
    """History and completion through readline, where the platform has it."""
    try:
        import readline
    except ImportError:
        return
    with contextlib.suppress(OSError):
        readline.read_history_file(HISTORY)
    atexit.register(_save_history, readline)

    def complete(prefix: str, state: int) -> str | None:
        names = [
            *COMMANDS,
            *KEYWORDS,
            *BY_NAME,
            *session.world.behaviors,
            *session.variables,
        ]
        matches = sorted({name for name in names if name.startswith(prefix)})
        return matches[state] if state < len(matches) else None

    readline.set_completer_delims(" \t\n()[],;{}")
    readline.set_completer(complete)
    readline.parse_and_bind("tab: complete")


def _save_history(readline: object) -> None:
    with contextlib.suppress(OSError):
        readline.write_history_file(HISTORY)  # type: ignore[attr-defined]
