"""The contract between native code and the VM: the context block and the entry function.

Native code for a Tape function ``F`` is reached through one exported symbol,
``entry_name(F)``, with the C signature::

    int32_t entry(JitContext *ctx, uint64_t *regs, uint64_t pc);

``regs`` has one slot per register of ``F``. The slots of F's *native* registers (those
the analysis types NAT or BOOL: a nat is its u64 value, a bool is 0 or 1) are read at entry
and written back before every return; the other slots are never touched. ``pc`` is one of
F's native entry points (a block start the analysis marks enterable).

The entry returns one of the statuses below.

``RETURNED``: F executed a RET of a native register. ``ctx.ret`` holds the value and
``ctx.ret_type`` its `RegType` (NAT or BOOL).

``EXITED``: native code stopped *before* executing an instruction it does not run natively
(an op on a non-native register, an EFFECT other than a guarded ``call_pure``, a CALL of a
non-native callee, any op that would fail, a block the fuel cannot pay for, a direct call
deeper than ``ctx.depth_left``). The VM takes over from there, one instruction at a time.
When the exit happened inside direct native calls, ``ctx.nrecords`` records describe those
callee frames, innermost first, in ``ctx.records`` (u64 words): ``function index, pc,
nregs`` then ``nregs`` register slots (non-native slots hold 0). The entry frame's own
registers are in ``regs`` and its pc in ``ctx.pc``. The innermost frame (the last record, or
the entry frame when there is none) stopped before its pc; every outer frame is suspended
after its CALL (pc = the CALL's index + 1), and its callee's value goes to the CALL's A.

Fuel: ``ctx.fuel`` is read at entry and written back before every return, with exactly
the value the VM would have after executing the same instructions: one unit per executed
instruction; the instruction at an exit's pc is not charged. (Native code may charge a
block on entry as the VM does, refunding what it did not run.)

Depth: the entry frame is at native depth 0; a direct native call from depth d is made
only when ``d + 1 <= ctx.depth_left``, otherwise the frame exits before the CALL.

``call_pure(NAME, [args...])`` with a constant NAME runs as a direct call of the function
NAME is bound to at load (`analysis.PureCall`) when bit ``binding`` of ``ctx.pures`` is set
(the VM sets it before entry when the registry still binds NAME to that function of this
program), the fuel pays the instruction's `EFFECT_STEPS` and ``ctx.room`` (in/out: the
bytes of values the run may still build, capped to a u64) pays for the argument list and
the instruction's box. Otherwise, or when the callee exits, native code exits before the
instruction building the argument list, with the fuel and ``ctx.room`` as they were there
and no record of the callee: the VM then performs the whole call_pure itself. The name's
register is not written by native code; the VM fills it in when a frame stops between the
LOADK of the name and the call (`native.Layout`).
"""

from __future__ import annotations

import ctypes

RETURNED = 0
EXITED = 1


class JitContext(ctypes.Structure):
    _fields_ = [
        ("fuel", ctypes.c_uint64),  # in/out: fuel remaining
        ("depth_left", ctypes.c_uint64),  # in: nested direct native calls allowed
        ("pc", ctypes.c_uint64),  # out (EXITED): the entry frame's pc
        ("ret", ctypes.c_uint64),  # out (RETURNED): the value
        ("ret_type", ctypes.c_uint64),  # out (RETURNED): RegType.NAT or RegType.BOOL
        ("nrecords", ctypes.c_uint64),  # out (EXITED): callee frame records written
        ("records", ctypes.POINTER(ctypes.c_uint64)),  # in: the record buffer
        ("records_cap", ctypes.c_uint64),  # in: its size in u64 words
        ("pures", ctypes.c_uint64),  # in: bit k set when call_pure binding k holds
        ("room", ctypes.c_uint64),  # in/out: bytes of values the run may still build
    ]


ENTRY_TYPE = ctypes.CFUNCTYPE(
    ctypes.c_int32, ctypes.POINTER(JitContext), ctypes.POINTER(ctypes.c_uint64), ctypes.c_uint64
)


def entry_name(function_index: int) -> str:
    """The exported symbol of a function's native entry."""
    return f"avm_entry_{function_index}"
