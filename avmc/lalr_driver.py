"""Lark's LALR table for grammar/avm.lark, driven by reductions generated from the grammar.

Each rule of the grammar gets a small Python function, written once per grammar from the
rule's shape (which children a Lark tree would keep, which are inlined ``_rule`` lists,
where an absent ``[optional]`` leaves ``None``) and compiled: it reads its children at
fixed places of the parser's stack, makes the span and calls the AST builder's method for
the rule, and pushes the result with the state the table goes to. The table itself is
Lark's; the reductions by a ``?rule`` that only passes its child up (``expr`` to
``conjunction`` to ... ``atom``) are followed through ahead of time, so a whole chain of them
is one look-up.

The parser's stack is one flat list of triples: the state, the value (for a token, its
tuple in `avmc.ast_builder.Lexeme`'s layout), and the value's bounds (a token's own tuple,
or line, column, end line, end column and the height of the parse below it).
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import CodeType
from typing import Any

from lark import Lark
from lark.grammar import Rule
from lark.parsers.lalr_analysis import Shift

# A rule's kept children: (index in the expansion, inline it, placeholders before it).
Plan = list[tuple[int, bool, int]]

_SPAN_FIELDS = ("line", "col", "end_line", "end_col")  # after the file


class NoParse(Exception):
    """The text does not parse; the tree-building parser explains why."""


def plan(rule: Rule) -> tuple[Plan, int]:
    """Which of a reduction's children its method receives (Lark's own child filter), and
    how many placeholders follow the last one."""
    expansion = rule.expansion
    flags = rule.options.empty_indices
    if flags:
        text = "".join(str(int(flag)) for flag in flags)
        empty = [len(ones) for ones in text.split("0")]
    else:
        empty = [0] * (len(expansion) + 1)
    kept: Plan = []
    nones = 0
    for i, symbol in enumerate(expansion):
        nones += empty[i]
        if not (symbol.is_term and symbol.filter_out):
            inline = not symbol.is_term and symbol.name.startswith("_")
            kept.append((i, inline, nones))
            nones = 0
    return kept, nones + empty[len(expansion)]


def keeps_child(rule: Rule) -> bool:
    """A `?rule` alternative of one symbol, which Lark replaces by that symbol's value."""
    return (
        rule.options.expand1
        and not rule.alias
        and not rule.origin.name.startswith("_")
        and len(rule.expansion) == 1
        and plan(rule) == ([(0, False, 0)], 0)
    )


def makes_node(rule: Rule) -> bool:
    """Whether reducing by ``rule`` calls a method (not an inlined `_rule`, a `?rule`
    passing its child up, or grouping parentheses)."""
    name = rule.alias or rule.origin.name
    return not name.startswith("_") and not (rule.options.expand1 and not rule.alias)


def method_name(rule: Rule) -> str:
    return str(rule.alias or rule.origin.name)


@dataclass(frozen=True)
class Driver:
    """Everything a parse needs, made once per grammar."""

    # Per state, token type -> action: a shift to state ``a`` (0 <= a < states), a chain
    # of child-passing reductions ``a >= states`` (its end state, by the state below the
    # top: ``chains[a]``), or ``~r``: the reduction made by ``reducers(...)[r]``.
    actions: list[dict[str, int]]
    chains: list[ChainEnds | None]  # None below ``states``
    start: int
    accept: int
    # Called as ``make`` in `generate` says, with ``gotos``: the reductions, indexed by
    # rule (None for a child-passing one), each returning the state it leaves on top.
    reducers: Callable[..., list[Callable[[list[Any]], int] | None]]
    gotos: dict[str, dict[int, int]]  # per rule name: state below -> state after it


def load(parser: Lark, quick_spans: bool) -> Driver:
    """The driver for ``parser``'s grammar, its generated code from the cache when there."""
    table = parser.parser.parser._parse_table
    rules = list(parser.rules)
    rows = table.states
    if sorted(rows) != list(range(len(rows))):
        raise ValueError("Lark's LALR states are not numbered 0 .. n-1")
    index = {rule: i for i, rule in enumerate(rules)}
    plain = [
        {
            str(kind): (target if action is Shift else ~index[target])
            for kind, (action, target) in rows[state].items()
        }
        for state in range(len(rows))
    ]
    origins = [str(rule.origin.name) for rule in rules]
    unit = [keeps_child(rule) for rule in rules]
    gotos: dict[str, dict[int, int]] = {origin: {} for origin in origins}
    for state, row in enumerate(plain):
        for symbol, action in row.items():
            if symbol in gotos:  # a rule's name: a goto
                gotos[symbol][state] = action
    actions, chains = _chain_units(plain, gotos, origins, unit)
    source = generate(rules, quick_spans)
    return Driver(
        actions,
        [None] * len(actions) + chains,  # type: ignore[operator]
        table.start_states["start"],
        table.end_states["start"],
        _compiled(source),
        gotos,
    )


