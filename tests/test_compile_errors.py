"""Golden tests: each tests/compile_errors/NAME.avm renders exactly NAME.err.

The front end (read_source -> parse -> check) runs on the file's bytes and every diagnostic
is rendered with its caret lines. An empty .err means the file is valid. To rewrite the
.err files after a deliberate change, run with AVMC_REGEN=1 and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from avm_vm.diagnostics import DiagnosticError
from avmc.checks import check
from avmc.parser import parse
from avmc.source import display_text, read_source

CORPUS = Path(__file__).parent / "compile_errors"
CASES = sorted(path.stem for path in CORPUS.glob("*.avm"))


def render_front_end(data: bytes, filename: str) -> str:
    """Every diagnostic of the front end for ``data``, rendered, one per block."""
    try:
        diagnostics = check(parse(read_source(data, filename), filename))
    except DiagnosticError as exc:
        diagnostics = exc.diagnostics
    shown = display_text(data)
    return "".join(d.render(shown) + "\n" for d in diagnostics)


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 45
    assert {path.stem for path in CORPUS.glob("*.err")} == set(CASES)


@pytest.mark.parametrize("name", CASES)
def test_golden(name: str) -> None:
    filename = f"{name}.avm"
    actual = render_front_end((CORPUS / filename).read_bytes(), filename)
    expected_path = CORPUS / f"{name}.err"
    if os.environ.get("AVMC_REGEN") == "1":
        expected_path.write_text(actual, encoding="utf-8")
    assert actual == expected_path.read_text(encoding="utf-8")
