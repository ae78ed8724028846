"""Resource bombs (issue 16, "No input wedges a process"): memory is a budget of the run
like fuel, every failure inside a run leaves the runtime usable, a logged call that failed
replays to the same failure, and fuel bounds time on every instruction (docs/semantics.md,
"Resource limits").

Each test failed before: the bombs ran out of memory or took seconds per handful of steps,
a `MemoryError` left the runtime refusing every later run ("a run is executing"), and fuel
counted `append` of a long list the same as `append` of an empty one.
"""

from __future__ import annotations

import pytest
from node_harness import Nodes, NodeStartError, Session, compile_tape

from avm_vm.errors import ErrorKind
from avm_vm.node.client import ClientError
from avm_vm.runtime.core import RunError, Runtime, RuntimeOptions
from avm_vm.values import SIZE_UNIT, WALK_STEPS, Just
from avmc.compiler import compile_source

DOUBLING = 'main { let s = "ab" while true { s = s ++ s } }'


def run(source: str, **options: object) -> tuple[Runtime, object]:
    """The runtime and main's value, or the `RunError` it failed with (fuel: a bound on
    how long a test that fails may take)."""
    options = {"record_trace": False, "fuel": 50_000_000, **options}
    runtime = Runtime(compile_source(source, "test.avm"), RuntimeOptions(**options))  # type: ignore[arg-type]
    try:
        return runtime, runtime.run_main()
    except RunError as failure:
        return runtime, failure


def failure_kind(outcome: object) -> ErrorKind:
    assert isinstance(outcome, RunError), f"main returned {outcome!r}"
    return outcome.error.kind


# ---------------------------------------------------------------------------- memory


def test_doubling_a_string_stops_at_the_value_budget() -> None:
    """`s = s ++ s` used to take all memory within 100 steps; now the run stops once the
    values it built pass --max-value-bytes, wherever that is."""
    runtime, outcome = run(DOUBLING, max_value_bytes=1 << 20)
    assert failure_kind(outcome) is ErrorKind.MEMORY_EXHAUSTED
    assert "more than 1048576 bytes of values" in str(outcome)
    assert runtime.fuel.used < 100 + 2 * (1 << 20) // SIZE_UNIT  # ~20 doublings


@pytest.mark.parametrize(
    "build",
    [
        "xs = append(xs, 1)",  # one list, copied each time
        "xs = [xs, xs]",  # a shared structure: small, but every box counts
        "xs = (xs, 1)",
        "ys = str(i)",  # garbage: built bytes count, whether or not they are kept
    ],
)
def test_every_value_built_counts(build: str) -> None:
    loop = f"while len(ys) < 100 {{ {build}; i += 1 }} return [xs, ys]"
    source = f'main {{ let xs = [] let ys = "" let i = 0 {loop} }}'
    runtime, outcome = run(source, max_value_bytes=1 << 20)
    assert failure_kind(outcome) is ErrorKind.MEMORY_EXHAUSTED
    assert runtime.fuel.room < 0


def test_the_budget_is_per_run_and_deterministic() -> None:
    """Each run starts with the whole budget, and a run fails at the same step each time."""
    source = 'main { let s = "" let i = 0 while i < 2000 { s = s ++ "x"; i += 1 } return len(s) }'
    program = compile_source(source, "test.avm")
    runtime = Runtime(program, RuntimeOptions(record_trace=False, max_value_bytes=1 << 22))
    assert [runtime.run_main() for _ in range(3)] == [2000] * 3
    steps = set()
    for _ in range(2):
        small = Runtime(program, RuntimeOptions(record_trace=False, max_value_bytes=1 << 18))
        with pytest.raises(RunError) as failure:
            small.run_main()
        assert failure.value.error.kind is ErrorKind.MEMORY_EXHAUSTED
        steps.add(small.fuel.used)
    assert len(steps) == 1


def test_memory_exhausted_is_fatal_not_a_failed_call() -> None:
    """No `atomic ... else` and no caller sees it: the whole run stops, like fuel."""
    source = """
    behavior Bomb { on ["go"] { let s = "ab" while true { s = s ++ s } } }
    main { let b = create Bomb atomic { call(b, ["go"]) } else (e) { return e } }"""
    _, outcome = run(source, max_value_bytes=1 << 20)
    assert failure_kind(outcome) is ErrorKind.MEMORY_EXHAUSTED


def test_a_memory_error_inside_a_run_leaves_the_runtime_usable(monkeypatch) -> None:
    """A real `MemoryError` (the process, not the budget) fails the run with
    MemoryExhausted; the next run works. Before, the run stayed "executing" forever."""
    source = "behavior B { on x { return now() } } main { return call!(create B, 1) }"
    runtime = Runtime(compile_source(source, "test.avm"), RuntimeOptions(record_trace=False, now=7))
    now = next(i for i, h in enumerate(runtime.handlers) if getattr(h, "__name__", "") == "now")
    real = runtime.handlers[now]

    def exhausted(*args: object) -> object:
        raise MemoryError

    runtime.handlers[now] = exhausted
    with pytest.raises(RunError) as failure:
        runtime.run_main()
    assert failure.value.error.kind is ErrorKind.MEMORY_EXHAUSTED
    assert runtime.run is None and runtime.store.get(failure.value.object_id) is not None
    runtime.handlers[now] = real
    assert runtime.run_main() == 7


