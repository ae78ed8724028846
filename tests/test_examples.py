"""Every example compiles, survives a bytecode round trip, and prints exactly NAME.expected.

The expected outputs were checked by hand against the spec (PingPong: §14.1; Battleship:
§14.3) and against each example's own comment.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from avm_vm import cli as avm_cli
from avm_vm.format.bytecode import decode, encode
from avmc import cli as avmc_cli
from avmc.compiler import compile_path

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("*.avm"))


def test_examples_exist() -> None:
    names = {path.stem for path in EXAMPLES}
    assert {"pingpong", "battleship", "counter", "bank", "escrow", "purelib"} <= names


@pytest.mark.parametrize("source", EXAMPLES, ids=lambda p: p.stem)
def test_example_round_trips_through_bytecode(source: Path) -> None:
    program = compile_path(source)
    data = encode(program)
    assert encode(decode(data, source.name)) == data
    assert decode(data).functions == program.functions


@pytest.mark.parametrize("source", EXAMPLES, ids=lambda p: p.stem)
def test_example_output(source: Path, tmp_path: Path) -> None:
    tape = tmp_path / (source.stem + ".tape")
    runner = CliRunner()
    compiled = runner.invoke(avmc_cli.main, ["compile", str(source), "-o", str(tape)])
    assert compiled.exit_code == 0, compiled.output
    ran = runner.invoke(avm_cli.main, ["run", str(tape)])
    assert ran.exit_code == 0, ran.output
    assert ran.stdout == source.with_suffix(".expected").read_text(encoding="utf-8")


@pytest.mark.parametrize("source", EXAMPLES, ids=lambda p: p.stem)
def test_example_disassembles_with_source_lines(source: Path, tmp_path: Path) -> None:
    tape = tmp_path / (source.stem + ".tape")
    runner = CliRunner()
    assert runner.invoke(avmc_cli.main, ["compile", str(source), "-o", str(tape)]).exit_code == 0
    listing = runner.invoke(avmc_cli.main, ["disasm", str(tape)])
    assert listing.exit_code == 0, listing.output
    # Every `return` line compiles to a RET, so its source text must appear in the listing.
    return_lines = [
        line.strip()
        for line in source.read_text().splitlines()
        if line.strip().startswith("return ")
    ]
    assert return_lines
    assert all(line in listing.stdout for line in return_lines)
