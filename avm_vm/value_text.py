"""Reading values in their canonical text form (spec §2.2): the inverse of ``values.render``.

The command line takes values this way (``avm call NODE obj:5 '["Ping", 0, 3, obj:6]'``):

    value := NAT | true | false | STRING | nothing | just value | obj:NAT | tx:NAT
           | [ ] | [ value {, value} ] | ( value , value )

Whitespace may surround any token. ``render`` writes strings between double quotes without
escaping them, so a string holding ``"`` cannot be read back as rendered; on input, ``\\"``
stands for ``"`` and ``\\\\`` for ``\\`` (no other escapes), which covers every string. The
parser keeps its own stack, so values nested a million deep read fine.
"""

from __future__ import annotations

import re

from avm_vm.values import (
    NAT_MAX,
    NOTHING,
    Just,
    ListView,
    ObjectRef,
    Pair,
    TxRef,
    Value,
    render,
)

_TOKEN = re.compile(
    r"""
      (?P<space>\s+)
    | (?P<ref>(?:obj|tx):)
    | (?P<nat>[0-9]+)
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<quote>")
    | (?P<punct>[\[\](),])
    """,
    re.VERBOSE,
)
_DIGITS = re.compile(r"[0-9]+")
_STRING_BODY = re.compile(r'[^"\\]*')
_WORDS: dict[str, Value] = {"true": True, "false": False, "nothing": NOTHING}


