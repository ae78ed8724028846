"""Lower Tape functions to LLVM IR (`llvmlite.ir`), following their `NativePlan`.

Each function ``F`` of a module becomes up to two LLVM functions with the same body:

- ``avm_entry_F`` (exported, the `abi` signature): loads F's native registers from ``regs``,
  switches on ``pc`` to one of F's entries, and on leaving stores them back;
- ``avm_direct_F`` (internal, fastcc), for native-to-native calls: ``(ctx, budget, fuel,
  args...) -> {value, fuel}``. ``budget`` is how many more direct calls may nest; the
  returned fuel has `EXIT_FLAG` set when the callee exited, after writing its frame record
  and its fuel to ``ctx`` (so the hot path never touches memory for either).

The body follows the VM's blocks (`vm_translate.block_starts`): each block is charged its
instruction count on entry (exiting at its start when the fuel cannot pay), and an exit at
``pc`` or a taken conditional jump gives back what the block did not run; a CALL pays its
`call_steps` too (exiting before it when the fuel cannot: the VM then runs it, preempting
the run or borrowing from the reserve as it does), so fuel matches the VM's exactly. Fuel
lives in a local capped at `FUEL_CAP`: the entry function sets any excess aside and adds it
back on leaving, which leaves the top bit free for `EXIT_FLAG`. Registers are allocas,
which LLVM promotes to SSA values.

A native call_pure (`analysis.PureCall`) skips the LOADK of the name and the instruction
making the argument list, and calls the callee's direct function behind the guard `abi`
describes. The VM charges a call_pure `EFFECT_STEPS` and no frame (`call_steps`), and the
bytes of its list and box; so does native code, with the bytes from ``ctx.room``. When the
guard fails or the callee exits, native code forgets the callee's records and exits before
the list instruction with the fuel and room it had there: the VM does the whole call again,
exactly (a pure function does nothing else, and does it the same way every time).
"""

from __future__ import annotations

from collections.abc import Callable

from llvmlite import ir

from avm_vm.format.opcodes import Op, RegType
from avm_vm.format.program import Program
from avm_vm.jit import abi
from avm_vm.jit.analysis import NativePlan
from avm_vm.values import BOX_BYTES, EFFECT_STEPS
from avm_vm.vm.frames import call_steps

I32 = ir.IntType(32)
I64 = ir.IntType(64)
RESULT = ir.LiteralStructType([I64, I64])  # a direct function's (value, fuel)
FUEL_CAP = 1 << 62
EXIT_FLAG = 1 << 63
RECORD_HEADER = 3  # function index, pc, nregs
# Direct calls nested per entry, whatever ctx.depth_left says, so that native recursion stays
# far from the end of any thread's stack (a native frame takes well under 200 bytes).
MAX_NESTING = 10_000

# JitContext fields, in abi order.
_FIELDS = [name for name, _ in abi.JitContext._fields_]
_ARITH = {Op.ADD: "uadd", Op.SUB: "usub", Op.MUL: "umul"}
_DIVIDE = {Op.DIV: "udiv", Op.MOD: "urem"}
_COMPARE = {Op.EQ: "==", Op.NE: "!=", Op.LT: "<", Op.LE: "<=", Op.GT: ">", Op.GE: ">="}


def direct_name(function_index: int) -> str:
    return f"avm_direct_{function_index}"


def module_functions(plans: dict[int, NativePlan], roots: list[int]) -> list[int]:
    """The roots and every function they reach through direct calls, in discovery order."""
    order = [root for root in dict.fromkeys(roots) if root in plans]
    for f in order:  # grows while walking
        plan = plans[f]
        for callee in sorted(plan.direct_callees):
            if callee not in order:
                order.append(callee)
    return order


def llvm_module(program: Program, plans: dict[int, NativePlan], roots: list[int]) -> ir.Module:
    """The LLVM module for ``roots`` (and their direct callees), unoptimised."""
    return _Lowering(program, plans, roots).module


