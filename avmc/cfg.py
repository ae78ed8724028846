"""Control-flow graphs of a program's functions as one Mermaid flowchart or Graphviz graph.

One subgraph (dot: cluster) per function, one node per block, labelled with one line per
op; edges for jumps (labelled with the branch condition), a dashed edge from a TRY to its
handler, and edges from RET and FAIL to the function's End node. With the source
(`DebugInfo`), a block shows the source lines its ops come from, and registers that hold a
named variable, parameter or pattern binding are named where they are written (the
compiler keeps each op's source span, so names come from the binding sites' spans) and,
in a `vars:` line, where a block reads them (`known_names`: a forward pass over the
blocks keeping the names every path into a block agrees on). Text
from string constants is escaped (and long constants elided), so any program renders to a
valid graph.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from avm_vm.diagnostics import Span
from avm_vm.format.instructions import INSTRUCTIONS
from avm_vm.format.opcodes import Op
from avm_vm.format.program import FunctionKind
from avm_vm.value_text import cut_text, elide
from avmc import ast
from avmc.ir import BasicBlock, IrFunction, IrInstr, format_instr

END = "END"
SOURCE_WIDTH = 60  # characters of a source line (or string constant) shown in a block

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
_BINDING_OPS = (Op.MOVE, Op.INDEX, Op.FST, Op.SND, Op.UNWRAP)  # ops that bind a pattern name
_STATE_ACCESS = frozenset({"get_state", "set_state"})
_KIND = {FunctionKind.PURE: "fn", FunctionKind.BEHAVIOR: "behavior", FunctionKind.MAIN: ""}


@dataclass
class DebugInfo:
    """What the source tells about the IR: its lines, and the names bound at each span."""

    lines: list[str]
    # (span, op) of the op that writes a binding (op None: any op at that span) -> name
    names: dict[tuple[Span, Op | None], str] = field(default_factory=dict)
    params: dict[str, tuple[str, ...]] = field(default_factory=dict)  # function -> names

    def name(self, instr: IrInstr) -> str | None:
        if instr.span is None:
            return None
        return self.names.get((instr.span, instr.op)) or self.names.get((instr.span, None))

    def source_line(self, line: int) -> str:
        text = self.lines[line - 1].strip() if 0 < line <= len(self.lines) else ""
        return f"{line}: {cut_text(text, SOURCE_WIDTH)}"


def debug_info(source: str, module: ast.Module) -> DebugInfo:
    """The binding sites of ``module`` (parsed from ``source``), found without recursion."""
    info = DebugInfo(source.splitlines())
    names = info.names
    stack: list[object] = [module]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not dataclasses.is_dataclass(node):
            continue
        if isinstance(node, ast.Let):
            names[(node.value.span, None)] = node.name
        elif isinstance(node, ast.Assign):
            names[(node.span if node.op else node.value.span, None)] = node.name
        elif isinstance(node, ast.PBind):  # the part taken, or a copy of the whole subject
            for op in _BINDING_OPS:
                names[(node.span, op)] = node.name
        elif isinstance(node, ast.PList) and node.rest not in (None, "_"):
            names[(node.span, Op.DROP)] = node.rest  # type: ignore[assignment]
        elif isinstance(node, ast.For):
            names[(node.span, Op.INDEX)] = node.var
        elif isinstance(node, ast.Atomic) and node.error_name is not None:
            names[(node.span, Op.TRY)] = node.error_name
        elif isinstance(node, ast.FunctionDef):
            info.params[node.name] = tuple(param.name for param in node.params)
        elif isinstance(node, ast.BehaviorDef):
            info.params[node.name] = ("message",)
        stack.extend(getattr(node, f.name) for f in dataclasses.fields(node) if f.name != "span")
    return info


def op_text(instr: IrInstr, name: str | None = None) -> str:
    """One op as a line of a block's label; ``name``: the variable its register holds."""
    ops = instr.operands
    target = "" if not ops else f"r{ops[0]}" if name is None else f"r{ops[0]} ({name})"
    if instr.op is Op.LOADK:
        return f"{target} = {elide(ops[1], chars=SOURCE_WIDTH)}"
    if instr.op is Op.MOVE:
        return f"{target} = r{ops[1]}"
    if instr.op is Op.EFFECT:
        args = ", ".join(f"r{reg}" for reg in ops[2])
        return f"{target} = {INSTRUCTIONS[ops[1]].cfg_name}({args})"
    if instr.op in (Op.JMPT, Op.JMPF):
        return f"if r{ops[0]} = {'true' if instr.op is Op.JMPT else 'false'}"
    if instr.op is Op.JMP:
        return "jump"
    if instr.op is Op.RET:
        return f"return r{ops[0]}"
    if instr.op is Op.TRY:
        return f"try, error to {target}"
    text = format_instr(instr)
    if name is not None and instr.dst is not None:
        text = text.replace(f"r{instr.dst} = ", f"{target} = ", 1)
    return text


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


