"""The node's entry program: what a client's `call` and `create` run as top-level programs.

`avm call NODE OBJ VALUE` must answer exactly what ``return call(obj, value)`` answers in a
single-node ``main`` (``just v``, ``nothing`` when the callee fails), so a client call runs
that one-line main, with routing, remote calls, undo and trace as for any program. The
functions are built here rather than compiled, since a node needs no compiler.
"""

from __future__ import annotations

from avm_vm.format.instructions import BY_NAME
from avm_vm.format.opcodes import Op, RegType
from avm_vm.format.program import Function, FunctionKind, Program
from avm_vm.format.verify import verify


def _effect_then_return(name: str, instruction: str) -> Function:
    """``fn name(a, b) { return instruction(a, b) }``: r2 receives the answer."""
    code = ((Op.EFFECT, 2, BY_NAME[instruction].number, (0, 1)), (Op.RET, 2))
    return Function(name, FunctionKind.MAIN, 2, (RegType.ANY,) * 3, code, ((0, 0), (0, 0)))


ENTRY = Program(
    "<node entry>",
    (),
    (
        _effect_then_return("client call", "call"),
        _effect_then_return("client create", "create_obj"),
    ),
    (),
    None,
)
CALL, CREATE = 0, 1
verify(ENTRY, ENTRY.source_name)