class _Lowering:
    def __init__(self, program: Program, plans: dict[int, NativePlan], roots: list[int]):
        self.program = program
        self.plans = plans
        self.functions = module_functions(plans, roots)
        context = ir.Context()
        self.module = ir.Module(name=program.source_name, context=context)
        self.module.triple = ""  # the engine sets the host's
        self.ctx_type = context.get_identified_type("JitContext")
        self.ctx_type.set_body(
            *(I64.as_pointer() if name == "records" else I64 for name in _FIELDS)
        )
        self.ctx_ptr = self.ctx_type.as_pointer()
        self.max_nregs = max((program.functions[f].nregs for f in self.functions), default=0)
        self.unlikely = self.module.add_metadata(
            ["branch_weights", ir.Constant(I32, 1), ir.Constant(I32, 1 << 20)]
        )
        self.direct: dict[int, ir.Function] = {}
        for f in self.functions:
            if plans[f].direct:
                self.direct[f] = self.declare_direct(f)
        self.records_end = self.define_records_end()
        for f in self.functions:
            _Body(self, f, direct=False).emit()
            if f in self.direct:
                _Body(self, f, direct=True).emit()

    def declare_direct(self, f: int) -> ir.Function:
        nparams = self.program.functions[f].nparams
        kind = ir.FunctionType(RESULT, [self.ctx_ptr, I64, I64, *[I64] * nparams])
        function = ir.Function(self.module, kind, direct_name(f))
        function.linkage = "internal"
        function.calling_convention = "fastcc"
        function.attributes.add("nounwind")
        return function

    def define_records_end(self) -> ir.Function:
        """``avm_records_end(ctx)``: the word offset after the records written so far (only
        exits call it, so walking the records is fine)."""
        kind = ir.FunctionType(I64, [self.ctx_ptr])
        function = ir.Function(self.module, kind, "avm_records_end")
        function.linkage = "internal"
        function.attributes.add("nounwind")
        function.attributes.add("noinline")
        function.attributes.add("cold")
        (ctx,) = function.args
        builder = ir.IRBuilder(function.append_basic_block("start"))
        loop = function.append_basic_block("loop")
        step = function.append_basic_block("step")
        done = function.append_basic_block("done")
        count = builder.load(field(builder, ctx, "nrecords"), "count")
        records = builder.load(field(builder, ctx, "records"), "records")
        builder.branch(loop)
        builder.position_at_end(loop)
        index = builder.phi(I64, "index")
        offset = builder.phi(I64, "offset")
        index.add_incoming(ir.Constant(I64, 0), function.entry_basic_block)
        offset.add_incoming(ir.Constant(I64, 0), function.entry_basic_block)
        builder.cbranch(builder.icmp_unsigned("<", index, count), step, done)
        builder.position_at_end(step)
        size_at = builder.add(offset, ir.Constant(I64, 2))
        size = builder.load(builder.gep(records, [size_at]), "nregs")
        following = builder.add(builder.add(offset, size), ir.Constant(I64, RECORD_HEADER))
        next_index = builder.add(index, ir.Constant(I64, 1))
        index.add_incoming(next_index, step)
        offset.add_incoming(following, step)
        builder.branch(loop)
        builder.position_at_end(done)
        builder.ret(offset)
        return function


def field(builder: ir.IRBuilder, ctx: ir.Value, name: str) -> ir.Value:
    """A pointer to the named JitContext field."""
    index = _FIELDS.index(name)
    return builder.gep(ctx, [ir.Constant(I32, 0), ir.Constant(I32, index)], name=f"ctx.{name}")


