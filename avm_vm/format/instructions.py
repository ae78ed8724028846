"""The AVM instruction set (spec §6.0): one table that every stage reads.

An instruction is what a program performs as an ITree effect. In Tape IR and bytecode it is
the `EFFECT` op's instruction number; in the language it is called by its `source` name
(`create`, `self`, `input`, `sender`, `call!` and `else (err, kind)` have their own syntax). Every instruction has a
fixed arity in the IR: an optional source argument that is left out is passed as `nothing`.

`entropy` and `now` are this project's additions (DESIGN.md §9): randomness and time reach
behaviors only through them, so a node can log and replay them. So are `log` (a trace entry
that changes nothing else), `call_unwrap` (what `call!(o, m)` performs: the answer itself, or
the callee's own failure), and the two an `atomic` block's handler starts with:
`atomic_failed` (abort the block's transaction if it is still open, answer the caught error's
kind) and `rethrow` (fail again with the caught error, when there is no `else`), and
`solutions` (collect every solution of a transaction's search, docs/semantics.md). They come
last, so every older .tape keeps its instruction numbers.
"""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple


class Layer(Enum):
    OBJECT = "object"
    INTROSPECT = "introspect"
    REFLECT = "reflect"
    REIFY = "reify"
    TX = "tx"
    PURE = "pure"
    MACHINE = "machine"
    CONTROLLER = "controller"
    FD = "fd"
    NONDET = "nondet"
    EVENT = "event"


class Instruction(NamedTuple):
    number: int
    name: str  # IR / disassembly name
    spec_name: str  # the name in spec/AVM-SEMANTICS.md
    source: str  # the name a program calls it by
    layer: Layer
    safe: bool
    params: tuple[str, ...]
    optional: int  # how many trailing params may be left out (they default to nothing)
    cfg_name: str  # the name the Mermaid CFG rendering uses (spec §12.7)
    spec_section: str

    @property
    def arity(self) -> int:
        return len(self.params)


# One row per instruction, numbered from 0 in this order. Columns: IR name, spec name,
# source name, layer, safety, parameters (a trailing `?` marks an optional one), the name the
# Mermaid CFG shows (spec §12.7), and the spec section.
_TABLE = """
create_obj          createObj             create              object      safe    behavior,controller?  create_obj   6.1.1
destroy_obj         destroyObj            destroy             object      safe    id                    destroy_obj  6.1.2
call                call                  call                object      safe    id,message            call         6.1.3
receive             receive               receive             object      safe    -                     receive      6.1.4
self                self                  self                introspect  safe    -                     get_self     6.2
input               input                 input               introspect  safe    -                     get_input    6.2
current_machine     getCurrentMachine     current_machine     introspect  safe    -                     get_machine  6.2
get_state           getState              get_state           introspect  safe    -                     get_state    6.2
set_state           setState              set_state           introspect  safe    state                 set_state    6.2
sender              sender                sender              introspect  safe    -                     get_sender   6.2
reflect             reflect               reflect             reflect     unsafe  id                    reflect      6.3
scry_meta           scryMeta              scry_meta           reflect     unsafe  predicate             reflect      6.3
scry_deep           scryDeep              scry_deep           reflect     unsafe  predicate             reflect      6.3
reify_context       reifyContext          reify_context       reify       safe    -                     reify        6.4
reify_tx_state      reifyTxState          reify_tx_state      reify       unsafe  -                     reify        6.4
reify_constraints   reifyConstraints      reify_constraints   reify       unsafe  -                     reify        6.4
begin_tx            beginTx               begin               tx          safe    controller?           begin_tx     8.3
commit_tx           commitTx              commit              tx          safe    tx                    commit_tx    8.6
abort_tx            abortTx               abort               tx          safe    tx                    abort_tx     8.7
call_pure           callPure              call_pure           pure        safe    name,args             call_pure    6.6
register_pure       registerPure          register_pure       pure        unsafe  name,function         call_pure    6.6
update_pure         updatePure            update_pure         pure        safe    name,function         call_pure    6.6
get_machine         getMachine            get_machine         machine     safe    id                    machine      6.7
teleport            teleport              teleport            machine     safe    machine               machine      6.7
move_object         moveObject            move_object         machine     safe    id,machine            machine      6.7
fetch               fetch                 fetch               machine     safe    id                    machine      6.7
current_controller  getCurrentController  current_controller  controller  safe    -                     controller   6.8
get_controller      getController         get_controller      controller  safe    id                    controller   6.8
transfer_object     transferObject        transfer            controller  safe    id,controller         controller   6.8
freeze              freeze                freeze              controller  safe    id                    controller   6.8
new_var             newVar                new_var             fd          safe    domain                fd           6.9
narrow              narrow                narrow              fd          safe    var,domain            fd           6.9
post                post                  post                fd          safe    constraint            fd           6.9
label               label                 label               fd          safe    var                   fd           6.9
choose              choose                choose              nondet      safe    values                nondet       6.10
require             require               require             nondet      safe    constraint            nondet       6.10
entropy             entropy               entropy             event       safe    -                     entropy      DESIGN-9
now                 now                   now                 event       safe    -                     now          DESIGN-9
log                 log                   log                 event       safe    value                 log          DESIGN-9
call_unwrap         call                  call!               object      safe    id,message            call         6.1.3
atomic_failed       atomicFailed          else-caught         tx          safe    tx                    atomic_failed 8.7
rethrow             rethrow               else-rethrow        tx          safe    message               rethrow      8.7
solutions           solutions             solutions           nondet      safe    value                 nondet       6.10
"""


def _parse_table() -> tuple[Instruction, ...]:
    rows = []
    for number, line in enumerate(_TABLE.strip().splitlines()):
        name, spec_name, source, layer, safety, params, cfg_name, section = line.split()
        names = () if params == "-" else tuple(params.split(","))
        rows.append(
            Instruction(
                number=number,
                name=name,
                spec_name=spec_name,
                source=source,
                layer=Layer(layer),
                safe=safety == "safe",
                params=tuple(p.rstrip("?") for p in names),
                optional=sum(p.endswith("?") for p in names),
                cfg_name=cfg_name,
                spec_section=section,
            )
        )
    return tuple(rows)


INSTRUCTIONS: tuple[Instruction, ...] = _parse_table()
BY_NAME: dict[str, Instruction] = {i.name: i for i in INSTRUCTIONS}
BY_SOURCE: dict[str, Instruction] = {i.source: i for i in INSTRUCTIONS}

# Instructions with their own syntax rather than a call: `create Name`, `self`, ...
SYNTAX_INSTRUCTIONS = frozenset(
    {"create", "self", "input", "sender", "call!", "else-caught", "else-rethrow"}
)


def instruction(name: str) -> Instruction:
    """The instruction with IR name ``name``."""
    return BY_NAME[name]
