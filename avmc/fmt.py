"""The canonical layout of AVM source: ``format_source(source, filename) -> str``.

The program is parsed by the compiler's own parser (avmc/parser.py) and printed back from
its parse tree: two spaces per level, one statement per line, one space around binary
operators and after commas, no redundant parentheses, separators or trailing commas. A block
holding a single simple statement stays on its header's line when that line fits in
``WIDTH`` columns (``on ["get"] { return count }``); an ``if`` with an ``else`` and an
``atomic`` with a handler are always spread over lines. A statement too long for one line
has its first list, call or pair that does not fit spread one item per line (with a
trailing comma), and so on inside; a list, call or pair written with a trailing comma or
holding a comment is always spread.

Comments are not in the parse tree, so they are read from the same lexer's token stream and
woven back in afterwards: a comment that follows code on its line stays at the end of the
line holding that code; any other comment goes on its own line just above the line holding
the code that follows it. Blank lines between statements are kept (at most one in a row);
top-level items are separated by exactly one.
"""

from __future__ import annotations

import difflib
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from lark import Token, Tree

from avm_vm.diagnostics import DiagnosticError, error

from .parser import lark_parser, parse
from .source import read_source

WIDTH = 100
INDENT = "  "

_COMMENTS = ("LINE_COMMENT", "BLOCK_COMMENT")
_TRAILING_COMMAS = {("COMMA", "RPAR"), ("COMMA", "RSQB")}
_BEFORE, _AFTER = 0, 1  # a comment's slot: on its own line above a line, or at its end

# Binding strength of each binary operator (grammar/avm.lark, loosest first); `not` binds
# at 3, `just` and `create` at 8, postfix forms at 9 and atoms at 10.
_BINARY = {
    "OR": 1,
    "AND": 2,
    **dict.fromkeys(("EQ", "NE", "LT", "LE", "GT", "GE"), 4),
    "CONCAT": 5,
    "PLUS": 6,
    "MINUS": 6,
    "STAR": 7,
    "SLASH": 7,
    "PERCENT": 7,
}
_COMPARISON = 4
_NOT, _PREFIX, _POSTFIX, _ATOM = 3, 8, 9, 10
_ATOMS = {
    "expr_true": "true",
    "expr_false": "false",
    "expr_nothing": "nothing",
    "expr_self": "self",
    "expr_input": "input",
    "expr_sender": "sender",
}
_CONSTANT_PATTERNS = {"pat_true": "true", "pat_false": "false", "pat_nothing": "nothing"}
_LITERALS = {"expr_name", "expr_nat", "expr_string", "expr_objref", "expr_txref"}
# Statements that hold blocks of their own: never put inside a one-line block.
_COMPOUND = {"stmt_if", "stmt_while", "stmt_for", "stmt_match", "stmt_atomic", "stmt_expect_fail"}


def format_source(source: str, filename: str) -> str:
    """``source`` in the canonical layout; raises ``DiagnosticError`` if it does not parse."""
    parse(source, filename)  # the compiler's own errors (syntax, literals, nesting depth)
    parser = lark_parser()
    tokens = [t for t in parser.lex(source, dont_ignore=True) if t.type != "WHITESPACE"]
    printer = _Printer(tokens)
    printer.module(parser.parse(source))
    return _Weaver(tokens, printer.lines).render()


@dataclass(frozen=True)
class FormattedFile:
    name: str
    source: str  # the text as the parser reads it
    formatted: str
    changed: bool  # the file's bytes differ (layout, line endings or a byte order mark)

    def diff(self) -> str:
        """A unified diff from the file to its formatted text."""
        return "".join(
            difflib.unified_diff(
                self.source.splitlines(keepends=True),
                self.formatted.splitlines(keepends=True),
                f"{self.name} (before)",
                f"{self.name} (formatted)",
            )
        )


