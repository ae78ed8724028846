"""Write editors/vscode/syntaxes/avm.tmLanguage.json from avmc/highlight.py.

Run from the repository root after changing the grammar's words or the highlighter:
    python tools/gen_textmate.py
tests/test_highlight.py fails while the file differs from what this writes.
"""

from __future__ import annotations

import json
from pathlib import Path

from avmc.highlight import textmate_grammar

TARGET = Path(__file__).resolve().parents[1] / "editors" / "vscode" / "syntaxes"


def render() -> str:
    """The file's text: the grammar as indented JSON."""
    return json.dumps(textmate_grammar(), indent=2) + "\n"


if __name__ == "__main__":
    path = TARGET / "avm.tmLanguage.json"
    path.write_text(render(), encoding="utf-8")
    print(f"wrote {path}")