def _chain_units(
    plain: list[dict[str, int]],
    gotos: dict[str, dict[int, int]],
    origins: list[str],
    unit: list[bool],
) -> tuple[list[dict[str, int]], list[ChainEnds]]:
    """The actions with every reduction by a child-passing rule replaced by the whole chain
    of them the token sets off, and the chains."""
    count = len(plain)
    chains: dict[tuple[int, str], int] = {}
    ends: list[ChainEnds] = []
    actions = []
    for row in plain:
        new_row = {}
        for kind, action in row.items():
            if action < 0 and unit[~action]:
                key = (~action, kind)
                if key not in chains:
                    chains[key] = len(ends)
                    ends.append(ChainEnds(plain, gotos, origins, unit, ~action, kind))
                action = count + chains[key]
            new_row[kind] = action
        actions.append(new_row)
    return actions, ends


class ChainEnds(dict[int, int]):
    """Where a chain of child-passing reductions ends, by the state below the top.

    Such a reduction changes only the top state, to the goto of the state below it, so
    where a chain ends depends on its first rule, the token that sets it off and the state
    below (which the chain leaves in place). Filled in as states below are met."""

    def __init__(
        self,
        plain: list[dict[str, int]],
        gotos: dict[str, dict[int, int]],
        origins: list[str],
        unit: list[bool],
        rule: int,
        kind: str,
    ) -> None:
        super().__init__()
        self.plain, self.gotos, self.origins, self.unit = plain, gotos, origins, unit
        self.rule, self.kind = rule, kind

    def __missing__(self, below: int) -> int:
        state = self.gotos[self.origins[self.rule]][below]
        action = self.plain[state].get(self.kind)
        while action is not None and action < 0 and self.unit[~action]:
            state = self.gotos[self.origins[~action]][below]
            action = self.plain[state].get(self.kind)
        self[below] = state
        return state


# ---------------------------------------------------------------- code generation


def generate(rules: Iterable[Rule], quick_spans: bool) -> str:
    """Python source of ``make(builder, span, gotos, file, new, Span)``: the list of
    reductions, one per rule, a parse's own (they call its builder's methods and make spans
    in its file). With ``quick_spans`` a span is made in place, its fields written straight
    into its dictionary (see `avmc.ast_builder._quick_spans`); else by calling ``span``."""
    head = ["def make(builder, span, gotos, file, new, Span):"]
    body: list[str] = []
    names: list[str] = []
    methods: set[str] = set()
    gotos: set[str] = set()
    for number, rule in enumerate(rules):
        if keeps_child(rule):
            names.append("None")
            continue
        origin = str(rule.origin.name)
        gotos.add(origin)
        if makes_node(rule):
            methods.add(method_name(rule))
        names.append(f"r{number}")
        body.extend(_reducer(number, rule, quick_spans))
    head += [f"    m_{name} = builder.{name}" for name in sorted(methods)]
    head += [f"    g_{name} = gotos[{name!r}]" for name in sorted(gotos)]
    return "\n".join([*head, *body, f"    return [{', '.join(names)}]", ""])


