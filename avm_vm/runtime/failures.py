"""Why a call failed, kept: the `CallFailure` of a failed callee and the error `call!` raises.

`call(o, m)` answers `nothing` when the callee fails (the contract), but the runtime keeps the
failure: on the call's `ObjectCalled` trace entry, for the caller (`Run.failure`, what `avm
call` reports), and for `call!(o, m)`, which fails with the callee's own kind and message
(`CalleeFailed`) instead of an unwrap error. The location is where the failure was raised,
in the innermost callee that failed, so it survives being passed up through `call!`s.
"""

from __future__ import annotations

from pathlib import PurePath

from avm_vm.errors import AvmError, ErrorKind
from avm_vm.trace import CallFailure

_KINDS = {kind.qualified_name: kind for kind in ErrorKind}


def location(source_name: str, line: int, col: int) -> str | None:
    """``bank.avm:9:28`` (the file's name, not its path), ``9:28`` when the program does not
    know its source file, None when the position is unknown."""
    if not line:
        return None
    if not source_name or source_name.startswith("<"):
        return f"{line}:{col}"
    return f"{PurePath(source_name).name}:{line}:{col}"


def failure_of(error: AvmError, source_name: str, line: int, col: int) -> CallFailure:
    """The failure ``error`` raised at ``line:col`` of ``source_name`` stands for; an error
    passed up by `call!` keeps its first place."""
    if isinstance(error, CalleeFailed):
        return error.failure
    return CallFailure(error.kind.qualified_name, error.message, location(source_name, line, col))


class CalleeFailed(AvmError):
    """The error `call!` fails with when its callee failed: the callee's kind and message
    (a kind this runtime does not know, from another node, is ``Failed``), and the whole
    `CallFailure`, where it was raised included."""

    def __init__(self, failure: CallFailure) -> None:
        self.failure = failure
        super().__init__(_KINDS.get(failure.kind, ErrorKind.FAILED))

    @property
    def message(self) -> str:
        return self.failure.message

    @property
    def fatal(self) -> bool:
        # The callee's run ran out of its own budget (on another node): the caller may go on.
        return False
