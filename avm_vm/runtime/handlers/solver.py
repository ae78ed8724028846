"""A small finite-domain constraint store (spec §6.9) with arc-consistency propagation.

Variables are numbered from 0; a domain is a tuple of values in the order given to
`newVar` (label picks the first value of that order that stays consistent). Constraints
are tagged lists, e.g. ``["neq", v1, v2]``, ``["alldiff", [v1, v2, v3]]``,
``["val_leq", v, 3]``; ordering constraints hold between nats only.

Propagation is AC-3: a queue of the constraints to revise, a constraint going back on it
when a domain it reads has changed. `neq` and `neq_offset` prune only once a side is fixed
(a value lacks support only when the other domain is that one value), in linear time.

Every operation is all-or-nothing: it propagates on a working copy of the domains and
writes back through the journal (as a world change) only when consistent, so the store
never holds an empty domain, a failed `narrow`/`post` changes nothing, and a transaction's
abort restores the domains as they were at begin (variables made in it vanish).

The solver's work is charged to the run's fuel before it is done, WALK_STEPS per value a
propagation may compare or hash (docs/semantics.md, "Resource limits"), so a large
constraint costs fuel in proportion to its time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from avm_vm.errors import AvmError, ErrorKind, vm_error
from avm_vm.runtime.store import Journal
from avm_vm.values import WALK_STEPS, Value, render, value_hash, values_equal
from avm_vm.vm.ops import describe

Domains = dict[int, tuple[Value, ...]]


def _nats(relation: Callable[[int, int], bool]) -> Callable[[Value, Value], bool]:
    def holds(a: Value, b: Value) -> bool:
        return type(a) is int and type(b) is int and relation(a, b)

    return holds


# Binary relations between two variables; the `val_` forms relate a variable to a value.
RELATIONS: dict[str, Callable[[Value, Value], bool]] = {
    "eq": values_equal,
    "neq": lambda a, b: not values_equal(a, b),
    "leq": _nats(lambda a, b: a <= b),
    "lt": _nats(lambda a, b: a < b),
    "geq": _nats(lambda a, b: a >= b),
    "gt": _nats(lambda a, b: a > b),
}


class Constraint:
    """A parsed constraint: its raw form (for reification) and the variables it links."""

    __slots__ = ("kind", "offset", "raw", "value", "vars")

    def __init__(
        self, raw: Value, kind: str, vars: tuple[int, ...], value: Value = 0, offset: int = 0
    ) -> None:
        self.raw = raw
        self.kind = kind
        self.vars = vars
        self.value = value
        self.offset = offset

    def work(self, doms: Domains) -> int:
        """What `prune` is charged: WALK_STEPS per value comparison it may make."""
        sizes = [len(doms[var]) for var in self.vars]
        if self.kind == "alldiff":  # each fixed variable's value is taken out of the others
            return WALK_STEPS * (1 + sizes.count(1)) * sum(sizes)
        if len(sizes) == 1 or self.kind in _DISEQUAL:
            return WALK_STEPS * sum(sizes)
        return WALK_STEPS * 2 * sizes[0] * sizes[1]

    def prune(self, doms: Domains) -> bool | None:
        """Narrow ``doms`` in place; None when a domain wipes out, else whether it changed."""
        if self.kind == "alldiff":
            return _alldiff(self.vars, doms)
        if self.kind.startswith("val_"):
            test = RELATIONS[self.kind[4:]]
            (x,) = self.vars
            return _keep(doms, x, [a for a in doms[x] if test(a, self.value)])
        x, y = self.vars
        if self.kind in _DISEQUAL:
            return _disequal(doms, x, y, self.offset if self.kind == "neq_offset" else None)
        test = RELATIONS[self.kind]
        changed = _keep(doms, x, [a for a in doms[x] if any(test(a, b) for b in doms[y])])
        if changed is None:
            return None
        again = _keep(doms, y, [b for b in doms[y] if any(test(a, b) for a in doms[x])])
        return None if again is None else changed or again


_DISEQUAL = frozenset({"neq", "neq_offset"})


def _disequal(doms: Domains, x: int, y: int, offset: int | None) -> bool | None:
    """``x != y`` (``offset`` None) or ``x != y + offset`` (nats): a value of one side
    lacks support only when the other side is fixed to the value it excludes."""

    def clash(a: Value, b: Value) -> bool:
        if offset is None:
            return values_equal(a, b)
        return type(a) is int and type(b) is int and a == b + offset

    changed = False
    for var, other, reverse in ((x, y, False), (y, x, True)):  # y fixed prunes x, then x y
        if len(doms[other]) != 1:
            continue
        (fixed,) = doms[other]
        kept = [v for v in doms[var] if not (clash(fixed, v) if reverse else clash(v, fixed))]
        step = _keep(doms, var, kept)
        if step is None:
            return None
        changed = changed or step
    return changed


def _keep(doms: Domains, var: int, kept: list[Value]) -> bool | None:
    if not kept:
        return None
    if len(kept) == len(doms[var]):
        return False
    doms[var] = tuple(kept)
    return True


def _alldiff(vars: tuple[int, ...], doms: Domains) -> bool | None:
    changed = False
    for var in vars:
        if len(doms[var]) != 1:
            continue
        (fixed,) = doms[var]
        for other in vars:
            if other != var:
                kept = [a for a in doms[other] if not values_equal(a, fixed)]
                step = _keep(doms, other, kept)
                if step is None:
                    return None
                changed = changed or step
    distinct = _dedup(tuple(a for var in vars for a in doms[var]))
    return None if len(distinct) < len(set(vars)) else changed


def _dedup(values: tuple[Value, ...]) -> tuple[Value, ...]:
    """``values`` without repeats, first occurrences in order (buckets by hash: linear)."""
    out: list[Value] = []
    seen: dict[int, list[Value]] = {}
    for a in values:
        bucket = seen.setdefault(value_hash(a), [])
        if not any(values_equal(a, b) for b in bucket):
            bucket.append(a)
            out.append(a)
    return tuple(out)


def _watching(constraints: Iterable[Constraint]) -> dict[int, list[Constraint]]:
    """Which constraints read each variable."""
    watching: dict[int, list[Constraint]] = {}
    for constraint in constraints:
        for var in set(constraint.vars):
            watching.setdefault(var, []).append(constraint)
    return watching


def _bad(detail: str) -> AvmError:
    return vm_error(ErrorKind.TYPE_MISMATCH, detail)


class ConstraintStore:
    """Variables with their domains and the posted constraints."""

    __slots__ = ("constraints", "domains", "journal", "next_constraint", "next_var", "pay")

    def __init__(self, journal: Journal, pay: Callable[[int], None]) -> None:
        self.journal = journal
        self.pay = pay  # charges the executing run for work about to be done
        self.domains: Domains = {}
        self.constraints: dict[int, Constraint] = {}
        self.next_var = 0  # like object ids, never rolled back
        self.next_constraint = 0

    def new_var(self, domain: Value) -> int:
        values = self._domain(domain)
        self.pay(WALK_STEPS * len(values))
        var = self.next_var
        self.next_var += 1
        self.journal.put(self.domains, var, _dedup(values), world=True)
        return var

    def narrow(self, var: Value, domain: Value) -> bool:
        """Intersect ``var``'s domain with ``domain`` and propagate; False if inconsistent."""
        x = self._var(var)
        allowed = self._domain(domain)
        self.pay(WALK_STEPS * len(self.domains[x]) * len(allowed))
        kept = [a for a in self.domains[x] if any(values_equal(a, b) for b in allowed)]
        doms = dict(self.domains)
        changed = _keep(doms, x, kept)
        if changed is None:
            return False
        watching = _watching(self.constraints.values())
        return self._settle(doms, list(watching.get(x, ())) if changed else [], watching)

    def post(self, raw: Value) -> bool:
        """Add a constraint and propagate; False (and nothing changed) if inconsistent."""
        constraint = self.parse(raw)
        watching = _watching([*self.constraints.values(), constraint])
        if not self._settle(dict(self.domains), [constraint], watching):
            return False
        self.journal.put(self.constraints, self.next_constraint, constraint, world=True)
        self.next_constraint += 1
        return True

    def label(self, var: Value, start: int = 0) -> tuple[int, int, Value] | None:
        """Fix ``var`` to the first value of its domain, from position ``start`` on, that
        stays consistent: its position, the domain's size and the value; None if none."""
        x = self._var(var)
        domain = self.domains[x]
        watching = _watching(self.constraints.values())
        for index in range(start, len(domain)):
            doms = dict(self.domains)
            doms[x] = (domain[index],)
            if self._settle(doms, list(watching.get(x, ())), watching):
                return index, len(domain), domain[index]
        return None

    def _settle(
        self, doms: Domains, queue: list[Constraint], watching: dict[int, list[Constraint]]
    ) -> bool:
        """Revise the queued constraints to a fixpoint (AC-3); on success write the changed
        domains back."""
        queued = set(queue)
        while queue:
            constraint = queue.pop()
            queued.discard(constraint)
            before = [doms[var] for var in constraint.vars]
            self.pay(constraint.work(doms))
            step = constraint.prune(doms)
            if step is None:
                return False
            if not step:
                continue
            for var, old in zip(constraint.vars, before, strict=True):
                if doms[var] is old:
                    continue
                for other in watching.get(var, ()):
                    # a binary revision leaves its own constraint at a fixpoint; alldiff not
                    if other not in queued and (other is not constraint or other.kind == "alldiff"):
                        queued.add(other)
                        queue.append(other)
        for var, dom in doms.items():
            if dom is not self.domains[var]:
                self.journal.put(self.domains, var, dom, world=True)
        return True

    def parse(self, raw: Value) -> Constraint:
        """A tagged list as a constraint; malformed ones are a type error."""
        if type(raw) is not tuple or not raw or type(raw[0]) is not str:
            raise _bad(f"a constraint is a tagged list, found {describe(raw)}")
        kind, args = raw[0], raw[1:]
        if kind == "alldiff" and len(args) == 1 and type(args[0]) is tuple:
            return Constraint(raw, kind, tuple(self._var(v) for v in args[0]))
        if kind in RELATIONS and len(args) == 2:
            return Constraint(raw, kind, (self._var(args[0]), self._var(args[1])))
        if kind.startswith("val_") and kind[4:] in RELATIONS and len(args) == 2:
            return Constraint(raw, kind, (self._var(args[0]),), value=args[1])
        if kind == "neq_offset" and len(args) == 3 and type(args[2]) is int:
            x, y = self._var(args[0]), self._var(args[1])
            return Constraint(raw, kind, (x, y), offset=args[2])
        raise _bad(f"unknown constraint: {kind}/{len(args)}")

    def reify(self) -> tuple[Value, ...]:
        """``[[[var, domain], ...], [constraint, ...]]`` (spec §6.4 reifyConstraints)."""
        variables = tuple((var, self.domains[var]) for var in sorted(self.domains))
        return (variables, tuple(c.raw for c in self.constraints.values()))

    def _var(self, var: Value) -> int:
        if type(var) is not int or var not in self.domains:
            raise _bad(f"unknown constraint variable: {render(var)}")
        return var

    @staticmethod
    def _domain(domain: Value) -> tuple[Value, ...]:
        if type(domain) is not tuple:
            raise _bad(f"a domain is a list, found {describe(domain)}")
        return domain
