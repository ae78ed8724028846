"""Compile lowered modules to native code for the host CPU and load them with MCJIT.

`JitEngine.compile` lowers a group of functions (`lower.llvm_module`), optimises the module
with LLVM's new pass manager at O3, emits an object file for the host CPU, and loads that
object into an MCJIT execution engine of its own (every module exports the same entry
names, so modules do not share an engine). The object file is what the disk cache keeps, so
a cache hit skips LLVM's optimiser and code generator entirely and goes the same way from
there. A `NativeModule` holds everything the code needs alive.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import llvmlite
import llvmlite.binding as llvm

from avm_vm.format.bytecode import code_hash
from avm_vm.format.program import Program
from avm_vm.jit import abi, analysis, lower
from avm_vm.jit.analysis import NativePlan, PureCall, plan_program, pure_bindings
from avm_vm.jit.cache import ObjectCache, default_cache_dir
from avm_vm.jit.lower import llvm_module, module_functions

__all__ = ["JitEngine", "NativeModule", "default_cache_dir", "llvm_ir_text"]

SPEED_LEVEL = 3

_initialized = False


def _initialize_llvm() -> None:
    """Once per process. (llvmlite 0.50's ``llvm.initialize()`` raises: not needed.)"""
    global _initialized
    if not _initialized:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        _initialized = True


def host_target_machine() -> llvm.TargetMachine:
    _initialize_llvm()
    target = llvm.Target.from_triple(llvm.get_process_triple())
    return target.create_target_machine(
        cpu=llvm.get_host_cpu_name(),
        features=llvm.get_host_cpu_features().flatten(),
        opt=SPEED_LEVEL,
        jit=True,
    )


def optimise(module: llvm.ModuleRef, machine: llvm.TargetMachine) -> None:
    """Run LLVM's default O3 module pipeline in place."""
    options = llvm.create_pipeline_tuning_options(speed_level=SPEED_LEVEL)
    builder = llvm.create_pass_builder(machine, options)
    builder.getModulePassManager().run(module, builder)


def parse(text: str, machine: llvm.TargetMachine) -> llvm.ModuleRef:
    module = llvm.parse_assembly(text)
    module.triple = machine.triple
    module.data_layout = str(machine.target_data)
    module.verify()
    return module


@functools.cache
def generator_digest() -> bytes:
    """sha256 of the modules that decide what code a program becomes, so a cache entry from
    an older JIT is never taken for a current one."""
    digest = hashlib.sha256()
    for module in (abi, analysis, lower, sys.modules[__name__]):
        digest.update(Path(module.__file__ or "").read_bytes())
    return digest.digest()


@dataclass
class NativeModule:
    """Native code for some functions of a program, callable through ctypes."""

    functions: tuple[int, ...]  # the function indices with an exported entry
    seconds: float  # time to compile (or to load from the cache)
    from_cache: bool
    max_nregs: int  # the largest register count of these functions (sizes record buffers)
    pure_bindings: tuple[PureCall, ...]  # what its native call_pures test (`abi`), by bit
    _entries: dict[int, ctypes._CFuncPtr] = field(repr=False)
    _keep: tuple[object, ...] = field(repr=False)  # the engine: freeing it frees the code

    def entry(self, function_index: int) -> ctypes._CFuncPtr:
        """The `abi.ENTRY_TYPE` entry of a compiled function."""
        return self._entries[function_index]


class JitEngine:
    """Compiles groups of functions to native code, with an optional disk cache."""

    def __init__(self, cache_dir: Path | None) -> None:
        self.machine = host_target_machine()
        self.cache = ObjectCache(cache_dir) if cache_dir is not None else None

    def cache_key(
        self, program: Program, plans: dict[int, NativePlan], functions: list[int]
    ) -> str:
        """Everything the object code depends on: the JIT's own code, the llvmlite version,
        the host, the functions' code and their plans."""
        digest = hashlib.sha256(generator_digest())
        host = (llvm.get_process_triple(), llvm.get_host_cpu_name())
        for part in (llvmlite.__version__, *host):
            digest.update(f"{part}\0".encode())
        digest.update(llvm.get_host_cpu_features().flatten().encode() + b"\0")
        for f in functions:  # the roots come first, in order
            digest.update(code_hash(program, f))
            digest.update(repr(plans[f]).encode())
        return digest.hexdigest()

    def object_code(
        self, program: Program, plans: dict[int, NativePlan], roots: list[int]
    ) -> bytes:
        module = parse(str(llvm_module(program, plans, roots)), self.machine)
        optimise(module, self.machine)
        return self.machine.emit_object(module)

    def compile(
        self, program: Program, plans: dict[int, NativePlan], roots: list[int]
    ) -> NativeModule:
        """Native code for ``roots`` (functions with a plan) and their direct callees."""
        began = time.perf_counter()
        functions = module_functions(plans, roots)
        if not functions:
            raise ValueError("none of the functions to compile has a native plan")
        key = self.cache_key(program, plans, functions)
        payload = self.cache.load(key) if self.cache is not None else None
        from_cache = payload is not None
        if payload is None:
            payload = self.object_code(program, plans, roots)
            if self.cache is not None:
                self.cache.store(key, payload)
        # The execution engine takes ownership of (and frees) the machine it is given.
        engine = llvm.create_mcjit_compiler(parse("", self.machine), host_target_machine())
        engine.add_object_file(llvm.ObjectFileRef.from_data(payload))
        engine.finalize_object()
        entries = {
            f: abi.ENTRY_TYPE(engine.get_function_address(abi.entry_name(f))) for f in functions
        }
        return NativeModule(
            functions=tuple(functions),
            seconds=time.perf_counter() - began,
            from_cache=from_cache,
            max_nregs=max(program.functions[f].nregs for f in functions),
            pure_bindings=pure_bindings(plans, functions),
            _entries=entries,
            _keep=(engine,),
        )


def llvm_ir_text(program: Program, function_index: int, optimised: bool = False) -> str:
    """The LLVM IR of the module for one function (and its direct callees), for reading."""
    plans = plan_program(program)
    if function_index not in plans:
        name = program.functions[function_index].name
        raise ValueError(f"function {name} has no native code: no block starts natively")
    module = llvm_module(program, plans, [function_index])
    if not optimised:
        return str(module)
    machine = host_target_machine()
    parsed = parse(str(module), machine)
    optimise(parsed, machine)
    return str(parsed)