class ValueTextError(ValueError):
    """Text that is no value; the message gives the 1-based column."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"column {offset + 1}: {message}")
        self.column = offset + 1


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def token(self) -> tuple[str, str, int]:
        """The next token as (group, text, offset), past whitespace; ("end", "", n) at the end."""
        while True:
            if self.pos >= len(self.text):
                return "end", "", self.pos
            match = _TOKEN.match(self.text, self.pos)
            if match is None:
                raise ValueTextError(f"unexpected {self.text[self.pos]!r}", self.pos)
            self.pos = match.end()
            if match.lastgroup != "space":
                return match.lastgroup, match.group(), match.start()  # type: ignore[return-value]

    def nat(self, digits: str, offset: int) -> int:
        value = int(digits) if len(digits.lstrip("0")) <= 20 else NAT_MAX + 1
        if value > NAT_MAX:
            raise ValueTextError(f"{digits[:30]} is larger than the largest nat {NAT_MAX}", offset)
        return value

    def string(self, start: int) -> str:
        parts: list[str] = []
        while True:
            match = _STRING_BODY.match(self.text, self.pos)
            parts.append(match.group())  # type: ignore[union-attr]
            self.pos = match.end()  # type: ignore[union-attr]
            if self.pos >= len(self.text):
                raise ValueTextError("string is not closed", start)
            char = self.text[self.pos]
            if char == '"':
                self.pos += 1
                return "".join(parts)
            escaped = self.text[self.pos + 1 : self.pos + 2]
            if escaped not in ('"', "\\"):
                raise ValueTextError(
                    'only \\" and \\\\ may follow a backslash in a string', self.pos
                )
            parts.append(escaped)
            self.pos += 2

    def atom(self, group: str, text: str, offset: int) -> Value:
        if group == "nat":
            return self.nat(text, offset)
        if group == "quote":
            return self.string(offset)
        if group == "ref":
            match = _DIGITS.match(self.text, self.pos)
            if match is None:
                raise ValueTextError(f"expected a number after {text!r}", self.pos)
            self.pos = match.end()
            number = self.nat(match.group(), match.start())
            return ObjectRef(number) if text == "obj:" else TxRef(number)
        if group == "word" and text in _WORDS:
            return _WORDS[text]
        found = "the end of the text" if group == "end" else repr(text)
        raise ValueTextError(f"expected a value, found {found}", offset)

    def parse(self) -> Value:
        # Open containers, innermost last: ("[", items), ("(", items) or ("just", None).
        stack: list[tuple[str, list[Value] | None]] = []
        while True:
            group, text, offset = self.token()
            if text in ("[", "(") or (group == "word" and text == "just"):
                if text == "[" and self._close_empty_list():
                    value: Value = ()
                else:
                    stack.append((text, None if text == "just" else []))
                    continue
            else:
                value = self.atom(group, text, offset)
            # Hand the value to the containers it completes.
            while True:
                if not stack:
                    group, text, offset = self.token()
                    if group != "end":
                        raise ValueTextError(f"unexpected {text!r} after the value", offset)
                    return value
                opener, items = stack[-1]
                if items is None:
                    stack.pop()
                    value = Just(value)
                    continue
                items.append(value)
                group, text, offset = self.token()
                closer = "]" if opener == "[" else ")"
                if text == "," and (opener == "[" or len(items) == 1):
                    break
                if text == closer and (opener == "[" or len(items) == 2):
                    stack.pop()
                    value = tuple(items) if opener == "[" else Pair(items[0], items[1])
                    continue
                expected = "',' or ']'" if opener == "[" else ("','" if len(items) == 1 else "')'")
                found = "the end of the text" if group == "end" else repr(text)
                raise ValueTextError(f"expected {expected}, found {found}", offset)

    def _close_empty_list(self) -> bool:
        """After ``[``: consume ``]`` and say so when the list is empty."""
        saved = self.pos
        if self.token()[1] == "]":
            return True
        self.pos = saved
        return False


def parse_value(text: str) -> Value:
    """The value ``text`` writes in canonical form; ``ValueTextError`` with the column if none."""
    return _Parser(text).parse()


# ---------------------------------------------------------------- elided text for traces

# Text and Mermaid traces show values at a glance; the JSON trace keeps them whole.
ELIDE_WIDTH = 80  # characters of text before the rest of a value becomes `…`
ELIDE_ITEMS = 6  # items of a list shown before `…(+N items)`
ELIDE_CHARS = 48  # characters of a string shown before `…(+N chars)`
_JUST_RUN = 3  # a longer chain of `just`s is written once, with its count


class _Piece:
    """Literal text among the values still to write; ``closer`` survives the cut-off."""

    __slots__ = ("closer", "text")

    def __init__(self, text: str, closer: bool = False) -> None:
        self.text = text
        self.closer = closer


_CLOSE_LIST, _CLOSE_PAIR, _SEPARATOR = _Piece("]", True), _Piece(")", True), _Piece(", ")


def cut_text(text: str, chars: int = ELIDE_CHARS) -> str:
    """``text`` with what lies past ``chars`` characters replaced by ``…(+N chars)``."""
    cut = len(text) - chars
    return text if cut <= 0 else f"{text[:chars]}…(+{cut} chars)"


def elide(
    value: Value, width: int = ELIDE_WIDTH, items: int = ELIDE_ITEMS, chars: int = ELIDE_CHARS
) -> str:
    """``render(value)`` cut to a glance: a string past ``chars`` characters ends in
    ``…(+N chars)``, a list past ``items`` items in ``…(+N items)``, a chain of more than
    three ``just``s is written once with its count, and past ``width`` characters of text
    the rest becomes ``…`` (brackets still close). Short values read exactly as ``render``
    writes them. The work is bounded by the limits (a chain of ``just``s is walked once to
    count it), whatever the value's size."""
    out: list[str] = []
    size = 0
    stack: list[object] = [value]
    while stack:
        item = stack.pop()
        if type(item) is _Piece:
            text = item.text
        elif size > width:
            # Out of room: one `…` for everything left, then only the closing brackets.
            out.append("…")
            out.extend(p.text for p in reversed(stack) if type(p) is _Piece and p.closer)
            break
        elif type(item) is str:
            text = f'"{cut_text(item, chars)}"'
        elif type(item) is tuple or type(item) is ListView or type(item) is Pair:
            if type(item) is not Pair:
                parts: list[object] = list(item[:items])
                if len(item) > items:
                    parts.append(_Piece(f"…(+{len(item) - items} items)"))
                text, closer = ("[", _CLOSE_LIST) if parts else ("[]", None)
            else:
                parts, text, closer = [item.first, item.second], "(", _CLOSE_PAIR  # type: ignore[union-attr]
            if closer is not None:
                stack.append(closer)
            for index in range(len(parts) - 1, -1, -1):
                stack.append(parts[index])
                if index:
                    stack.append(_SEPARATOR)
        elif type(item) is Just:
            count, inner = 0, item
            while type(inner) is Just:
                count, inner = count + 1, inner.value
            stack.append(inner)
            text = "just " * count if count <= _JUST_RUN else f"just\u00d7{count} "
        else:
            text = render(item)  # type: ignore[arg-type]
        out.append(text)
        size += len(text)
    return "".join(out)