def _reducer(number: int, rule: Rule, quick_spans: bool) -> list[str]:
    size = len(rule.expansion)
    kept, trailing = plan(rule)
    origin = str(rule.origin.name)

    def at(i: int, field: int) -> str:  # field 0: state, 1: value, 2: bounds
        return f"stack[{3 * (i - size) + field}]"

    lines = [f"    def r{number}(stack):"]
    node = makes_node(rule)
    last = "f" if size == 1 else "l"  # the bounds of the first child are f, of the last l
    if size:
        lines.append(f"        f = {at(0, 2)}")
    if size > 1:
        lines.append(f"        l = {at(size - 1, 2)}")
    named = {0: "f", size - 1: last}
    # The height: one more than the tallest child for a node; tokens have none.
    below = [
        f"{named.get(i) or at(i, 2)}[4]"
        for i, symbol in enumerate(rule.expansion)
        if not symbol.is_term
    ]
    level = int(node)
    if len(below) == 2:  # the commonest: a binary operator
        lines.append(f"        h = {below[0]}")
        lines.append(f"        h2 = {below[1]}")
        below = ["(h if h > h2 else h2)"]
    if not below:
        height = str(level)
    else:
        tallest = below[0] if len(below) == 1 else f"max({', '.join(below)})"
        height = tallest if not level else f"{tallest} + 1"
    if not size:
        where: tuple[str, ...] = ("1", "1", "None", "None")
    elif node:  # read once, for the span and the bounds
        lines.append(f"        line, col, end_line, end_col = f[0], f[1], {last}[2], {last}[3]")
        where = _SPAN_FIELDS
    else:
        where = ("f[0]", "f[1]", f"{last}[2]", f"{last}[3]")
    bounds = f"({', '.join(where)}, {height})"
    if size == 1 and not node and not rule.expansion[0].is_term:
        bounds = "f"  # a rule's own value of one rule's: the same bounds and height
    if not node:
        here = ""
    elif quick_spans:
        lines.append("        here = new(Span)")
        lines.append("        fields = here.__dict__")
        lines.append("        fields['file'] = file")
        fields = zip(_SPAN_FIELDS, where, strict=True)
        lines += [f"        fields[{name!r}] = {value}" for name, value in fields]
        here = "here"
    else:
        here = f"span({', '.join(where)})"
    arguments = []
    for i, inline, nones in kept:
        arguments += ["None"] * nones
        arguments.append(("*" if inline else "") + at(i, 1))
    arguments += ["None"] * trailing
    if node:
        value = f"m_{method_name(rule)}({', '.join([here, *arguments])})"
    elif method_name(rule).startswith("_"):
        # An inlined `_rule` is a list of children. A left-recursive repetition extends the
        # list its first child already is (each such list is held by the stack alone), so
        # a long repetition stays linear.
        if kept and kept[0][1] and not kept[0][2]:
            lines.append(f"        value = {at(kept[0][0], 1)}")
            rest = arguments[1:]
            if rest:
                lines.append(f"        value += ({', '.join(rest)},)")
        else:
            lines.append(f"        value = [{', '.join(arguments)}]")
        value = "value"
    elif len(kept) == 1 and not kept[0][1] and not kept[0][2] and not trailing:
        value = at(kept[0][0], 1)  # grouping parentheses: the child, with their bounds
    else:
        raise ValueError(f"grammar rule {rule} has no method in the AST builder")
    lines.append(f"        state = g_{origin}[stack[{-3 * size - 3}]]")
    if size:
        lines.append(f"        stack[{-3 * size}:] = (state, {value}, {bounds})")
    else:
        lines.append(f"        stack += (state, {value}, {bounds})")
    lines.append("        return state")
    return lines


def _compiled(source: str) -> Callable[..., Any]:
    """The ``make`` function of ``source``, its code object cached beside Lark's grammar
    cache (written to a temporary file and renamed, so processes building it at once
    never read half a file)."""
    # Named after the source (so a grammar's change makes new code) and the Python that
    # compiled it (code objects are its own).
    digest = hashlib.sha256(f"{sys.version}\0{source}".encode()).hexdigest()[:16]
    path = _cache_path(digest)
    code = None
    if path is not None:
        try:
            code = marshal.loads(path.read_bytes())
        except (OSError, ValueError, EOFError, TypeError):
            code = None
    if type(code) is not CodeType:  # none cached, or a damaged file
        code = compile(source, "<avmc generated reductions>", "exec")
        if path is not None and _store(path, marshal.dumps(code)):
            remove_stale(path, _REDUCTIONS_FILE)
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    return namespace["make"]


def cache_directory() -> Path | None:
    """Where the compiler keeps what it derives from the grammar between processes: beside
    the JIT's cache, under ``$XDG_CACHE_HOME`` or ``~/.cache``; None when there is no such
    place."""
    try:
        directory = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "avm"
        directory.mkdir(parents=True, exist_ok=True)
    except (OSError, RuntimeError):  # RuntimeError: no home directory
        return None
    return directory


# The reductions' cache files, one per grammar and Python (see `_compiled`).
_REDUCTIONS_FILE = re.compile(r"avmc-reductions-[0-9a-f]{16}\.marshal")


def _cache_path(digest: str) -> Path | None:
    directory = cache_directory()
    return None if directory is None else directory / f"avmc-reductions-{digest}.marshal"


def _store(path: Path, data: bytes) -> bool:
    """Write ``path`` whole or not at all (a cache that cannot be written is only slower);
    whether it was written."""
    try:
        handle, name = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    except OSError:
        return False
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(name, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(name)
        return False
    return True


def remove_stale(kept: Path, kind: re.Pattern[str]) -> None:
    """Delete the cache files beside ``kept`` whose names ``kind`` matches, ``kept`` excepted:
    what an earlier grammar or Python left (called once a new one is written, so the cache
    does not grow with every change). A process still reading one keeps what it opened; one
    about to open one finds none and rebuilds it, as with no cache. A file already gone, or
    one that cannot be removed, is left as it is."""
    try:
        names = os.listdir(kept.parent)
    except OSError:
        return
    for name in names:
        if name != kept.name and kind.fullmatch(name):
            with contextlib.suppress(OSError):
                os.unlink(kept.parent / name)
