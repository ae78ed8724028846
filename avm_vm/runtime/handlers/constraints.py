"""Finite-domain (spec §6.9) and nondeterminism (spec §6.10) layers.

FD instructions act on the runtime's `ConstraintStore` (see solver.py): `new_var` answers
the variable's number, `narrow`/`post` a bool, `label` the chosen value. `choose` answers
the first of its values (a deterministic choice); `require` records an assertion that the
enclosing transaction's commit checks (outside a tx it is checked at once).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from avm_vm.errors import AvmError, ErrorKind, vm_error
from avm_vm.runtime.handlers.common import values
from avm_vm.values import NOTHING, Value, render

if TYPE_CHECKING:
    from avm_vm.runtime.core import Runtime


def new_var(rt: Runtime, args: tuple[Value, ...]) -> Value:
    return rt.constraints.new_var(args[0])


def narrow(rt: Runtime, args: tuple[Value, ...]) -> Value:
    return rt.constraints.narrow(args[0], args[1])


def post(rt: Runtime, args: tuple[Value, ...]) -> Value:
    return rt.constraints.post(args[0])


def label(rt: Runtime, args: tuple[Value, ...]) -> Value:
    value = rt.constraints.label(args[0])
    if value is None:
        raise vm_error(ErrorKind.FAILED, f"label: no value of variable {render(args[0])} fits")
    return value


def choose(rt: Runtime, args: tuple[Value, ...]) -> Value:
    options = values(args[0], "choose")
    if not options:
        raise vm_error(ErrorKind.FAILED, "choose: no values to choose from")
    return options[0]


def require(rt: Runtime, args: tuple[Value, ...]) -> Value:
    """A bool, or a constraint (it must post consistently). False requirements fail."""
    assertion = args[0]
    if type(assertion) is not bool:
        rt.constraints.parse(assertion)  # malformed constraints fail now, not at commit
    if rt.tx is not None:
        rt.tx.require(rt.journal, assertion)
        return NOTHING
    holds = assertion if type(assertion) is bool else rt.constraints.post(assertion)
    if not holds:
        raise vm_error(ErrorKind.FAILED, f"requirement failed: {render(assertion)}")
    return NOTHING


def _not_implemented(kind: ErrorKind, spec_name: str):
    def stub(rt: Runtime, args: tuple[Value, ...]) -> Value:
        raise AvmError(kind, name=spec_name)

    return stub


HANDLERS = {
    "new_var": new_var,
    "narrow": narrow,
    "post": post,
    "label": label,
    "choose": choose,
    "require": require,
}
# Profile R fails every FD and nondeterminism instruction (spec §6.9, §6.10).
R_HANDLERS = {
    **{
        ir: _not_implemented(ErrorKind.FD_NOT_IMPLEMENTED, spec)
        for ir, spec in (
            ("new_var", "newVar"),
            ("narrow", "narrow"),
            ("post", "post"),
            ("label", "label"),
        )
    },
    "choose": _not_implemented(ErrorKind.NONDET_NOT_IMPLEMENTED, "choose"),
    "require": _not_implemented(ErrorKind.NONDET_NOT_IMPLEMENTED, "require"),
}
