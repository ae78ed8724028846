"""CFG rendering: one Mermaid flowchart or Graphviz graph per file (a subgraph per function),
with escaping, source lines and variable names."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from avm_vm.format.instructions import BY_NAME
from avm_vm.format.opcodes import Op
from avm_vm.format.program import FunctionKind
from avmc.cfg import render_dot, render_mermaid
from avmc.cli import main as avmc_main
from avmc.compiler import build_path
from avmc.ir import BasicBlock, IrFunction, IrInstr
from avmc.lower import lower
from avmc.parser import parse
from avmc.passes import optimize


def I(op: Op, *operands: object) -> IrInstr:  # noqa: E743
    return IrInstr(op, tuple(operands))


BRANCH = IrFunction(
    "f",
    FunctionKind.PURE,
    1,
    [
        BasicBlock(0, [I(Op.JMPT, 0, 1), I(Op.JMP, 2)]),
        BasicBlock(1, [I(Op.LOADK, 1, 1), I(Op.RET, 1)]),
        BasicBlock(2, [I(Op.LOADK, 2, 'say "hi" # <b>|\n'), I(Op.FAIL, 2)]),
    ],
)


def test_mermaid_shape() -> None:
    text = render_mermaid([BRANCH])
    lines = text.splitlines()
    assert lines[1] == "flowchart TD"
    assert lines[2:5] == [
        '    subgraph f0["fn f(r0)"]',
        "    direction TB",
        '    f0_L0["if r0 = true"]',
    ]
    assert "    f0_L0 -->|r0 = true| f0_L1" in lines
    assert "    f0_L0 -->|r0 ≠ true| f0_L2" in lines
    assert '    f0_L1["r1 = 1<br>return r1"]' in lines
    assert "    f0_L1 -->|return r1| f0_END([End])" in lines
    assert "    f0_L2 --> f0_END([End])" in lines
    assert lines[-1] == "    end"
    assert all(line.startswith("    ") for line in lines[2:])


def test_mermaid_escapes_string_constants() -> None:
    text = render_mermaid([BRANCH])
    node = next(line for line in text.splitlines() if line.startswith('    f0_L2["'))
    label = node[len('    f0_L2["') : -len('"]')].replace("<br>", "\n")
    assert '"' not in label and "<" not in label and "|" not in label
    assert "#quot;say #quot;hi#quot;" in label
    assert "\n" not in node
    # after the entity codes are decoded, the text is the constant's canonical form
    decoded = re.sub(r"#(\d+);", lambda m: chr(int(m.group(1))), label.replace("#quot;", '"'))
    assert decoded.startswith('r2 = "say "hi" # <b>|\\n"')


def test_mermaid_dashed_edge_to_a_handler() -> None:
    source = 'main { atomic { fail "x" } else (e) { return e } }'
    main = optimize(lower(parse(source, "t.avm"), "t.avm")).function("main")
    text = render_mermaid([main])
    try_ = next(i for b in main.blocks for i in b.instrs if i.op is Op.TRY)
    assert f"-.->|on failure| f0_L{try_.operands[1]}" in text
    assert "begin_tx(" in text and "try, error to r0" in text
    assert len(re.findall(r'^    f0_L\d+\["', text, re.MULTILINE)) == len(main.blocks)


def test_effects_use_the_spec_names() -> None:
    function = IrFunction(
        "m",
        FunctionKind.MAIN,
        0,
        [BasicBlock(0, [I(Op.EFFECT, 0, BY_NAME["self"].number, ()), I(Op.RET, 0)])],
    )
    assert '["r0 = get_self()<br>return r0"]' in render_mermaid([function])


def test_dot_shape_and_escaping() -> None:
    text = render_dot([BRANCH])
    lines = text.splitlines()
    assert lines[0] == "digraph cfg {" and lines[-1] == "}"
    assert '        label="fn f(r0)";' in lines
    assert '        f0_L0 -> f0_L1 [label="r0 = true"];' in lines
    assert '        f0_L0 -> f0_L2 [label="r0 ≠ true"];' in lines
    assert '        f0_L1 -> f0_END [label="return r1"];' in lines
    assert "        f0_L2 -> f0_END;" in lines
    node = next(line for line in lines if line.startswith("        f0_L2 [label="))
    body = node[len('        f0_L2 [label="') : -len('"];')]
    assert re.search(r'(?<!\\)"', body) is None  # every quote inside the label is escaped
    assert '\\"say \\"hi\\"' in body and "\\\\n" in body
    assert text.count('[label="L') == 3


BANK = Path(__file__).parents[1] / "examples" / "bank.avm"


def _line_of(start: str) -> int:
    """The line of bank.avm that starts (after indentation) with ``start``."""
    lines = BANK.read_text().splitlines()
    return next(n for n, line in enumerate(lines, 1) if line.strip().startswith(start))


def _bank_cfg(*options: str) -> str:
    result = CliRunner().invoke(avmc_main, ["cfg", str(BANK), *options])
    assert result.exit_code == 0, result.output
    return result.output


def test_one_mermaid_document_for_a_whole_file() -> None:
    """A subgraph per function, each closed; node names never collide across functions."""
    functions = build_path(BANK).ir.functions
    lines = _bank_cfg().splitlines()
    assert lines.count("flowchart TD") == 1
    subgraphs = [line for line in lines if line.startswith("    subgraph ")]
    assert len(subgraphs) == len(functions) == lines.count("    end")
    assert '    subgraph f0["behavior Account(message: r0)"]' in subgraphs
    assert '    subgraph f2["main"]' in subgraphs
    nodes = re.findall(r"^    (f\d+_L\d+)\[", "\n".join(lines), re.MULTILINE)
    assert len(nodes) == len(set(nodes)) == sum(len(f.blocks) for f in functions)


def test_blocks_show_source_lines_and_variable_names() -> None:
    text = _bank_cfg("--function", "Account")
    assert text.count("subgraph") == 1
    # The withdraw clause: its source lines, the bound `amount`, and `balance -= amount`.
    guard = _line_of("if amount > balance")
    assert (
        f"<i>{guard}: if amount #62; balance {{ fail #quot;insufficient funds#quot; }}</i>" in text
    )
    assert re.search(r"r\d+ \(amount\) = index r0 r\d+", text)
    assert re.search(r"r\d+ \(balance\) = sub r\d+ r\d+", text)
    # The block after the guard reads `amount`, bound in an earlier block.
    assert re.search(r'\["vars: amount = r\d+<br><i>\d+: balance -= amount</i>', text)
    # The state plumbing of a field update is not the field's value.
    assert not re.search(r"\(balance\) = (get_state|set_state|setfield)", text)
    main = _bank_cfg("--function", "main")
    assert f"<i>{_line_of('let alice')}: let alice = create Account</i>" in main
    assert re.search(r"r\d+ \(alice\) = create_obj\(", main)
    assert not re.search(r"\(alice\) = #quot;Account#quot;", main)  # only the last op of it


def test_one_dot_graph_for_a_whole_file() -> None:
    functions = build_path(BANK).ir.functions
    text = _bank_cfg("--format", "dot")
    assert text.startswith("digraph cfg {") and text.count("digraph") == 1
    assert text.count("subgraph cluster_") == len(functions)
    assert '        label="behavior Bank(message: r0)";' in text
    assert "    try, error to r" in text and "(reason)" in text
    assert f"\\l{_line_of('atomic')}: atomic {{\\l" in text


def test_function_option_gives_one_function_or_names_them_all() -> None:
    assert _bank_cfg("--function", "Bank", "--format", "dot").count("subgraph cluster_") == 1
    result = CliRunner().invoke(avmc_main, ["cfg", str(BANK), "--function", "nope"])
    assert result.exit_code == 2 and "have: Account, Bank, main" in result.output


def test_parameters_are_named_in_the_title(tmp_path: Path) -> None:
    source = tmp_path / "f.avm"
    source.write_text("fn add(a, b) { return a + b }\nmain { return add(1, 2) }\n")
    result = CliRunner().invoke(avmc_main, ["cfg", str(source), "--function", "add"])
    assert '["fn add(a: r0, b: r1)"]' in result.output


def test_names_flow_into_loops_and_after_them(tmp_path: Path) -> None:
    """Where every path into a block agrees, its reads are named: the loop's header reads
    `i` (set before the loop and in its body) and the parameter `n`."""
    source = tmp_path / "loop.avm"
    source.write_text(
        "fn count(n) {\n  let i = 0\n  while i < n {\n    i += 1\n  }\n  return i\n}\n"
        "main { return count(3) }\n"
    )
    result = CliRunner().invoke(avmc_main, ["cfg", str(source), "--function", "count"])
    text = result.output
    header = re.search(r'\["vars: i = r(\d+), n = r(\d+)<br><i>3: while i #60; n', text)
    assert header is not None and header.group(2) == "0"
    assert re.search(rf"r{header.group(1)} \(i\) = add r{header.group(1)} r\d+", text)
    assert re.search(r'\["vars: i = r\d+<br><i>6: return i</i>', text)
