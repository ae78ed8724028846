"""Every AVM program the repository holds, for properties that must hold on all of them.

The examples, every .avm file under tests/ that parses (the bad-program corpus's valid
neighbours and the files whose errors come after parsing), and every string constant in the
test files that parses as a program.
"""

from __future__ import annotations

import ast as python_ast
from functools import cache
from pathlib import Path

from avm_vm.diagnostics import DiagnosticError
from avmc.parser import parse
from avmc.source import read_source

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.avm"))


@cache
def programs() -> dict[str, str]:
    """Every program of the repository that parses, by where it was found."""
    found: dict[str, str] = {}
    for path in [*EXAMPLES, *sorted((ROOT / "tests").rglob("*.avm"))]:
        try:
            found[str(path.relative_to(ROOT))] = read_source(path.read_bytes(), path.name)
        except DiagnosticError:
            continue
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for node in python_ast.walk(python_ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, python_ast.Constant) and isinstance(node.value, str):
                found[f"{path.relative_to(ROOT)}:{node.lineno}"] = node.value
    parsed = {}
    for name, source in found.items():
        try:
            parse(source, name)
        except DiagnosticError:
            continue
        parsed[name] = source
    return parsed