def format_file(path: Path) -> FormattedFile:
    """Format a file without writing it; raises ``DiagnosticError`` as the compiler would."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DiagnosticError(error(f"cannot read {path}: {exc.strerror}")) from exc
    return format_data(data, str(path))


def format_data(data: bytes, name: str) -> FormattedFile:
    """Format the bytes of a source file called ``name`` (in messages)."""
    source = read_source(data, name)
    formatted = format_source(source, name)
    return FormattedFile(name, source, formatted, formatted.encode("utf-8") != data)


def avm_files(paths: list[Path]) -> list[Path]:
    """The paths given, with each directory replaced by the .avm files under it."""
    found: list[Path] = []
    for path in paths:
        found.extend(sorted(path.rglob("*.avm")) if path.is_dir() else [path])
    return found


# ---------------------------------------------------------------- printing the code


@dataclass
class _Line:
    depth: int
    text: str
    item: bool = False  # the first line of a top-level item
    continued: bool = False  # a later line of a statement spread over several
    blank: bool | None = None  # the source has a blank line before this line's code
    before: list[int] = field(default_factory=list)  # comments (token indices) above it
    after: list[int] = field(default_factory=list)  # comments at the end of the line


_Each = Callable[[int, Tree], None]  # prints one part of a container at a depth


class _Printer:
    def __init__(self, tokens: list[Token]) -> None:
        self.lines: list[_Line] = []
        self._exprs = _Expressions(tokens)

    def _emit(self, depth: int, text: str) -> None:
        self.lines.append(_Line(depth, text))

    def _emit_parts(self, depth: int, parts: list[_Part], suffix: str = "") -> None:
        """A statement or field, spread over lines when it does not fit on one."""
        for number, (line_depth, text) in enumerate(_layout(parts, depth, suffix)):
            self.lines.append(_Line(line_depth, text, continued=number > 0))

    # ------------------------------------------------------------ items and members

    def module(self, tree: Tree) -> None:
        for item in tree.children:
            first = len(self.lines)
            self._item(item)
            self.lines[first].item = True

    def _item(self, node: Tree) -> None:
        kind, children = node.data, node.children
        if kind == "item_behavior":
            name, *members = children
            self._open(0, f"behavior {name}", node, members, self._member)
        elif kind == "item_extern":
            self._emit(0, f"extern behavior {children[0]}")
        elif kind == "item_fn":
            name, *params, block = children
            self._block(0, f"fn {name}({', '.join(params)})", block, inline=True)
        elif kind == "item_main":
            self._block(0, "main", children[0], inline=True)
        elif kind == "item_test":
            self._block(0, f"test {children[0]}", children[1], inline=True)
        else:
            _unknown(node)

    def _member(self, depth: int, node: Tree) -> None:
        if node.data == "member_field":
            name, value = node.children
            self._emit_parts(depth, [f"field {name} = ", *self._exprs.expr(value)])
        elif node.data == "member_clause":
            pattern, guard, block = node.children
            head = f"on {_pattern(pattern)}{self._exprs.guard(guard)}"
            self._block(depth, head, block, inline=True)
        else:
            _unknown(node)

    def _open(self, depth: int, head: str, node: Tree, parts: list[Tree], each: _Each) -> None:
        """``head {`` PARTS ``}`` with one part per line, or ``head {}`` when empty."""
        if not parts and not self._exprs.has_comment(node):
            self._emit(depth, f"{head} {{}}")
            return
        self._emit(depth, f"{head} {{")
        for part in parts:
            each(depth + 1, part)
        self._emit(depth, "}")

    # ------------------------------------------------------------ blocks and statements

    def _block(self, depth: int, head: str, block: Tree, inline: bool, close: bool = True) -> None:
        """``head { ... }``; without ``close`` the caller's next line closes it (``} else``)."""
        statements = block.children
        if inline and not self._exprs.has_comment(block):
            if not statements:
                self._emit(depth, f"{head} {{}}")
                return
            if len(statements) == 1 and statements[0].data not in _COMPOUND:
                parts = self._exprs.simple(statements[0])
                line = f"{head} {{ {_flat(parts)} }}"
                if len(INDENT * depth + line) <= WIDTH and not _must_spread(parts):
                    self._emit(depth, line)
                    return
        self._emit(depth, f"{head} {{")
        for index, statement in enumerate(statements):
            following = statements[index + 1] if index + 1 < len(statements) else None
            self._statement(depth + 1, statement, self._exprs.needs_separator(statement, following))
        if close:
            self._emit(depth, "}")

    def _statement(self, depth: int, node: Tree, separator: bool) -> None:
        kind, children = node.data, node.children
        if kind == "stmt_if":
            self._if(depth, node, "if ")
        elif kind == "stmt_while":
            condition, block = children
            self._block(depth, f"while {self._exprs.text(condition)}", block, inline=True)
        elif kind == "stmt_for":
            name, iterable, block = children
            self._block(depth, f"for {name} in {self._exprs.text(iterable)}", block, inline=True)
        elif kind == "stmt_match":
            subject, *arms = children
            self._open(depth, f"match {self._exprs.text(subject)}", node, arms, self._arm)
        elif kind == "stmt_atomic":
            controller, block, handler = children
            under = "" if controller is None else f" under {self._exprs.text(controller)}"
            head = f"atomic{under}"
            if handler is None:
                self._block(depth, head, block, inline=True)
                return
            *names, body = handler.children
            self._block(depth, head, block, inline=False, close=False)
            bound = ", ".join(name for name in names if name is not None)
            catch = f"}} else ({bound})" if bound else "} else"
            self._block(depth, catch, body, inline=False)
        elif kind == "stmt_expect_fail":
            *expected, block = children
            head = " ".join(["expect_fail", *(str(part) for part in expected if part is not None)])
            self._block(depth, head, block, inline=True)
        else:
            self._emit_parts(depth, self._exprs.simple(node), ";" if separator else "")

    def _if(self, depth: int, node: Tree, keyword: str) -> None:
        """An ``if`` statement; ``keyword`` is ``} else if `` for the rest of a chain."""
        condition, then, otherwise = node.children
        head = f"{keyword}{self._exprs.text(condition)}"
        if otherwise is None:
            self._block(depth, head, then, inline=keyword == "if ")
            return
        self._block(depth, head, then, inline=False, close=False)
        if otherwise.data == "stmt_if":
            self._if(depth, otherwise, "} else if ")
        else:
            self._block(depth, "} else", otherwise, inline=False)

    def _arm(self, depth: int, node: Tree) -> None:
        pattern, guard, block = node.children
        self._block(depth, f"{_pattern(pattern)}{self._exprs.guard(guard)} =>", block, inline=True)


