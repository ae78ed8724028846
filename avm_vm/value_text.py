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

from avm_vm.values import NAT_MAX, NOTHING, Just, ObjectRef, Pair, TxRef, Value

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
