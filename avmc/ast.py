"""The abstract syntax tree: plain dataclasses with source spans.

The classes have slots: a parse makes nodes by the ten thousand, and a node with slots is
quicker to make and to read than one with a ``__dict__`` (nodes get no other attributes).

Spans are excluded from equality (``compare=False``) so tests can compare trees built by
hand with parsed ones. Every node carries a ``span`` as its last positional field; a node
that names something also has a keyword-only ``name_span``, where the name itself is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from avm_vm.diagnostics import Span
from avm_vm.values import Value

NO_SPAN = Span("<none>", 0, 0)


def _span() -> Span:
    return field(default=NO_SPAN, compare=False, repr=False)


def _name_span() -> Span:
    """Where the node's name is written (for editors); keyword-only, so it follows ``span``."""
    return field(default=NO_SPAN, compare=False, repr=False, kw_only=True)


# ---------------------------------------------------------------- expressions


@dataclass(slots=True)
class Literal:
    """A constant value: nat, bool, string, nothing, obj:N, tx:N."""

    value: Value
    span: Span = _span()


@dataclass(slots=True)
class Name:
    """A variable, parameter or persistent field of the enclosing behavior."""

    name: str
    span: Span = _span()


@dataclass(slots=True)
class ListExpr:
    items: list[Expr]
    span: Span = _span()


@dataclass(slots=True)
class PairExpr:
    first: Expr
    second: Expr
    span: Span = _span()


@dataclass(slots=True)
class JustExpr:
    value: Expr
    span: Span = _span()


@dataclass(slots=True)
class BinOp:
    """``op`` is one of + - * / % == != < <= > >= ++ and or."""

    op: str
    left: Expr
    right: Expr
    span: Span = _span()


@dataclass(slots=True)
class Not:
    operand: Expr
    span: Span = _span()


@dataclass(slots=True)
class Index:
    base: Expr
    index: Expr
    span: Span = _span()


@dataclass(slots=True)
class Slice:
    """``base[start:end]``; a missing bound means the start or the end."""

    base: Expr
    start: Expr | None
    end: Expr | None
    span: Span = _span()


@dataclass(slots=True)
class Call:
    """``name(args)``: a pure function, a builtin (len, fst, ...) or an AVM instruction.

    ``unwrap`` is set for ``call!(...)``-style calls: the answer must be ``just v`` and the
    expression is ``v``; ``nothing`` fails the activation. ``unsafe`` is set when the call is
    written ``unsafe name(...)`` (the opt-in required for unsafe instructions).
    """

    name: str
    args: list[Expr]
    unwrap: bool = False
    unsafe: bool = False
    span: Span = _span()
    name_span: Span = _name_span()


@dataclass(slots=True)
class Create:
    """``create Behavior`` or ``create Behavior under controller``."""

    behavior: str
    controller: Expr | None
    span: Span = _span()
    name_span: Span = _name_span()


@dataclass(slots=True)
class ContextExpr:
    """``self``, ``input`` or ``sender``: the introspection instructions with keyword syntax."""

    which: str
    span: Span = _span()


Expr = (
    Literal
    | Name
    | ListExpr
    | PairExpr
    | JustExpr
    | BinOp
    | Not
    | Index
    | Slice
    | Call
    | Create
    | ContextExpr
)

# ---------------------------------------------------------------- patterns


@dataclass(slots=True)
class PWildcard:
    span: Span = _span()


@dataclass(slots=True)
class PBind:
    name: str
    span: Span = _span()


@dataclass(slots=True)
class PLiteral:
    """Matches a value equal to ``value`` (nat, bool, string or nothing)."""

    value: Value
    span: Span = _span()


@dataclass(slots=True)
class PList:
    """``[p1, ..., pn]`` or ``[p1, ..., pn, ..rest]``: ``rest`` is a name, ``"_"`` or None."""

    items: list[Pattern]
    rest: str | None = None
    span: Span = _span()


@dataclass(slots=True)
class PPair:
    first: Pattern
    second: Pattern
    span: Span = _span()


@dataclass(slots=True)
class PJust:
    inner: Pattern
    span: Span = _span()


Pattern = PWildcard | PBind | PLiteral | PList | PPair | PJust

# ---------------------------------------------------------------- statements


@dataclass(slots=True)
class Block:
    stmts: list[Stmt]
    span: Span = _span()


@dataclass(slots=True)
class Let:
    name: str
    value: Expr
    span: Span = _span()
    name_span: Span = _name_span()


