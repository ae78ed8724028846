"""CFG rendering: the Mermaid shape of spec §12.7 (with escaping) and Graphviz dot."""

from __future__ import annotations

import re

from avm_vm.format.instructions import BY_NAME
from avm_vm.format.opcodes import Op
from avm_vm.format.program import FunctionKind
from avmc.cfg import render_dot, render_mermaid
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
    text = render_mermaid(BRANCH)
    lines = text.splitlines()
    assert lines[0] == "graph TD"
    assert lines[1] == '    L0["if r0 = true"]'
    assert "    L0 -->|r0 = true| L1" in lines
    assert "    L0 -->|r0 ≠ true| L2" in lines
    assert '    L1["r1 = 1\\nreturn r1"]' in lines
    assert "    L1 -->|return r1| END([End])" in lines
    assert "    L2 --> END([End])" in lines
    assert all(line.startswith("    ") for line in lines[1:])


def test_mermaid_escapes_string_constants() -> None:
    text = render_mermaid(BRANCH)
    node = next(line for line in text.splitlines() if line.startswith('    L2["'))
    label = node[len('    L2["') : -len('"]')]
    assert '"' not in label and "<" not in label and "|" not in label
    assert "#quot;say #quot;hi#quot;" in label
    assert "\n" not in node
    # after the entity codes are decoded, the text is the constant's canonical form
    decoded = re.sub(r"#(\d+);", lambda m: chr(int(m.group(1))), label.replace("#quot;", '"'))
    assert decoded.startswith('r2 = "say "hi" # <b>|\\n"')


def test_mermaid_dashed_edge_to_a_handler() -> None:
    source = 'main { atomic { fail "x" } else (e) { return e } }'
    main = optimize(lower(parse(source, "t.avm"), "t.avm")).function("main")
    text = render_mermaid(main)
    try_ = next(i for b in main.blocks for i in b.instrs if i.op is Op.TRY)
    assert f"-.->|on failure| L{try_.operands[1]}" in text
    assert "begin_tx(" in text and "abort_tx(" in text
    assert text.count('["') == len(main.blocks)


def test_effects_use_the_spec_names() -> None:
    function = IrFunction(
        "m",
        FunctionKind.MAIN,
        0,
        [BasicBlock(0, [I(Op.EFFECT, 0, BY_NAME["self"].number, ()), I(Op.RET, 0)])],
    )
    assert '["r0 = get_self()\\nreturn r0"]' in render_mermaid(function)


def test_dot_shape_and_escaping() -> None:
    text = render_dot(BRANCH)
    lines = text.splitlines()
    assert lines[0] == 'digraph "f" {' and lines[-1] == "}"
    assert '    L0 -> L1 [label="r0 = true"];' in lines
    assert '    L0 -> L2 [label="r0 ≠ true"];' in lines
    assert '    L1 -> END [label="return r1"];' in lines
    assert "    L2 -> END;" in lines
    node = next(line for line in lines if line.startswith("    L2 [label="))
    body = node[len('    L2 [label="') : -len('"];')]
    assert re.search(r'(?<!\\)"', body) is None  # every quote inside the label is escaped
    assert '\\"say \\"hi\\"' in body and "\\\\n" in body
    assert text.count('[label="L') == 3
