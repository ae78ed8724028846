"""Behaviors by name and pure functions by name, built from loaded programs (spec §3.2, §6.6).

Each loaded `Program` gets one `Interpreter`; a behavior entry points at that interpreter,
its function and the behavior's code hash. Registering a behavior name twice is a
programming error (the reference panics), so `load` refuses it before changing anything.
Pure functions (kind PURE) are registered at load with version 0; `registerPure` and
`updatePure` change the table at run time, through the journal so a failed callee's
registrations are undone (spec §8.7: they are not transactional).
"""

from __future__ import annotations

from typing import NamedTuple

from avm_vm.format.bytecode import behavior_hash
from avm_vm.format.program import FunctionKind, Program
from avm_vm.runtime.store import Journal
from avm_vm.vm.interpreter import Interpreter


class BehaviorEntry(NamedTuple):
    interpreter: Interpreter
    function: int
    code_hash: bytes


class PureEntry(NamedTuple):
    interpreter: Interpreter
    function: int
    version: int


class RegistryError(Exception):
    """A host-level loading mistake (a behavior name defined twice)."""


class Registry:
    __slots__ = ("behaviors", "journal", "pures")

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.behaviors: dict[str, BehaviorEntry] = {}
        self.pures: dict[str, PureEntry] = {}

    def load(self, program: Program, jit: str = "off", replace: bool = False) -> Interpreter:
        """Register the program's behaviors and pure functions; answers its interpreter.

        With ``replace`` (an upgrade, `avm load`), a behavior of a registered name gets the
        new code; otherwise a registered name is refused. Pure functions of a registered
        name keep their entry either way: `updatePure` is how behaviors change those.
        """
        clashes = [b.name for b in program.behaviors if b.name in self.behaviors]
        if clashes and not replace:
            raise RegistryError(f"behavior already registered: {clashes[0]}")
        interpreter = Interpreter(program, jit)
        interpreter.registry = self  # its VM performs call_pure (vm_translate)
        for behavior in program.behaviors:
            entry = BehaviorEntry(interpreter, behavior.function, behavior_hash(program, behavior))
            self.behaviors[behavior.name] = entry
        for index, function in enumerate(program.functions):
            if function.kind is FunctionKind.PURE and function.name not in self.pures:
                self.pures[function.name] = PureEntry(interpreter, index, 0)
        return interpreter

    def behavior(self, name: str) -> BehaviorEntry | None:
        return self.behaviors.get(name)

    def code_hash(self, name: str) -> bytes | None:
        entry = self.behaviors.get(name)
        return None if entry is None else entry.code_hash

    def pure(self, name: str) -> PureEntry | None:
        return self.pures.get(name)

    def register_pure(self, name: str, interpreter: Interpreter, function: int) -> None:
        self.journal.put(self.pures, name, PureEntry(interpreter, function, 0))

    def update_pure(self, name: str, interpreter: Interpreter, function: int) -> int:
        """Replace a registered function; answers the new version."""
        version = self.pures[name].version + 1
        self.journal.put(self.pures, name, PureEntry(interpreter, function, version))
        return version