@dataclass(frozen=True)
class _Group:
    """Bracketed items that may be spread one per line: a list, a call's arguments, a pair."""

    open: str
    items: tuple[tuple[_Part, ...], ...]
    close: str
    trailing_comma: bool  # after the last item when spread (a pair takes none)
    spread: bool  # one item per line even when it fits on one

    def flat(self) -> str:
        return self.open + ", ".join(_flat(item) for item in self.items) + self.close

    def must_spread(self) -> bool:
        """Whether this group or one inside it is spread whatever the width."""
        return self.spread or any(_must_spread(item) for item in self.items)


# An expression as printed: text, and groups that can be spread over lines when it is long.
_Part = str | _Group


def _flat(parts: Iterable[_Part]) -> str:
    return "".join(part if isinstance(part, str) else part.flat() for part in parts)


def _must_spread(parts: Iterable[_Part]) -> bool:
    return any(isinstance(part, _Group) and part.must_spread() for part in parts)


def _layout(parts: list[_Part], depth: int, suffix: str = "") -> list[tuple[int, str]]:
    """The lines of ``parts`` + ``suffix`` at ``depth``: on one line if it fits in WIDTH,
    or else with the first group that does not fit spread one item per line."""
    lines: list[tuple[int, str]] = []
    text = ""
    for index, part in enumerate(parts):
        rest = _flat(parts[index:]) + suffix
        if len(INDENT * depth + text + rest) <= WIDTH and not _must_spread(parts[index:]):
            lines.append((depth, text + rest))
            return lines
        if (
            isinstance(part, str)
            or not part.items
            or not (part.must_spread() or len(INDENT * depth + text + part.flat()) > WIDTH)
        ):
            text += _flat([part])
            continue
        lines.append((depth, text + part.open))
        for position, item in enumerate(part.items):
            comma = part.trailing_comma or position + 1 < len(part.items)
            lines.extend(_layout(list(item), depth + 1, "," if comma else ""))
        text = part.close
    lines.append((depth, text + suffix))
    return lines


def _level(node: Tree) -> int:
    kind = node.data
    if kind == "expr_binop":
        return _BINARY[node.children[1].type]
    if kind == "expr_not":
        return _NOT
    if kind in ("expr_just", "expr_create"):
        return _PREFIX
    if kind in ("expr_index", "expr_slice", "expr_call", "expr_unsafe_call"):
        return _POSTFIX
    return _ATOM