def _shown(
    block: BasicBlock, debug: DebugInfo | None, known: dict[int, str]
) -> list[tuple[bool, str]]:
    """The label lines of a block as (is source, text): the named variables it reads (from
    ``known``, the names its registers hold on entry), then each op, preceded by its source
    line whenever that changes. The JMP ending a branch is the branch's second edge."""
    instrs = block.instrs
    if len(instrs) > 1 and instrs[-1].op is Op.JMP and instrs[-2].op in (Op.JMPT, Op.JMPF):
        instrs = instrs[:-1]
    if debug is None:
        return [(False, op_text(instr)) for instr in instrs]
    defined = _defined_names(block, debug)
    lines: list[tuple[bool, str]] = []
    reads: dict[int, str] = {}
    written: set[int] = set()
    for instr in instrs:
        reads.update((r, known[r]) for r in instr.uses() if r in known and r not in written)
        reg = _written(instr)
        if reg is not None:
            written.add(reg)
    if reads:
        lines.append(
            (False, "vars: " + ", ".join(f"{name} = r{reg}" for reg, name in reads.items()))
        )
    line = 0
    for index, instr in enumerate(instrs):
        if instr.span is not None and instr.span.line not in (0, line):
            line = instr.span.line
            lines.append((True, debug.source_line(line)))
        lines.append((False, op_text(instr, defined.get(index))))
    return lines


def _defined_names(block: BasicBlock, debug: DebugInfo) -> dict[int, str]:
    """Position in the block of each op that writes a named variable -> the name. Ops of
    one expression share its span: the last one writes the value the name holds."""
    last: dict[Span, int] = {}
    for index, instr in enumerate(block.instrs):
        if instr.span is not None and not _plumbing(instr) and debug.name(instr) is not None:
            last[instr.span] = index
    return {index: debug.name(block.instrs[index]) for index in last.values()}  # type: ignore[misc]


def _written(instr: IrInstr) -> int | None:
    """The register an op writes; a TRY's error register counts as written at the TRY."""
    return instr.operands[0] if instr.op is Op.TRY else instr.dst


def known_names(function: IrFunction, debug: DebugInfo) -> dict[int, dict[int, str]]:
    """Per block label, the names its registers hold on entry (register -> name): where
    every path into the block agrees. Parameters hold their names on entry to the function;
    an op naming a variable gives its register that name, a copy passes the name on, any
    other write forgets it."""
    blocks = {block.label: block for block in function.blocks}
    defined = {block.label: _defined_names(block, debug) for block in function.blocks}
    entry = function.blocks[0].label
    params = debug.params.get(function.name, ())
    into: dict[int, dict[int, str]] = {entry: dict(enumerate(params))}
    pending = [entry]
    while pending:
        label = pending.pop()
        state = dict(into[label])
        for index, instr in enumerate(blocks[label].instrs):
            reg = _written(instr)
            if reg is None:
                continue
            name = defined[label].get(index)
            if name is None and instr.op is Op.MOVE:
                name = state.get(instr.operands[1])
            if name is None:
                state.pop(reg, None)
            else:
                state[reg] = name
        for successor in blocks[label].successors():
            old = into.get(successor)
            new = state if old is None else {r: n for r, n in old.items() if state.get(r) == n}
            if new != old:
                into[successor] = dict(new)
                pending.append(successor)
    return into


