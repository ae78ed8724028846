"""The abstract syntax tree: plain dataclasses with source spans.

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


@dataclass
class Literal:
    """A constant value: nat, bool, string, nothing, obj:N, tx:N."""

    value: Value
    span: Span = _span()


@dataclass
class Name:
    """A variable, parameter or persistent field of the enclosing behavior."""

    name: str
    span: Span = _span()


@dataclass
class ListExpr:
    items: list[Expr]
    span: Span = _span()


@dataclass
class PairExpr:
    first: Expr
    second: Expr
    span: Span = _span()


@dataclass
class JustExpr:
    value: Expr
    span: Span = _span()


@dataclass
class BinOp:
    """``op`` is one of + - * / % == != < <= > >= ++ and or."""

    op: str
    left: Expr
    right: Expr
    span: Span = _span()


@dataclass
class Not:
    operand: Expr
    span: Span = _span()


@dataclass
class Index:
    base: Expr
    index: Expr
    span: Span = _span()


@dataclass
class Slice:
    """``base[start:end]``; a missing bound means the start or the end."""

    base: Expr
    start: Expr | None
    end: Expr | None
    span: Span = _span()


@dataclass
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


@dataclass
class Create:
    """``create Behavior`` or ``create Behavior under controller``."""

    behavior: str
    controller: Expr | None
    span: Span = _span()
    name_span: Span = _name_span()


@dataclass
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


@dataclass
class PWildcard:
    span: Span = _span()


@dataclass
class PBind:
    name: str
    span: Span = _span()


@dataclass
class PLiteral:
    """Matches a value equal to ``value`` (nat, bool, string or nothing)."""

    value: Value
    span: Span = _span()


@dataclass
class PList:
    """``[p1, ..., pn]`` or ``[p1, ..., pn, ..rest]``: ``rest`` is a name, ``"_"`` or None."""

    items: list[Pattern]
    rest: str | None = None
    span: Span = _span()


@dataclass
class PPair:
    first: Pattern
    second: Pattern
    span: Span = _span()


@dataclass
class PJust:
    inner: Pattern
    span: Span = _span()


Pattern = PWildcard | PBind | PLiteral | PList | PPair | PJust

# ---------------------------------------------------------------- statements


@dataclass
class Block:
    stmts: list[Stmt]
    span: Span = _span()


@dataclass
class Let:
    name: str
    value: Expr
    span: Span = _span()
    name_span: Span = _name_span()


@dataclass
class Assign:
    """``name = value`` or, with ``op`` set ("+", "-", "*", "/", "%", "++"), ``name op= value``."""

    name: str
    value: Expr
    op: str | None = None
    span: Span = _span()


@dataclass
class If:
    cond: Expr
    then: Block
    otherwise: Block | None = None  # an `else if` chain is an else Block holding one If
    span: Span = _span()


@dataclass
class While:
    cond: Expr
    body: Block
    span: Span = _span()


@dataclass
class For:
    var: str
    iterable: Expr
    body: Block
    span: Span = _span()
    name_span: Span = _name_span()


@dataclass
class MatchArm:
    pattern: Pattern
    guard: Expr | None
    body: Block
    span: Span = _span()


@dataclass
class Match:
    subject: Expr
    arms: list[MatchArm]
    span: Span = _span()


@dataclass
class Return:
    value: Expr | None
    span: Span = _span()


@dataclass
class Break:
    span: Span = _span()


@dataclass
class Continue:
    span: Span = _span()


@dataclass
class Fail:
    """``fail message``: the activation fails; a caller's ``call`` answers nothing."""

    message: Expr
    span: Span = _span()


@dataclass
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


@dataclass
class ExprStmt:
    expr: Expr
    span: Span = _span()


@dataclass
class Assert:
    """``assert cond [, message]`` (tests only): the test fails unless ``cond`` is true."""

    cond: Expr
    message: Expr | None = None
    span: Span = _span()


@dataclass
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


@dataclass
class Param:
    name: str
    span: Span = _span()


@dataclass
class FieldDef:
    """``field name = default``: a persistent field, one slot of the object's state list."""

    name: str
    default: Expr
    span: Span = _span()
    name_span: Span = _name_span()


@dataclass
class Clause:
    """``on pattern [if guard] { body }``: handles the messages the pattern matches."""

    pattern: Pattern
    guard: Expr | None
    body: Block
    span: Span = _span()


@dataclass
class BehaviorDef:
    name: str
    fields: list[FieldDef]
    clauses: list[Clause]
    span: Span = _span()
    name_span: Span = _name_span()


@dataclass
class ExternBehavior:
    """``extern behavior Name``: a behavior defined in another .tape file of the node."""

    name: str
    span: Span = _span()
    name_span: Span = _name_span()


@dataclass
class FunctionDef:
    """``fn name(params) { body }``: a pure function (no AVM instructions)."""

    name: str
    params: list[Param]
    body: Block
    span: Span = _span()
    name_span: Span = _name_span()


@dataclass
class MainDef:
    body: Block
    span: Span = _span()


@dataclass
class TestDef:
    """``test "name" { body }``: a test `avm test` runs like a `main` in a fresh world."""

    __test__ = False  # not a pytest test class, for test files importing the AST

    name: str
    body: Block
    span: Span = _span()
    name_span: Span = _name_span()


Item = BehaviorDef | ExternBehavior | FunctionDef | MainDef | TestDef


@dataclass
class Module:
    items: list[Item]
    span: Span = _span()