class _Expressions:
    """Statements and expressions as parts (text and groups that can be spread over lines).

    A list, call or pair is spread one item per line when it does not fit, and always when
    the source has a comment inside it or a trailing comma after its last item.
    """

    def __init__(self, tokens: list[Token]) -> None:
        self.comment_starts = [t.start_pos for t in tokens if t.type in _COMMENTS]
        code = [t for t in tokens if t.type not in _COMMENTS]
        # The code token before each closing bracket, by where the bracket ends.
        self._before_end = {t.end_pos: code[i - 1].type for i, t in enumerate(code) if i > 0}

    def has_comment(self, node: Tree) -> bool:
        after = bisect_right(self.comment_starts, node.meta.start_pos)
        return after < len(self.comment_starts) and self.comment_starts[after] < node.meta.end_pos

    def needs_separator(self, statement: Tree, following: Tree | None) -> bool:
        """Whether ``statement`` needs a ``;`` to stay apart from the next one on its own line.

        A statement starting with ``(`` or ``[`` would continue the one before as a call or
        an index, and a bare ``return`` takes the expression that follows it.
        """
        if following is None or statement.data in _COMPOUND:
            return False
        if statement.data == "stmt_return" and statement.children[0] is None:
            return following.data in ("stmt_expr", "stmt_assign")
        return following.data == "stmt_expr" and self.text(following.children[0])[0] in "(["

    def simple(self, node: Tree) -> list[_Part]:
        kind, children = node.data, node.children
        if kind == "stmt_let":
            return [f"let {children[0]} = ", *self.expr(children[1])]
        if kind == "stmt_assign":
            name, operator, value = children
            return [f"{name} {operator} ", *self.expr(value)]
        if kind == "stmt_return":
            return ["return"] if children[0] is None else ["return ", *self.expr(children[0])]
        if kind == "stmt_break":
            return ["break"]
        if kind == "stmt_continue":
            return ["continue"]
        if kind == "stmt_fail":
            return ["fail ", *self.expr(children[0])]
        if kind == "stmt_expr":
            return self.expr(children[0])
        if kind == "stmt_assert":
            condition, message = children
            tail = [] if message is None else [", ", *self.expr(message)]
            return ["assert ", *self.expr(condition), *tail]
        _unknown(node)

    def guard(self, guard: Tree | None) -> str:
        return "" if guard is None else f" if {self.text(guard)}"

    def text(self, node: Tree) -> str:
        return _flat(self.expr(node))

    def expr(self, node: Tree, at_least: int = 0) -> list[_Part]:
        """The expression, in parentheses if it binds looser than ``at_least``."""
        parts = self._bare(node)
        return ["(", *parts, ")"] if _level(node) < at_least else parts

    def _bare(self, node: Tree) -> list[_Part]:
        kind, children = node.data, node.children
        if kind == "expr_binop":
            left, operator, right = children
            level = _BINARY[operator.type]
            # Left-associative, but comparisons do not chain: both sides one level tighter.
            tighter = level + 1 if level == _COMPARISON else level
            return [*self.expr(left, tighter), f" {operator} ", *self.expr(right, level + 1)]
        if kind == "expr_not":
            return ["not ", *self.expr(children[0], _NOT)]
        if kind == "expr_just":
            return ["just ", *self.expr(children[0], _PREFIX)]
        if kind == "expr_create":
            name, controller = children
            under = [] if controller is None else [" under ", *self.expr(controller, _POSTFIX)]
            return [f"create {name}", *under]
        if kind == "expr_index":
            return [*self.expr(children[0], _POSTFIX), "[", *self.expr(children[1]), "]"]
        if kind == "expr_slice":
            base, low, high = children
            bounds = [*self._optional(low), ":", *self._optional(high)]
            return [*self.expr(base, _POSTFIX), "[", *bounds, "]"]
        if kind in ("expr_call", "expr_unsafe_call"):
            name, bang, *arguments = children
            prefix = "unsafe " if kind == "expr_unsafe_call" else ""
            return [self._group(node, f"{prefix}{name}{bang or ''}(", arguments, ")")]
        if kind == "expr_list":
            return [self._group(node, "[", children, "]")]
        if kind == "expr_pair":
            return [self._group(node, "(", children, ")", trailing_comma=False)]
        if kind in _ATOMS:
            return [_ATOMS[kind]]
        if kind in _LITERALS:
            return [str(children[0])]  # exactly as written
        _unknown(node)

    def _group(
        self, node: Tree, opening: str, items: list[Tree], closing: str, trailing_comma: bool = True
    ) -> _Group:
        spread = self.has_comment(node) or self._before_end.get(node.meta.end_pos) == "COMMA"
        parts = tuple(tuple(self.expr(item)) for item in items)
        return _Group(opening, parts, closing, trailing_comma, spread)

    def _optional(self, node: Tree | None) -> list[_Part]:
        return [] if node is None else self.expr(node)


def _pattern(node: Tree) -> str:
    kind, children = node.data, node.children
    if kind == "pat_just":
        return f"just {_pattern(children[0])}"
    if kind == "pat_pair":
        return f"({_pattern(children[0])}, {_pattern(children[1])})"
    if kind == "pat_list":
        return "[" + ", ".join(_pattern(child) for child in children) + "]"
    if kind == "pat_rest":
        return f"..{children[0]}"
    if kind in _CONSTANT_PATTERNS:
        return _CONSTANT_PATTERNS[kind]
    if kind in ("pat_name", "pat_nat", "pat_string"):
        return str(children[0])
    _unknown(node)