@dataclass(slots=True)
class Assign:
    """``name = value`` or, with ``op`` set ("+", "-", "*", "/", "%", "++"), ``name op= value``."""

    name: str
    value: Expr
    op: str | None = None
    span: Span = _span()


@dataclass(slots=True)
class If:
    cond: Expr
    then: Block
    otherwise: Block | None = None  # an `else if` chain is an else Block holding one If
    span: Span = _span()


@dataclass(slots=True)
class While:
    cond: Expr
    body: Block
    span: Span = _span()


@dataclass(slots=True)
class For:
    var: str
    iterable: Expr
    body: Block
    span: Span = _span()
    name_span: Span = _name_span()


@dataclass(slots=True)
class MatchArm:
    pattern: Pattern
    guard: Expr | None
    body: Block
    span: Span = _span()


@dataclass(slots=True)
class Match:
    subject: Expr
    arms: list[MatchArm]
    span: Span = _span()


@dataclass(slots=True)
class Return:
    value: Expr | None
    span: Span = _span()


@dataclass(slots=True)
class Break:
    span: Span = _span()


@dataclass(slots=True)
class Continue:
    span: Span = _span()


@dataclass(slots=True)
class Fail:
    """``fail message``: the activation fails; a caller's ``call`` answers nothing."""

    message: Expr
    span: Span = _span()


@dataclass(slots=True)
class Atomic:
    """``atomic [under ctrl] { body } [else [(err[, kind])] { handler }]``.

    Begins a transaction, runs the body and commits. If the body (or its commit) fails, the
    transaction is aborted and the handler runs (with the failure message bound to
    ``error_name`` and its error kind, e.g. ``"Failed"``, to ``kind_name``), or, with no
    handler, the failure propagates.
    """

    controller: Expr | None
    body: Block
    handler: Block | None = None
    error_name: str | None = None
    span: Span = _span()
    kind_name: str | None = None


@dataclass(slots=True)
class ExprStmt:
    expr: Expr
    span: Span = _span()


@dataclass(slots=True)
class Assert:
    """``assert cond [, message]`` (tests only): the test fails unless ``cond`` is true."""

    cond: Expr
    message: Expr | None = None
    span: Span = _span()


@dataclass(slots=True)
class ExpectFail:
    """``expect_fail [Kind] ["message"] { body }`` (tests only): the test fails unless the
    body fails, with this error kind and this exact message when they are given."""

    kind: str | None
    message: str | None
    body: Block
    span: Span = _span()


Stmt = (
    Let
    | Assign
    | If
    | While
    | For
    | Match
    | Return
    | Break
    | Continue
    | Fail
    | Atomic
    | ExprStmt
    | Assert
    | ExpectFail
)

# ---------------------------------------------------------------- items


@dataclass(slots=True)
class Param:
    name: str
    span: Span = _span()


@dataclass(slots=True)
class FieldDef:
    """``field name = default``: a persistent field, one slot of the object's state list."""

    name: str
    default: Expr
    span: Span = _span()
    name_span: Span = _name_span()


@dataclass(slots=True)
class Clause:
    """``on pattern [if guard] { body }``: handles the messages the pattern matches."""

    pattern: Pattern
    guard: Expr | None
    body: Block
    span: Span = _span()


@dataclass(slots=True)
class BehaviorDef:
    name: str
    fields: list[FieldDef]
    clauses: list[Clause]
    span: Span = _span()
    name_span: Span = _name_span()


@dataclass(slots=True)
class ExternBehavior:
    """``extern behavior Name``: a behavior defined in another .tape file of the node."""

    name: str
    span: Span = _span()
    name_span: Span = _name_span()


@dataclass(slots=True)
class FunctionDef:
    """``fn name(params) { body }``: a pure function (no AVM instructions)."""

    name: str
    params: list[Param]
    body: Block
    span: Span = _span()
    name_span: Span = _name_span()


@dataclass(slots=True)
class MainDef:
    body: Block
    span: Span = _span()


@dataclass(slots=True)
class TestDef:
    """``test "name" { body }``: a test `avm test` runs like a `main` in a fresh world."""

    __test__ = False  # not a pytest test class, for test files importing the AST

    name: str
    body: Block
    span: Span = _span()
    name_span: Span = _name_span()


Item = BehaviorDef | ExternBehavior | FunctionDef | MainDef | TestDef


@dataclass(slots=True)
class Module:
    items: list[Item]
    span: Span = _span()
