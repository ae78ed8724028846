"""Runtime errors: the spec's catalogue (§9.2, profile R names and messages) plus the VM's own.

One exception type, `AvmError`, carries an `ErrorKind` (name, family, message template) and
the template's arguments. Rendering uses the reference texts: `object not found: obj:3`.
Fatal errors (fuel, depth, memory) stop the whole run: no `TRY` handler and no caller sees them as
a failed call.
"""

from __future__ import annotations

from enum import Enum

from avm_vm.values import Value, render


class ErrorKind(Enum):
    # fmt: off
    # Object family (spec §9.2)
    OBJ_NOT_FOUND = ("ObjNotFound", "Obj", "object not found: obj:{id}")
    OBJ_ALREADY_DESTROYED = ("ObjAlreadyDestroyed", "Obj", "object already destroyed: obj:{id}")
    OBJ_ALREADY_EXISTS = ("ObjAlreadyExists", "Obj", "object already exists: obj:{id}")
    OBJ_INVALID_INPUT = ("ObjInvalidInput", "Obj", "invalid input for obj:{id}: {input}")
    OBJ_REJECTED_CALL = ("ObjRejectedCall", "Obj", "object rejected call: obj:{id}")
    OBJ_METADATA_CORRUPTION = ("ObjMetadataCorruption", "Obj", "metadata corruption for obj:{id}")
    OBJ_LOCKED = ("ObjLocked", "Obj", "obj:{id} is locked while tx:{tx} commits across nodes; try again")
    BEHAVIOR_NOT_FOUND = ("BehaviorNotFound", "Obj", 'behavior not found: "{name}"')
    # Introspection
    CONTEXT_UNAVAILABLE = ("IntrospectContextUnavailable", "Introspect", "execution context unavailable")
    # Reflection
    REFLECT_METADATA_NOT_FOUND = ("ReflectMetadataNotFound", "Reflect", "metadata not found for obj:{id}")
    REFLECT_METADATA_INCONSISTENT = ("ReflectMetadataInconsistent", "Reflect", "metadata inconsistent for obj:{id}")
    REFLECT_STORE_CORRUPTION = ("ReflectStoreCorruption", "Reflect", "store corruption detected")
    SCRY_PREDICATE_FAILED = ("ReflectScryPredicateFailed", "Reflect", "scry predicate failed")
    REFLECTION_DENIED = ("ReflectReflectionDenied", "Reflect", "reflection denied")
    # Reification
    REIFY_CONTEXT_FAILED = ("ReifyContextFailed", "Reify", "failed to reify execution context")
    REIFY_NO_TRANSACTION = ("ReifyNoTransaction", "Reify", "no active transaction to reify")
    REIFY_TX_STATE_DENIED = ("ReifyTxStateAccessDenied", "Reify", "transaction state access denied")
    REIFY_CONSTRAINTS_UNAVAILABLE = ("ReifyConstraintStoreUnavailable", "Reify", "constraint store unavailable")
    # Transactions
    TX_CONFLICT = ("TxConflict", "Tx", "transaction conflict: tx:{tx}")
    TX_NOT_FOUND = ("TxNotFound", "Tx", "transaction not found: tx:{tx}")
    TX_ALREADY_COMMITTED = ("TxAlreadyCommitted", "Tx", "transaction already committed: tx:{tx}")
    TX_ALREADY_ABORTED = ("TxAlreadyAborted", "Tx", "transaction already aborted: tx:{tx}")
    TX_NO_ACTIVE = ("TxNoActiveTx", "Tx", "no active transaction")
    TX_INVALID_DURING_TX = ("TxInvalidDuringTx", "Tx", "operation invalid during active transaction")
    TX_CANNOT_JOIN = ("TxCannotJoin", "Tx", "{detail}")
    # Pure functions
    PURE_NOT_FOUND = ("PureNotFound", "Pure", "function not found: {name}")
    PURE_ALREADY_REGISTERED = ("PureAlreadyRegistered", "Pure", "function already registered: {name}")
    PURE_VERSION_CONFLICT = ("PureVersionConflict", "Pure", "version conflict for function: {name}")
    # Machines
    MACHINE_UNREACHABLE = ("MachineUnreachable", "Machine", "machine unreachable: machine:{machine}")
    MACHINE_INVALID_TRANSFER = ("MachineInvalidTransfer", "Machine", "invalid machine transfer")
    MACHINE_TELEPORT_DURING_TX = ("MachineTeleportDuringTx", "Machine", "teleport forbidden during active transaction")
    # Controllers
    CTRL_UNREACHABLE = ("CtrlUnreachable", "Controller", "controller unreachable: ctrl:{ctrl}")
    CTRL_UNAUTHORIZED_TRANSFER = ("CtrlUnauthorizedTransfer", "Controller", "unauthorized transfer of obj:{id}")
    CTRL_CROSS_CONTROLLER_TX = ("CtrlCrossControllerTx", "Controller", "cross-controller transaction for obj:{id}")
    CTRL_NOT_AVAILABLE = ("CtrlNotAvailable", "Controller", "object not available: obj:{id}")
    CTRL_NOT_CONSISTENT = ("CtrlNotConsistent", "Controller", "object not consistent: obj:{id}")
    CTRL_FREEZE_FAILED = ("CtrlFreezeFailed", "Controller", "freeze failed for obj:{id}")
    CTRL_NO_CONTROLLER = ("CtrlNoController", "Controller", "object has no controller: obj:{id}")
    # Finite-domain constraints and nondeterminism
    FD_NOT_IMPLEMENTED = ("FdNotImplemented", "Fd", "FD constraint solver not implemented: {name}")
    NONDET_NOT_IMPLEMENTED = ("NondetNotImplemented", "Nondet", "nondeterminism not implemented: {name}")
    NO_SOLUTION = ("NoSolution", "Nondet", "no choice satisfies the requirements ({tried} combinations tried)")
    SEARCH_LIMIT = ("SearchLimit", "Nondet", "search limit reached: {tried} combinations tried without satisfying the requirements (raise it with --max-search)")
    NOT_SEARCHABLE = ("NotSearchable", "Nondet", "{what} cannot run in a transaction that searches (it has made a choice or is being re-run): its effect could not be undone or repeated")
    # The VM's own errors (not in the spec: the language's checked operations)
    ARITHMETIC = ("ArithmeticError", "Vm", "{detail}")
    TYPE_MISMATCH = ("TypeMismatch", "Vm", "{detail}")
    INDEX_OUT_OF_RANGE = ("IndexOutOfRange", "Vm", "{detail}")
    UNWRAP_NOTHING = ("UnwrapNothing", "Vm", "{detail}")
    FAILED = ("Failed", "Vm", "{detail}")
    FUEL_EXHAUSTED = ("FuelExhausted", "Vm", "out of fuel after {steps} steps")
    DEPTH_EXCEEDED = ("DepthExceeded", "Vm", "call depth limit of {limit} exceeded")
    MEMORY_EXHAUSTED = ("MemoryExhausted", "Vm", "out of memory: {detail}")

    # fmt: on

    @property
    def qualified_name(self) -> str:
        """The name the spec and this project's docs use, e.g. ``ObjNotFound``."""
        return self.value[0]

    @property
    def family(self) -> str:
        return self.value[1]

    @property
    def template(self) -> str:
        return self.value[2]


