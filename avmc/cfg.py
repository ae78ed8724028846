"""Control-flow graphs of IR functions as Mermaid (spec §12.7's shape) or Graphviz dot.

One node per block, labelled with one line per op; edges for jumps (labelled with the branch
condition), a dashed edge from a TRY to its handler, and edges from RET and FAIL to an END
node. Unlike the reference, text from string constants is escaped, so any program renders
to a valid graph.
"""

from __future__ import annotations

from avm_vm.format.instructions import INSTRUCTIONS
from avm_vm.format.opcodes import Op
from avm_vm.values import render
from avmc.ir import BasicBlock, IrFunction, IrInstr, format_instr

END = "END"

# Control characters become visible escapes first, so no label ever spans two lines.
_VISIBLE = {code: f"\\u{{{code:x}}}" for code in range(32)} | {
    ord("\n"): "\\n",
    ord("\t"): "\\t",
    ord("\r"): "\\r",
    ord("\0"): "\\0",
}
# Mermaid reads `#name;` / `#code;` entities inside labels.
_MERMAID = {ord(c): f"#{ord(c)};" for c in "#\\<>|`"} | {ord('"'): "#quot;"}
_DOT = {ord("\\"): "\\\\", ord('"'): '\\"'}


def op_text(instr: IrInstr) -> str:
    """One op as a line of a block's label."""
    ops = instr.operands
    if instr.op is Op.LOADK:
        return f"r{ops[0]} = {render(ops[1])}"
    if instr.op is Op.MOVE:
        return f"r{ops[0]} = r{ops[1]}"
    if instr.op is Op.EFFECT:
        args = ", ".join(f"r{reg}" for reg in ops[2])
        return f"r{ops[0]} = {INSTRUCTIONS[ops[1]].cfg_name}({args})"
    if instr.op in (Op.JMPT, Op.JMPF):
        return f"if r{ops[0]} = {'true' if instr.op is Op.JMPT else 'false'}"
    if instr.op is Op.JMP:
        return "jump"
    if instr.op is Op.RET:
        return f"return r{ops[0]}"
    if instr.op is Op.TRY:
        return f"try r{ops[0]}"
    return format_instr(instr)


def edges(block: BasicBlock) -> list[tuple[str, str, bool]]:
    """(target node, label, dashed) for each edge out of ``block``."""
    result = []
    condition = None
    for instr in block.instrs:
        ops = instr.operands
        if instr.op is Op.TRY:
            result.append((f"L{ops[1]}", "on failure", True))
        elif instr.op in (Op.JMPT, Op.JMPF):
            condition = f"r{ops[0]} = {'true' if instr.op is Op.JMPT else 'false'}"
            result.append((f"L{ops[1]}", condition, False))
        elif instr.op is Op.JMP:
            label = "" if condition is None else condition.replace(" = ", " ≠ ")
            result.append((f"L{ops[0]}", label, False))
        elif instr.op is Op.RET:
            result.append((END, f"return r{ops[0]}", False))
        elif instr.op is Op.FAIL:
            result.append((END, "", False))
    return result


def _visible(text: str) -> str:
    return text.translate(_VISIBLE)


def _mermaid(text: str) -> str:
    return _visible(text).translate(_MERMAID)


def _dot(text: str) -> str:
    return _visible(text).translate(_DOT)


def _shown(block: BasicBlock) -> list[str]:
    """The label lines of a block: the JMP ending a branch is the branch's second edge."""
    instrs = block.instrs
    if len(instrs) > 1 and instrs[-1].op is Op.JMP and instrs[-2].op in (Op.JMPT, Op.JMPF):
        instrs = instrs[:-1]
    return [op_text(instr) for instr in instrs]


def render_mermaid(function: IrFunction) -> str:
    lines = ["graph TD"]
    for block in function.blocks:
        node = f"L{block.label}"
        text = "\\n".join(_mermaid(line) for line in _shown(block)) or "(empty)"
        lines.append(f'    {node}["{text}"]')
        for target, label, dashed in edges(block):
            arrow = "-.->" if dashed else "-->"
            if label:
                arrow += f"|{_mermaid(label)}|"
            lines.append(f"    {node} {arrow} {'END([End])' if target == END else target}")
    return "\n".join(lines) + "\n"


def render_dot(function: IrFunction) -> str:
    lines = [
        f'digraph "{_dot(function.name)}" {{',
        '    node [shape=box, fontname="monospace"];',
        f'    {END} [shape=oval, label="End"];',
    ]
    for block in function.blocks:
        node = f"L{block.label}"
        text = "".join(_dot(line) + "\\l" for line in _shown(block)) or "(empty)"
        lines.append(f'    {node} [label="{node}:\\l{text}"];')
        for target, label, dashed in edges(block):
            attributes = [f'label="{_dot(label)}"'] if label else []
            if dashed:
                attributes.append("style=dashed")
            suffix = f" [{', '.join(attributes)}]" if attributes else ""
            lines.append(f"    {node} -> {target}{suffix};")
    lines.append("}")
    return "\n".join(lines) + "\n"
