"""What hover and completion say about the language's own words.

Nothing here is written twice: a builtin's description is its ``doc`` in avmc/builtins.py,
an instruction's is its row of the "AVM instructions" table in docs/language.md (the page
users read, parsed at startup) with its signature from the instruction set, and keywords are
the word terminals of grammar/avm.lark. Adding a builtin, an instruction or a keyword in its
own table is enough for the server to know it.
"""

from __future__ import annotations

import importlib.resources
import re
from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from lark.lexer import PatternStr

from avm_vm.format.instructions import BY_SOURCE, SYNTAX_INSTRUCTIONS, Instruction
from avmc.builtins import BUILTINS
from avmc.parser import lark_parser

LANGUAGE_DOCS = Path(__file__).resolve().parents[2] / "docs" / "language.md"
BUILTINS_HEADING = "### Builtin functions"
INSTRUCTIONS_HEADING = "### AVM instructions"

# A call form in a docs cell, e.g. `append(xs, v)`, `unsafe reflect(o)`, `call!(o, m)`, `self`.
_FORM = re.compile(r"`(?:unsafe\s+)?([a-z_]+!?)[^`]*`")
# An instruction's source name that a program writes as such (`call`, `call!`).
_WRITTEN = re.compile(r"[a-z_]+!?")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")


@dataclass(frozen=True)
class Word:
    """A name the language defines: a builtin, an AVM instruction or a keyword."""

    name: str
    kind: str  # "builtin", "AVM instruction" or "keyword"
    signature: str
    description: str

    def markdown(self) -> str:
        parts = [f"```avm\n{self.signature}\n```", f"*{self.kind}*"]
        if self.description:
            parts.append(self.description)
        return "\n\n".join(parts)


def table_rows(text: str, heading: str) -> list[list[str]]:
    """The cells of the first table under the heading that starts with ``heading``.

    The header row and the rule under it are left out; no such heading gives no rows.
    """
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(heading)), None)
    if start is None:
        return []
    rows: list[list[str]] = []
    for line in lines[start + 1 :]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            break
    return rows[2:]


def call_forms(rows: list[list[str]]) -> dict[str, list[tuple[list[str], list[str]]]]:
    """For each name written in a first cell: its forms there and that row's other cells."""
    found: dict[str, list[tuple[list[str], list[str]]]] = defaultdict(list)
    for cells in rows:
        forms: dict[str, list[str]] = defaultdict(list)
        for match in _FORM.finditer(cells[0]):
            forms[match.group(1)].append(match.group(0))
        rest = [_LINK.sub(r"\1", cell) for cell in cells[1:]]
        for name, written in forms.items():
            found[name].append((written, rest))
    return found


def _docs_text() -> str:
    """docs/language.md of the checkout, else the copy installed with the package."""
    if LANGUAGE_DOCS.is_file():
        return LANGUAGE_DOCS.read_text(encoding="utf-8")
    try:
        return (importlib.resources.files("avmc.docs") / "language.md").read_text("utf-8")
    except (OSError, ModuleNotFoundError):  # no docs at all: hovers keep their signatures
        return ""


def _signature(instruction: Instruction) -> str:
    params = [
        f"{param}?" if index >= instruction.arity - instruction.optional else param
        for index, param in enumerate(instruction.params)
    ]
    prefix = "" if instruction.safe else "unsafe "
    return f"{prefix}{instruction.source}({', '.join(params)})"


@cache
def words() -> dict[str, Word]:
    """Every builtin, instruction and keyword by name (keywords last, never shadowing)."""
    text = _docs_text()
    builtin_forms = call_forms(table_rows(text, BUILTINS_HEADING))
    instruction_rows = call_forms(table_rows(text, INSTRUCTIONS_HEADING))
    found: dict[str, Word] = {}
    for name, builtin in BUILTINS.items():
        forms = builtin_forms.get(name)
        signature = forms[0][0][0].strip("`") if forms else f"{name}/{builtin.arity}"
        found[name] = Word(name, "builtin", signature, builtin.doc)
    for name, instruction in BY_SOURCE.items():
        if not _WRITTEN.fullmatch(name):  # performed by a construct, never written as a word
            continue
        rows = instruction_rows.get(name, [])
        lines = [f"{', '.join(forms)} — {cells[0]}: {' '.join(cells[1:])}" for forms, cells in rows]
        safety = "safe" if instruction.safe else "unsafe: write `unsafe` before the call"
        lines.append(f"{safety}; {instruction.layer.value} layer")
        signature = _signature(instruction)
        if name in SYNTAX_INSTRUCTIONS and rows:  # `self`, `create B`: keyword syntax
            signature = rows[0][0][0].strip("`")
        found[name] = Word(name, "AVM instruction", signature, "\n\n".join(lines))
    for keyword in keywords():
        found.setdefault(keyword, Word(keyword, "keyword", keyword, ""))
    return found


@cache
def keywords() -> tuple[str, ...]:
    """The grammar's word terminals (`behavior`, `let`, `and`, ...), sorted."""
    return tuple(
        sorted(
            {
                terminal.pattern.value
                for terminal in lark_parser().terminals
                if isinstance(terminal.pattern, PatternStr)
                and re.fullmatch(r"[a-z_]+", terminal.pattern.value)
            }
        )
    )