def test_an_internal_error_is_raised_but_the_runtime_stays_usable() -> None:
    source = "main { return now() }"
    runtime = Runtime(compile_source(source, "test.avm"), RuntimeOptions(record_trace=False, now=7))
    now = next(i for i, h in enumerate(runtime.handlers) if getattr(h, "__name__", "") == "now")
    real = runtime.handlers[now]

    def broken(*args: object) -> object:
        raise KeyError("a bug")

    runtime.handlers[now] = broken
    with pytest.raises(KeyError):
        runtime.run_main()
    runtime.handlers[now] = real
    assert runtime.run_main() == 7


# ---------------------------------------------------------------------------- fuel and time


def fuel_of(source: str, **options: object) -> int:
    runtime, outcome = run(source, **options)
    assert not isinstance(outcome, RunError), outcome
    return runtime.fuel.used


def test_copying_a_long_list_costs_fuel_in_proportion() -> None:
    """A loop of n appends copies n²/2 items: its fuel grows like that, where it used to
    be 3 steps per append (100,000 appends: 18 s for ~700,000 steps)."""
    loop = "main {{ let xs = [] let i = 0 while i < {n} {{ xs = append(xs, i); i += 1 }} }}"
    small, large = fuel_of(loop.format(n=500)), fuel_of(loop.format(n=2000))
    copies = 2000 * 2001 // 2 // SIZE_UNIT
    assert large >= copies
    assert large > 8 * small  # quadratic, not linear (4x the appends)


def test_printing_and_comparing_cost_a_walk_per_part() -> None:
    """`str()` and `==` of a list walk every item: WALK_STEPS each."""
    make = (
        "let xs = [0] let ys = [0] let i = 0 while i < 12 { xs = xs ++ xs; ys = ys ++ ys; i += 1 } "
    )
    base = fuel_of(f"main {{ {make} return [xs, ys] }}")
    printed = fuel_of(f"main {{ {make} return [xs, ys, len(str(xs))] }}")
    compared = fuel_of(f"main {{ {make} return [xs, ys, xs == ys] }}")
    items = 1 << 12
    assert printed - base >= WALK_STEPS * items
    assert compared - base >= WALK_STEPS * items


@pytest.mark.parametrize("op", ["len(str(a))", "a == b"])
def test_a_shared_structure_cannot_walk_forever(op: str) -> None:
    """A list holding itself twice, 60 times over, prints 2^60 parts: the walk stops when
    the fuel would be gone, and the run fails with FuelExhausted at once."""
    source = f"""main {{
      let a = [1] let b = [1] let i = 0
      while i < 60 {{ a = [a, a]; b = [b, b]; i += 1 }}
      return {op}
    }}"""
    _, outcome = run(source, fuel=2_000_000)
    assert failure_kind(outcome) is ErrorKind.FUEL_EXHAUSTED


def test_a_result_that_shares_itself_cannot_wedge_its_printer() -> None:
    """main's value (or a call's answer) leaves the run to be printed or sent: its walk is
    charged, so a list holding itself twice, 40 times over (2^40 parts, 40 steps to
    build), fails the run instead of hanging `avm run` or a node."""
    source = "main { let a = [1] let i = 0 while i < 40 { a = [a, a]; i += 1 } return a }"
    _, outcome = run(source, fuel=2_000_000)
    assert failure_kind(outcome) is ErrorKind.FUEL_EXHAUSTED
    runtime, value = run(source.replace("40", "10"))
    assert value == run(source.replace("40", "10"))[1]
    assert runtime.fuel.used > WALK_STEPS * (2**11 - 2)


def test_a_state_that_shares_itself_cannot_be_stored() -> None:
    """A state is encoded by snapshots and state hashes: writing one costs its walk."""
    source = """
    behavior B {
      field kept = 0
      on x { let a = [1] let i = 0 while i < 40 { a = [a, a]; i += 1 } kept = a }
    }
    main { return call(create B, 1) }"""
    _, outcome = run(source, fuel=2_000_000)
    assert failure_kind(outcome) is ErrorKind.FUEL_EXHAUSTED


def test_a_message_that_shares_itself_is_not_sent() -> None:
    """A remote call's message is encoded to be sent: sending one costs its walk, so the
    transport never sees a value of 2^40 parts."""

    class Transport:
        sent: list[object] = []

        def call(self, machine: str, target: int, message: object, sender: int) -> object:
            self.sent.append(message)
            return 0

    source = """
    behavior B { on _ { return 1 } }
    main {
      let b = create B move_object(b, "far")
      let a = [1] let i = 0 while i < 40 { a = [a, a]; i += 1 }
      return call(b, a)
    }"""
    transport = Transport()
    runtime = Runtime(
        compile_source(source, "test.avm"),
        RuntimeOptions(record_trace=False, fuel=2_000_000),
        transport=transport,
    )
    with pytest.raises(RunError) as failure:
        runtime.run_main()
    assert failure.value.error.kind is ErrorKind.FUEL_EXHAUSTED
    assert transport.sent == []


