"""Fuzzing the compiler: any input either compiles to bytecode or is a DiagnosticError.

Random bytes exercise read_source; token soups drawn from the grammar's own vocabulary reach
deep into the parser and, when they happen to parse, the checker and the later stages.
Rendering the diagnostics must work too. Any other exception (a traceback for the user)
fails the test.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from avm_vm.diagnostics import DiagnosticError
from avmc.compiler import build
from avmc.parser import lark_parser
from avmc.source import display_text, read_source

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Keywords and punctuation straight from the grammar, so the soup follows it when it changes.
GRAMMAR_WORDS = sorted(
    terminal.pattern.value for terminal in lark_parser().terminals if terminal.pattern.type == "str"
)
OTHER_WORDS = [
    "x",
    "_",
    "len",
    "call",
    "call_pure",
    "scry_meta",
    "reflect",
    "begin",
    "B",
    "f",
    "0",
    "42",
    "0x2A",
    "1_000",
    "18446744073709551616",
    "12ab",
    '"s"',
    '"\\n\\u{41}"',
    '"\\q"',
    '"open',
    "obj:1",
    "tx:2",
    "//c\n",
    "/* c */",
    "/*",
    "$",
    "é",
    "\t",
    "\n",
]
TOKENS = st.sampled_from(GRAMMAR_WORDS + OTHER_WORDS)
SEPARATORS = st.sampled_from([" ", "\n", ""])


def front_end(data: bytes) -> None:
    """The whole compiler, as avmc runs it: read, parse, check, lower, optimise, assemble,
    encode; then render what it reported."""
    try:
        source = read_source(data, "fuzz.avm")
        diagnostics = build(source, "fuzz.avm").warnings
    except DiagnosticError as exc:
        diagnostics = exc.diagnostics
        assert diagnostics
    shown = display_text(data)
    for diagnostic in diagnostics:
        assert diagnostic.span is not None
        diagnostic.render(shown)


@st.composite
def token_soup(draw: st.DrawFn) -> str:
    tokens = draw(st.lists(TOKENS, max_size=40))
    text = "".join(token + draw(SEPARATORS) for token in tokens)
    # Half of the soups sit inside an item, to reach statements and expressions.
    wrapper = draw(
        st.sampled_from(["{}", "main {{ {} }}", "behavior B {{ on {} }}", "fn f(a) {{ {} }}"])
    )
    return wrapper.format(text)


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes(data: bytes) -> None:
    front_end(data)


@FUZZ
@given(token_soup())
def test_token_soups(source: str) -> None:
    front_end(source.encode("utf-8"))


@FUZZ
@given(st.text(max_size=120))
def test_random_text(source: str) -> None:
    front_end(source.encode("utf-8", errors="surrogatepass"))