class _Body:
    """One LLVM function for one Tape function: the entry (``direct=False``) or direct form."""

    def __init__(self, lowering: _Lowering, f: int, direct: bool) -> None:
        self.lowering = lowering
        self.f = f
        self.plan = lowering.plans[f]
        self.function = lowering.program.functions[f]
        self.code = self.function.code
        self.is_direct = direct
        if direct:
            self.llvm = lowering.direct[f]
        else:
            kind = ir.FunctionType(I32, [lowering.ctx_ptr, I64.as_pointer(), I64])
            self.llvm = ir.Function(lowering.module, kind, abi.entry_name(f))
            self.llvm.attributes.add("nounwind")
        self.ctx = self.llvm.args[0]
        self.ctx.name = "ctx"
        self.builder = ir.IRBuilder(self.llvm.append_basic_block("start"))
        self.blocks = {
            start: self.llvm.append_basic_block(f"pc{start}") for start, _ in self.plan.blocks
        }
        self.exit_block = self.llvm.append_basic_block("exit")
        self.native_regs = [r for r, t in enumerate(self.plan.reg_types) if t is not None]
        # The LOADK of a native call_pure's name and its list instruction: nothing to run.
        self.skipped = {
            pc for e, call in self.plan.pure_calls.items() for pc in (call.name_pc, e - 1)
        }

    # -- helpers

    def const(self, value: int) -> ir.Constant:
        return ir.Constant(I64, value)

    def load(self, register: int) -> ir.Value:
        return self.builder.load(self.regs[register], name=f"r{register}")

    def store(self, register: int, value: ir.Value) -> None:
        self.builder.store(value, self.regs[register])

    def fuel(self) -> ir.Value:
        return self.builder.load(self.fuel_slot, name="fuel")

    def unlikely_branch(self, condition: ir.Value, cold: ir.Block, hot: ir.Block) -> None:
        branch = self.builder.cbranch(condition, cold, hot)
        branch.set_metadata("prof", self.lowering.unlikely)

    def exit_here(self, pc: int | ir.Value, refund: int) -> None:
        """Leave native code before ``pc``, giving back ``refund`` units of fuel."""
        if refund:
            self.builder.store(self.builder.add(self.fuel(), self.const(refund)), self.fuel_slot)
        self.builder.store(pc if isinstance(pc, ir.Value) else self.const(pc), self.exit_pc)
        self.builder.branch(self.exit_block)

    def exit_if(self, condition: ir.Value, pc: int, refund: int, name: str) -> None:
        """Exit (as `exit_here`) when ``condition`` holds; go on in a new block otherwise."""
        cold = self.llvm.append_basic_block(f"pc{pc}.{name}")
        hot = self.llvm.append_basic_block(f"pc{pc}.ok")
        self.unlikely_branch(condition, cold, hot)
        self.builder.position_at_end(cold)
        self.exit_here(pc, refund)
        self.builder.position_at_end(hot)

    # -- the function

    def emit(self) -> None:
        builder = self.builder
        self.regs = {r: builder.alloca(I64, name=f"r{r}") for r in self.native_regs}
        self.fuel_slot = builder.alloca(I64, name="fuel.slot")
        self.exit_pc = builder.alloca(I64, name="exit.pc")
        if self.is_direct:
            self.prologue_direct()
        else:
            self.prologue_entry()
        for start, end in self.plan.blocks:
            builder.position_at_end(self.blocks[start])
            self.emit_block(start, end)
        builder.position_at_end(self.exit_block)
        if self.is_direct:
            self.epilogue_direct()
        else:
            self.epilogue_entry()

    def prologue_entry(self) -> None:
        builder = self.builder
        _, regs, pc = self.llvm.args
        regs.name, pc.name = "regs", "pc"
        self.regs_arg = regs
        fuel = builder.load(field(builder, self.ctx, "fuel"), name="fuel.in")
        over = builder.icmp_unsigned(">", fuel, self.const(FUEL_CAP))
        self.excess = builder.select(
            over, builder.sub(fuel, self.const(FUEL_CAP)), self.const(0), name="excess"
        )
        builder.store(builder.sub(fuel, self.excess), self.fuel_slot)
        # One record per nested direct call must fit in the buffer; MAX_NESTING bounds the
        # native stack.
        depth_left = builder.load(field(builder, self.ctx, "depth_left"), name="depth_left")
        capacity = builder.load(field(builder, self.ctx, "records_cap"), name="records_cap")
        fits = builder.udiv(capacity, self.const(RECORD_HEADER + self.lowering.max_nregs))
        budget = self.const(MAX_NESTING)
        for limit in (fits, depth_left):
            smaller = builder.icmp_unsigned("<", limit, budget)
            budget = builder.select(smaller, limit, budget)
        self.budget = budget
        builder.store(self.const(0), field(builder, self.ctx, "nrecords"))
        for r in self.native_regs:
            slot = builder.gep(regs, [self.const(r)])
            self.store(r, builder.load(slot, name=f"r{r}.in"))
        unknown = self.llvm.append_basic_block("unknown_pc")
        switch = builder.switch(pc, unknown)
        for start in self.plan.entries:
            switch.add_case(self.const(start), self.blocks[start])
        builder.position_at_end(unknown)
        self.exit_here(pc, 0)

    def prologue_direct(self) -> None:
        _, budget, fuel, *params = self.llvm.args
        budget.name, fuel.name = "budget", "fuel.in"
        self.budget = budget
        self.builder.store(fuel, self.fuel_slot)
        for r in self.native_regs:
            is_param = r < len(params)
            if is_param:
                params[r].name = f"arg{r}"
            self.store(r, params[r] if is_param else self.const(0))
        self.builder.branch(self.blocks[0])

    def write_back(self) -> None:
        """Store the native registers into ``regs`` (the entry frame's slots)."""
        for r in self.native_regs:
            self.builder.store(self.load(r), self.builder.gep(self.regs_arg, [self.const(r)]))

    def leave_entry(self, status: int) -> None:
        builder = self.builder
        self.write_back()
        fuel = builder.add(self.fuel(), self.excess)
        builder.store(fuel, field(builder, self.ctx, "fuel"))
        builder.ret(ir.Constant(I32, status))

    def epilogue_entry(self) -> None:
        builder = self.builder
        builder.store(builder.load(self.exit_pc), field(builder, self.ctx, "pc"))
        self.leave_entry(abi.EXITED)

    def epilogue_direct(self) -> None:
        """Append this frame's record (see `abi`), publish the fuel and report the exit."""
        builder = self.builder
        offset = builder.call(self.lowering.records_end, [self.ctx], name="offset")
        records = builder.load(field(builder, self.ctx, "records"), name="records")
        words = [
            self.const(self.f),
            builder.load(self.exit_pc),
            self.const(self.function.nregs),
            *(
                self.load(r) if r in self.regs else self.const(0)
                for r in range(self.function.nregs)
            ),
        ]
        for position, word in enumerate(words):
            at = builder.add(offset, self.const(position))
            builder.store(word, builder.gep(records, [at]))
        count = field(builder, self.ctx, "nrecords")
        builder.store(builder.add(builder.load(count), self.const(1)), count)
        builder.store(self.fuel(), field(builder, self.ctx, "fuel"))
        self.builder.ret(ir.Constant(RESULT, [0, EXIT_FLAG]))

    # -- blocks and instructions

    def emit_block(self, start: int, end: int) -> None:
        builder = self.builder
        if start not in self.plan.native:
            self.exit_here(start, 0)
            return
        count = end - start
        short = builder.icmp_unsigned("<", self.fuel(), self.const(count))
        self.exit_if(short, start, 0, "no_fuel")
        builder.store(builder.sub(self.fuel(), self.const(count)), self.fuel_slot)
        for pc in range(start, end):
            if pc not in self.plan.native:
                self.exit_here(pc, end - pc)
                return
            if pc in self.skipped:
                continue
            op, *operands = self.code[pc]
            emitter: Callable[..., None] = getattr(self, f"op_{op.name.lower()}")
            emitter(pc, end, *operands)
        if not builder.block.is_terminated:
            if end >= len(self.code):
                raise ValueError(f"{self.function.name}: code runs off its end at {end}")
            builder.branch(self.blocks[end])

    def op_move(self, pc: int, end: int, a: int, b: int) -> None:
        self.store(a, self.load(b))

    def op_loadk(self, pc: int, end: int, a: int, k: int) -> None:
        self.store(a, self.const(int(self.lowering.program.constants[k])))

    def arith(self, pc: int, end: int, op: Op, a: int, b: int, c: int) -> None:
        """Checked nat arithmetic: on overflow, underflow or a zero divisor, exit before
        the instruction so the VM raises the error with its message."""
        builder = self.builder
        x, y = self.load(b), self.load(c)
        if op in _ARITH:
            pair = getattr(builder, f"{_ARITH[op]}_with_overflow")(x, y)
            self.exit_if(builder.extract_value(pair, 1), pc, end - pc, "overflow")
            self.store(a, builder.extract_value(pair, 0, name=f"r{a}"))
        else:
            self.exit_if(builder.icmp_unsigned("==", y, self.const(0)), pc, end - pc, "zero")
            self.store(a, getattr(builder, _DIVIDE[op])(x, y, name=f"r{a}"))

    def op_add(self, pc: int, end: int, a: int, b: int, c: int) -> None:
        self.arith(pc, end, Op.ADD, a, b, c)

    def op_sub(self, pc: int, end: int, a: int, b: int, c: int) -> None:
        self.arith(pc, end, Op.SUB, a, b, c)

    def op_mul(self, pc: int, end: int, a: int, b: int, c: int) -> None:
        self.arith(pc, end, Op.MUL, a, b, c)

    def op_div(self, pc: int, end: int, a: int, b: int, c: int) -> None:
        self.arith(pc, end, Op.DIV, a, b, c)

    def op_mod(self, pc: int, end: int, a: int, b: int, c: int) -> None:
        self.arith(pc, end, Op.MOD, a, b, c)

    def compare(self, op: Op, a: int, b: int, c: int) -> None:
        types = self.plan.reg_types
        if op in (Op.EQ, Op.NE) and types[b] != types[c]:
            self.store(a, self.const(int(op is Op.NE)))  # a nat never equals a bool
            return
        test = self.builder.icmp_unsigned(_COMPARE[op], self.load(b), self.load(c))
        self.store(a, self.builder.zext(test, I64, name=f"r{a}"))

    def op_eq(self, pc: int, end: int, a: int, b: int, c: int) -> None:
        self.compare(Op.EQ, a, b, c)

    def op_ne(self, pc: int, end: int, a: int, b: int, c: int) -> None:
        self.compare(Op.NE, a, b, c)

    def op_lt(self, pc: int, end: int, a: int, b: int, c: int) -> None:
        self.compare(Op.LT, a, b, c)

    def op_le(self, pc: int, end: int, a: int, b: int, c: int) -> None:
        self.compare(Op.LE, a, b, c)

    def op_gt(self, pc: int, end: int, a: int, b: int, c: int) -> None:
        self.compare(Op.GT, a, b, c)

    def op_ge(self, pc: int, end: int, a: int, b: int, c: int) -> None:
        self.compare(Op.GE, a, b, c)

    def op_not(self, pc: int, end: int, a: int, b: int) -> None:
        self.store(a, self.builder.xor(self.load(b), self.const(1), name=f"r{a}"))

    def op_jmp(self, pc: int, end: int, target: int) -> None:
        self.builder.branch(self.blocks[target])

    def conditional(self, pc: int, end: int, a: int, target: int, when: bool) -> None:
        """Jump to ``target`` when R[a] is ``when``, giving back the rest of the block."""
        builder = self.builder
        truth = builder.icmp_unsigned("!=", self.load(a), self.const(0))
        taken = self.llvm.append_basic_block(f"pc{pc}.taken")
        fall = self.llvm.append_basic_block(f"pc{pc}.fall")
        if when:
            builder.cbranch(truth, taken, fall)
        else:
            builder.cbranch(truth, fall, taken)
        builder.position_at_end(taken)
        if end - pc > 1:
            builder.store(builder.add(self.fuel(), self.const(end - pc - 1)), self.fuel_slot)
        builder.branch(self.blocks[target])
        builder.position_at_end(fall)

    def op_jmpt(self, pc: int, end: int, a: int, target: int) -> None:
        self.conditional(pc, end, a, target, True)

    def op_jmpf(self, pc: int, end: int, a: int, target: int) -> None:
        self.conditional(pc, end, a, target, False)

    def op_call(self, pc: int, end: int, a: int, callee: int, args: tuple[int, ...]) -> None:
        """A direct call: exit before it when the nesting budget is spent; after it, when
        the callee exited, suspend this frame after the CALL as well."""
        builder = self.builder
        self.exit_if(builder.icmp_unsigned("==", self.budget, self.const(0)), pc, end - pc, "deep")
        steps = call_steps(self.lowering.program.functions[callee])
        if steps:
            short = builder.icmp_unsigned("<", self.fuel(), self.const(steps))
            self.exit_if(short, pc, end - pc, "call_fuel")
            builder.store(builder.sub(self.fuel(), self.const(steps)), self.fuel_slot)

        def exited() -> None:  # suspended after the CALL, with the fuel the callee left
            builder.store(builder.load(field(builder, self.ctx, "fuel")), self.fuel_slot)
            self.exit_here(pc + 1, 0)

        values = [self.load(r) for r in args]
        self.call_direct(pc, a, callee, self.fuel(), values, exited)

    def call_direct(
        self,
        pc: int,
        a: int,
        callee: int,
        fuel: ir.Value,
        values: list[ir.Value],
        exited: Callable[[], None],
    ) -> None:
        """Call ``callee``'s direct function one nesting level down with ``fuel``; when it
        exited, ``exited`` emits what follows, else its value goes to R[a] and its fuel
        to the counter."""
        builder = self.builder
        budget = builder.sub(self.budget, self.const(1), name="budget.callee")
        result = builder.call(
            self.lowering.direct[callee],
            [self.ctx, budget, fuel, *values],
            name=f"call{pc}",
            cconv="fastcc",
        )
        back = builder.extract_value(result, 1, name="fuel.back")
        cold = self.llvm.append_basic_block(f"pc{pc}.exited")
        hot = self.llvm.append_basic_block(f"pc{pc}.returned")
        self.unlikely_branch(builder.icmp_unsigned(">=", back, self.const(EXIT_FLAG)), cold, hot)
        builder.position_at_end(cold)
        exited()
        builder.position_at_end(hot)
        builder.store(back, self.fuel_slot)
        self.store(a, builder.extract_value(result, 0, name=f"r{a}"))

    def op_effect(self, pc: int, end: int, a: int, instruction: int, args: tuple) -> None:
        """A native call_pure (see the module docstring); only those run natively."""
        builder = self.builder
        call = self.plan.pure_calls[pc]
        redo = pc - 1  # where the VM takes the call_pure over: its list instruction
        need = self.const(call.list_bytes + BOX_BYTES)
        bits = builder.load(field(builder, self.ctx, "pures"), name="pures")
        bit = builder.and_(builder.lshr(bits, self.const(call.binding)), self.const(1))
        room = builder.load(field(builder, self.ctx, "room"), name="room")
        refused = [
            builder.icmp_unsigned("==", bit, self.const(0)),
            builder.icmp_unsigned("<", self.fuel(), self.const(EFFECT_STEPS)),
            builder.icmp_unsigned("<", room, need),
            builder.icmp_unsigned("==", self.budget, self.const(0)),
        ]
        refuse = refused[0]
        for test in refused[1:]:
            refuse = builder.or_(refuse, test)
        self.exit_if(refuse, redo, end - redo, "pure_refused")
        if call.constant:
            values = [self.const(int(value)) for value in call.args]
        else:
            values = [self.load(r) for r in call.args]

        def exited() -> None:  # forget the callee's records; the fuel slot is as before
            builder.store(self.const(0), field(builder, self.ctx, "nrecords"))
            self.exit_here(redo, end - redo)

        fuel = builder.sub(self.fuel(), self.const(EFFECT_STEPS))
        self.call_direct(pc, a, call.callee, fuel, values, exited)
        builder.store(builder.sub(room, need), field(builder, self.ctx, "room"))

    def op_ret(self, pc: int, end: int, a: int) -> None:
        builder = self.builder
        value = self.load(a)
        if self.is_direct:
            result = builder.insert_value(ir.Constant(RESULT, ir.Undefined), value, 0)
            builder.ret(builder.insert_value(result, self.fuel(), 1))
            return
        builder.store(value, field(builder, self.ctx, "ret"))
        kind = self.plan.reg_types[a]
        assert kind is not None  # RET runs natively only on a native register
        builder.store(self.const(int(RegType(kind))), field(builder, self.ctx, "ret_type"))
        self.leave_entry(abi.RETURNED)