def _unknown(node: Tree) -> NoReturn:
    raise NotImplementedError(f"avmc fmt has no layout for `{node.data}` yet")


# ---------------------------------------------------------------- weaving the comments in


@dataclass
class _Weaver:
    """Puts each source comment back beside the printed line holding its neighbouring code.

    The printed code's tokens are the source's code tokens minus dropped separators and
    redundant parentheses, in the same order, so matching each printed token to the next
    equal source token tells which printed line holds each source token.
    """

    tokens: list[Token]  # the source's tokens, comments included, without whitespace
    lines: list[_Line]
    tail: list[int] = field(default_factory=list)  # comments after the last code
    _last: tuple[int, int] = (0, 0)  # where the last comment went: (line, slot)

    def render(self) -> str:
        line_of = self._place_code()
        printed = sorted(line_of)
        for index, token in enumerate(self.tokens):
            if token.type in _COMMENTS:
                self._place_comment(index, printed, line_of)
        out: list[str] = []
        opened = True  # no blank line at the top, nor right after an opening brace
        for line in self.lines:
            closing = line.text.startswith(("}", ")", "]"))
            for position, comment in enumerate(line.before):
                blank = (line.item and position == 0) or self._blank(comment)
                self._put(out, line.depth + closing, self._text(comment), blank and not opened)
                opened = False
            code = " ".join([INDENT * line.depth + line.text, *map(self._text, line.after)])
            blank = (line.item and not line.before) or (
                line.blank and not closing and not line.continued
            )
            self._put(out, 0, code, blank and not opened)
            opened = line.text.endswith(("{", "(", "["))
        for comment in self.tail:
            self._put(out, 0, self._text(comment), self._blank(comment) and not opened)
            opened = False
        return "".join(text + "\n" for text in out)

    def _place_code(self) -> dict[int, int]:
        """The printed line holding each source code token that was printed, by index."""
        code = "\n".join(INDENT * line.depth + line.text for line in self.lines)
        line_of: dict[int, int] = {}
        cursor = 0
        printed_tokens = list(lark_parser().lex(code))
        for number, printed in enumerate(printed_tokens):
            # Separators and trailing commas are printed where the layout needs them.
            following = printed_tokens[number + 1].type if number + 1 < len(printed_tokens) else ""
            if printed.type == "SEMICOLON" or (printed.type, following) in _TRAILING_COMMAS:
                continue
            while (self.tokens[cursor].type, self.tokens[cursor].value) != (
                printed.type,
                printed.value,
            ):
                cursor += 1
            line_of[cursor] = printed.line - 1
            if self.lines[printed.line - 1].blank is None:  # the line's first token
                self.lines[printed.line - 1].blank = self._blank(cursor)
            cursor += 1
        return line_of

    def _place_comment(self, index: int, printed: list[int], line_of: dict[int, int]) -> None:
        at = bisect_left(printed, index)
        previous = printed[at - 1] if at > 0 else None
        if previous is not None and self.tokens[previous].end_line == self.tokens[index].line:
            wanted = (line_of[previous], _AFTER)
        elif at < len(printed):
            wanted = (line_of[printed[at]], _BEFORE)
        else:
            wanted = (len(self.lines), _BEFORE)
        # Never ahead of a comment placed earlier, so the comments keep their order.
        line, slot = max(wanted, self._last)
        if slot == _AFTER:
            after = self.lines[line].after
            # Only a one-line block comment can have more comments after it on its line.
            if after and not _one_line_block(self.tokens[after[-1]]):
                line, slot = line + 1, _BEFORE
        self._last = (line, slot)
        if line == len(self.lines):
            self.tail.append(index)
        elif slot == _AFTER:
            self.lines[line].after.append(index)
        else:
            self.lines[line].before.append(index)

    def _blank(self, index: int) -> bool:
        """Whether the source has a blank line between token ``index`` and the one before."""
        return index > 0 and self.tokens[index].line - self.tokens[index - 1].end_line >= 2

    def _text(self, index: int) -> str:
        """A comment with trailing whitespace removed from each of its lines."""
        return "\n".join(part.rstrip() for part in self.tokens[index].value.split("\n"))

    @staticmethod
    def _put(out: list[str], depth: int, text: str, blank: bool) -> None:
        if blank:
            out.append("")
        out.append(INDENT * depth + text)


def _one_line_block(comment: Token) -> bool:
    return comment.type == "BLOCK_COMMENT" and "\n" not in comment.value
