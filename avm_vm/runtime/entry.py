"""The entry program: what a client's `call` and `create` run as top-level programs.

`avm call NODE OBJ VALUE` must answer exactly what ``return call(obj, value)`` answers in a
single-node ``main`` (``just v``, ``nothing`` when the callee fails), so a client call runs
that one-line main, with routing, remote calls, undo and trace as for any program. The
Python API (`avm_vm.api`) drives a world the same way, transactions included. The
functions are built here rather than compiled, since a node needs no compiler.
"""

from __future__ import annotations

from avm_vm.format.instructions import BY_NAME
from avm_vm.format.opcodes import Op, RegType
from avm_vm.format.program import Function, FunctionKind, Program
from avm_vm.format.verify import verify


def _effect_then_return(name: str, instruction: str, arity: int) -> Function:
    """``fn name(a, ...) { return instruction(a, ...) }``: the register after the
    parameters receives the answer."""
    answer = arity
    code = ((Op.EFFECT, answer, BY_NAME[instruction].number, tuple(range(arity))), (Op.RET, answer))
    registers = (RegType.ANY,) * (arity + 1)
    return Function(name, FunctionKind.MAIN, arity, registers, code, ((0, 0), (0, 0)))


ENTRY = Program(
    "<entry>",
    (),
    (
        _effect_then_return("client call", "call", 2),
        _effect_then_return("client create", "create_obj", 2),
        _effect_then_return("begin", "begin_tx", 1),
        _effect_then_return("commit", "commit_tx", 1),
        _effect_then_return("abort", "abort_tx", 1),
    ),
    (),
    None,
)
CALL, CREATE, BEGIN, COMMIT, ABORT = range(5)
verify(ENTRY, ENTRY.source_name)
