"""Finite-domain (spec §6.9) and nondeterminism (spec §6.10) layers.

FD instructions act on the runtime's `ConstraintStore` (see solver.py): `new_var` answers
the variable's number, `narrow`/`post` a bool, `label` the chosen value. Inside a
transaction `choose` and `label` are choice points of its search (search.py); outside one
`choose` answers its first value and `label` the first consistent one. `require` records
an assertion that the enclosing transaction's commit checks (outside a tx it is checked at
once; after the transaction's first choice, at once too, so a failure ends the run early).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from avm_vm.errors import AvmError, ErrorKind, vm_error
from avm_vm.runtime.handlers.common import values
from avm_vm.runtime.handlers.search import fail_attempt, open_search, solutions
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
    search = open_search(rt, "label")
    start = 0 if search is None else search.next_index()
    found = rt.constraints.label(args[0], start)
    if found is None:
        if search is not None:  # a dead end: no value from here on fits
            return fail_attempt(rt)
        raise vm_error(ErrorKind.FAILED, f"label: no value of variable {render(args[0])} fits")
    index, count, value = found
    if search is not None:
        search.trail.append((index, count, value))
    return value


def choose(rt: Runtime, args: tuple[Value, ...]) -> Value:
    options = values(args[0], "choose")
    search = open_search(rt, "choose")
    if search is None:
        if not options:
            raise vm_error(ErrorKind.FAILED, "choose: no values to choose from")
        return options[0]
    index = search.next_index()
    if index >= len(options):  # `choose([])`: a dead end
        return fail_attempt(rt)
    search.trail.append((index, len(options), options[index]))
    return options[index]


def require(rt: Runtime, args: tuple[Value, ...]) -> Value:
    """A bool, or a constraint (it must post consistently). False requirements fail."""
    assertion = args[0]
    if type(assertion) is not bool:
        rt.constraints.parse(assertion)  # malformed constraints fail now, not at commit
    tx = rt.tx
    if tx is not None and (tx.search is None or not tx.search.trail):
        tx.require(rt.journal, assertion)  # checked at commit
        return NOTHING
    holds = assertion if type(assertion) is bool else rt.constraints.post(assertion)
    if tx is not None:  # after a choice: a run that cannot commit ends now
        return NOTHING if holds else fail_attempt(rt)
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
    "solutions": solutions,
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
    "solutions": _not_implemented(ErrorKind.NONDET_NOT_IMPLEMENTED, "solutions"),
}
