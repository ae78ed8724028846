"""The behavior and pure-function registry (spec §3.2, §6.6) and the handler table."""

from __future__ import annotations

import pytest

from avm_vm.format.bytecode import behavior_hash
from avm_vm.format.instructions import INSTRUCTIONS
from avm_vm.runtime.core import Runtime, RuntimeOptions
from avm_vm.runtime.handlers import handler_table
from avm_vm.runtime.registry import RegistryError
from avmc.compiler import compile_source

SOURCE = """
behavior A { on _ { return 1 } }
behavior B { on _ { return 2 } }
fn f(x) { return x }
main { return 0 }
"""


def test_behaviors_are_registered_with_their_code_hash():
    program = compile_source(SOURCE, "reg.avm")
    runtime = Runtime(program)
    for behavior in program.behaviors:
        entry = runtime.registry.behavior(behavior.name)
        assert entry.code_hash == behavior_hash(program, behavior)
        assert entry.function == behavior.function
    assert runtime.registry.behavior("C") is None
    assert runtime.registry.code_hash("C") is None


def test_pure_functions_start_at_version_0():
    runtime = Runtime(compile_source(SOURCE, "reg.avm"))
    entry = runtime.registry.pure("f")
    assert entry.version == 0 and runtime.registry.pure("main") is None


def test_registering_a_behavior_name_twice_is_refused_without_change():
    """§3.2: a second registration of a name is a programming error."""
    runtime = Runtime(compile_source(SOURCE, "reg.avm"))
    clash = compile_source(
        "behavior B { on _ { return 3 } } behavior Z { on _ { return 4 } }", "x.avm"
    )
    with pytest.raises(RegistryError, match="behavior already registered: B"):
        runtime.load(clash)
    assert runtime.registry.behavior("Z") is None


def test_several_programs_share_one_runtime():
    runtime = Runtime(compile_source(SOURCE, "reg.avm"))
    other = compile_source("extern behavior A\nmain { return call(create A, 0) }", "other.avm")
    runtime.load(other)
    assert runtime.run_main(other) == runtime.run_main(other)
    assert runtime.store.ids() == [0, 1]


def test_handler_table_covers_every_instruction_in_both_profiles():
    for profile in ("ours", "r"):
        table = handler_table(profile)
        assert len(table) == len(INSTRUCTIONS) and all(callable(h) for h in table)
    assert handler_table("ours")[3] is not handler_table("r")[3]  # receive differs


def test_unknown_profile_is_refused():
    with pytest.raises(ValueError):
        Runtime(options=RuntimeOptions(profile="x"))


def test_run_main_without_main_is_refused():
    with pytest.raises(ValueError, match="no program with a main"):
        Runtime(compile_source("fn f(x) { return x }", "lib.avm")).run_main()