def _plumbing(instr: IrInstr) -> bool:
    """Reading or writing the whole state: part of a field update, never the field's value."""
    if instr.op is Op.SETFIELD:
        return True
    return instr.op is Op.EFFECT and INSTRUCTIONS[instr.operands[1]].name in _STATE_ACCESS


def title(function: IrFunction, debug: DebugInfo | None) -> str:
    """``fn fib(n: r0)``, ``behavior Bank(message: r0)`` or ``main``."""
    names = debug.params.get(function.name) if debug is not None else None
    if names is None:
        names = tuple(f"r{index}" for index in range(function.nparams))
    else:
        names = tuple(f"{name}: r{index}" for index, name in enumerate(names))
    kind = _KIND[function.kind]
    params = f"({', '.join(names)})" if function.kind is not FunctionKind.MAIN else ""
    return f"{kind} {function.name}{params}".strip()


def render_mermaid(functions: Sequence[IrFunction], debug: DebugInfo | None = None) -> str:
    """One flowchart: a subgraph per function, its nodes named ``f<index>_L<label>``."""
    # Wide enough that an op or a source line stays on one line of its node.
    lines = ['%%{init: {"flowchart": {"wrappingWidth": 640}}}%%', "flowchart TD"]
    for index, function in enumerate(functions):
        prefix = f"f{index}_"
        lines.append(f'    subgraph f{index}["{_mermaid(title(function, debug))}"]')
        lines.append("    direction TB")
        known = {} if debug is None else known_names(function, debug)
        for block in function.blocks:
            node = f"{prefix}L{block.label}"
            shown = [
                f"<i>{_mermaid(text)}</i>" if is_source else _mermaid(text)
                for is_source, text in _shown(block, debug, known.get(block.label, {}))
            ]
            lines.append(f'    {node}["{"<br>".join(shown) or "(empty)"}"]')
            for target, label, dashed in edges(block):
                arrow = "-.->" if dashed else "-->"
                if label:
                    arrow += f"|{_mermaid(label)}|"
                end = f"{prefix}{END}([End])" if target == END else f"{prefix}{target}"
                lines.append(f"    {node} {arrow} {end}")
        lines.append("    end")
    return "\n".join(lines) + "\n"


def render_dot(functions: Sequence[IrFunction], debug: DebugInfo | None = None) -> str:
    """One digraph: a cluster per function, its nodes named ``f<index>_L<label>``."""
    lines = [
        "digraph cfg {",
        '    graph [fontname="monospace"];',
        '    node [shape=box, fontname="monospace"];',
        '    edge [fontname="monospace"];',
    ]
    for index, function in enumerate(functions):
        prefix = f"f{index}_"
        lines.append(f"    subgraph cluster_f{index} {{")
        lines.append(f'        label="{_dot(title(function, debug))}";')
        lines.append(f'        {prefix}{END} [shape=oval, label="End"];')
        known = {} if debug is None else known_names(function, debug)
        for block in function.blocks:
            node = f"{prefix}L{block.label}"
            text = "".join(
                _dot(text if is_source else f"    {text}") + "\\l"
                for is_source, text in _shown(block, debug, known.get(block.label, {}))
            )
            lines.append(f'        {node} [label="L{block.label}:\\l{text or "(empty)"}"];')
            for target, label, dashed in edges(block):
                attributes = [f'label="{_dot(label)}"'] if label else []
                if dashed:
                    attributes.append("style=dashed")
                suffix = f" [{', '.join(attributes)}]" if attributes else ""
                lines.append(f"        {node} -> {prefix}{target}{suffix};")
        lines.append("    }")
    lines.append("}")
    return "\n".join(lines) + "\n"