def test_the_solver_charges_for_propagation() -> None:
    """An alldiff over many variables costs fuel for its propagation (300 variables: 15 s
    for about 1,500 steps before)."""
    source = """main {
      let dom = [] let i = 0 while i < 40 { dom = append(dom, i); i += 1 }
      let vars = [] let k = 0 while k < 40 { vars = append(vars, new_var(dom)); k += 1 }
      post(["alldiff", vars])
      return label(vars[0])
    }"""
    assert fuel_of(source) > WALK_STEPS * 40 * 40


@pytest.mark.parametrize("jit", ["off", "on"])
def test_fuel_is_the_same_with_the_jit(jit: str) -> None:
    """Charges live in the VM's translation; native code deopts for every boxed value."""
    source = """main {
      let xs = [] let n = 0 let i = 0
      while i < 300 { xs = append(xs, [i, str(i)]); n += i * 2; i += 1 }
      return [n, len(str(xs)), xs == xs ++ []]
    }"""
    assert fuel_of(source, jit=jit) == fuel_of(source, jit="off")


def test_a_charge_slices_cannot_pay_borrows_from_the_run() -> None:
    """A server's fuel slices never change what a run uses: a size charge bigger than the
    slice is paid from the rest of the run's fuel."""
    source = "main { let xs = [0] let i = 0 while i < 14 { xs = xs ++ xs; i += 1 } return 0 }"
    whole = fuel_of(source)
    runtime = Runtime(compile_source(source, "test.avm"), RuntimeOptions(record_trace=False))
    runtime.slice = 50
    interpreter = runtime.interpreters[0]
    outcome = runtime.start(interpreter, interpreter.program.main)  # type: ignore[arg-type]
    while type(outcome).__name__ == "Preempted":
        outcome = runtime.proceed(sliced=True)
    assert type(outcome).__name__ == "Done"
    assert runtime.fuel.used == whole


# ---------------------------------------------------------------------------- poison events

BOMB = """
behavior bomb {
  field calls = 0
  field kept = 0
  on ["inc"] { calls += 1; return calls }
  on ["boom"] { calls += 100; let s = "ab" while true { s = s ++ s } }
  on ["dag"] { let a = [1] let i = 0 while i < 40 { a = [a, a]; i += 1 } return a }
  on ["keep"] { let a = [1] let i = 0 while i < 40 { a = [a, a]; i += 1 } kept = a }
}
"""


def test_a_logged_call_that_hits_the_memory_limit_replays_to_the_same_failure(tmp_path) -> None:
    """A `--data` node: one call hits the memory budget and fails, another answers a value
    too large to send; SIGKILL; the restarted node replays those calls to the same failures
    (not a crash loop), its state hash is as before, and it serves calls."""
    tape = compile_tape(BOMB, tmp_path, "bomb")
    data = tmp_path / "data"
    nodes = Nodes(tmp_path)
    try:
        node = nodes.start("poison", [tape], options=["--data", str(data), "--fuel", "20000000"])
        with Session(node, timeout=60.0) as session:
            target = session.create("bomb")
            assert session.call(target, ("inc",)) == Just(1)
            with pytest.raises(ClientError, match="MemoryExhausted"):
                session.call(target, ("boom",))
            # Fatal, like running out of fuel: the callee's writes before it stay
            # (docs/semantics.md, Limits), and replay must reproduce exactly that.
            assert session.call(target, ("inc",)) == Just(102)
            with pytest.raises(ClientError, match="FuelExhausted"):
                session.call(target, ("dag",))  # an answer of 2^40 parts: never sent
            with pytest.raises(ClientError, match="FuelExhausted"):
                session.call(target, ("keep",))  # nor stored, for snapshots to encode
            take_snapshot = session.snapshot()[1]
            before = session.state_hash()
            assert take_snapshot == before
        nodes.restart(node)
        with Session(node, timeout=60.0) as session:
            assert session.state_hash() == before
            assert session.call(target, ("inc",)) == Just(103)
    finally:
        nodes.close()


def test_a_node_keeps_its_value_budget_in_its_data_directory(tmp_path) -> None:
    """`avm node --max-value-bytes`: runs fail past it with MemoryExhausted; the budget is
    part of what the log replays under, so a restart with another one is refused."""
    tape = compile_tape(BOMB, tmp_path, "bomb")
    data = tmp_path / "data"
    nodes = Nodes(tmp_path)
    budget = ["--data", str(data), "--max-value-bytes", "100000"]
    try:
        node = nodes.start("tight", [tape], options=budget)
        with Session(node) as session:
            target = session.create("bomb")
            with pytest.raises(ClientError, match="MemoryExhausted"):
                session.call(target, ("boom",))
        node.kill()
        with pytest.raises(NodeStartError, match="max_value_bytes 100000, not 268435456"):
            nodes.start("tight", [], options=["--data", str(data)], label="again")
    finally:
        nodes.close()
