"""The wheel ships every package of the source tree, and the grammar with it."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_python_package_is_listed() -> None:
    tree = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for top in ("avmc", "avm_vm")
        for path in (ROOT / top).rglob("__init__.py")
    }
    listed = set(_config()["packages"])
    assert tree <= listed, f"missing from pyproject packages: {sorted(tree - listed)}"


def test_grammar_is_packaged() -> None:
    config = _config()
    assert config["package-dir"]["avmc.grammar"] == "grammar"
    assert "avmc.grammar" in config["packages"]
    assert (ROOT / "grammar" / "avm.lark").is_file()