FATAL_KINDS = frozenset(
    {ErrorKind.FUEL_EXHAUSTED, ErrorKind.DEPTH_EXCEEDED, ErrorKind.MEMORY_EXHAUSTED}
)


class AvmError(Exception):
    """An instruction or VM failure; ``args`` fill the kind's message template."""

    def __init__(self, kind: ErrorKind, **fields: object) -> None:
        self.kind = kind
        self.fields = fields
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """The kind's text; a ``reason`` field, when given, is said after it."""
        shown = {k: render(v) if k == "input" else v for k, v in self.fields.items()}
        text = self.kind.template.format(**shown)
        reason = self.fields.get("reason")
        return text if reason is None else f"{text}: {reason}"

    @property
    def fatal(self) -> bool:
        return self.kind in FATAL_KINDS

    def __repr__(self) -> str:
        return f"AvmError({self.kind.qualified_name}: {self.message})"


def vm_error(kind: ErrorKind, detail: str) -> AvmError:
    """One of the VM's own errors, whose message is free text."""
    return AvmError(kind, detail=detail)


def failed(message: Value) -> AvmError:
    """The error raised by ``fail e`` (the FAIL op): its message is ``str(e)``."""
    from avm_vm.values import to_text

    return AvmError(ErrorKind.FAILED, detail=to_text(message))
