"""The Python API (docs/api.md): worlds, calls, failures with their reasons, values,
transactions, traces, the pytest fixture, and the documentation's own pytest file."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from avm_vm.api import (
    CallFailed,
    Just,
    LoadFailed,
    ObjectRef,
    Pair,
    RunFailed,
    TxRef,
    World,
    from_avm,
    to_avm,
)
from avm_vm.trace import ObjectCalled
from avm_vm.values import NOTHING

ROOT = Path(__file__).resolve().parent.parent
BANK = ROOT / "examples" / "bank.avm"

ECHO = """
behavior Echo {
  field seen = 0
  on ["echo", v] { seen += 1; return v }
  on ["nothing"] { }
  on ["boom"] { fail "boom" }
  on ["typo", p] { return fst(p) + "x" }
}
behavior Spinner { on ["spin"] { while true { } } }
main { return "main ran" }
"""


@pytest.fixture
def echo() -> tuple[World, ObjectRef]:
    world = World.from_source(ECHO, "echo.avm", jit="off")
    return world, world.create("Echo")


def test_values_round_trip_through_a_behavior(echo: tuple[World, ObjectRef]) -> None:
    world, obj = echo
    values = [
        0,
        2**64 - 1,
        True,
        "héllo",
        [1, [2, []]],
        Pair(1, "a"),
        None,
        Just(Just(None)),
        obj,
        TxRef(4),
    ]
    for value in values:
        assert world.call(obj, ["echo", value]) == value
    assert world.call(obj, ("echo", (1, 2))) == [1, 2]  # a tuple is a list
    assert world.call(obj, ["nothing"]) is None


@pytest.mark.parametrize(
    ("bad", "where"),
    [(1.5, "message[1]"), (-1, "message[1]"), (2**64, "message[1]"), ({"a": 1}, "message[1]")],
)
def test_a_value_the_avm_cannot_hold_is_refused_and_the_world_goes_on(
    echo: tuple[World, ObjectRef], bad: object, where: str
) -> None:
    world, obj = echo
    before = (world.state(obj), len(world.trace()))
    with pytest.raises(TypeError, match=re.escape(where)):
        world.call(obj, ["echo", bad])
    assert (world.state(obj), len(world.trace())) == before
    assert world.call(obj, ["echo", 7]) == 7  # still usable


def test_a_failed_call_raises_with_kind_message_and_location(
    echo: tuple[World, ObjectRef],
) -> None:
    world, obj = echo
    world.call(obj, ["echo", 1])
    with pytest.raises(CallFailed) as failure:
        world.call(obj, ["boom"])
    assert (failure.value.kind, failure.value.message) == ("Failed", "boom")
    assert failure.value.location is not None and failure.value.location.startswith("echo.avm:")
    assert failure.value.target == obj and failure.value.input == ["boom"]
    with pytest.raises(CallFailed) as typo:
        world.call(obj, ["typo", Pair(1, 2)])
    assert typo.value.kind == "TypeMismatch"
    assert world.state(obj) == [1]  # neither failed call left anything behind


def test_running_out_of_fuel_stops_the_run() -> None:
    world = World.from_source(ECHO, "echo.avm", fuel=10_000, jit="off")
    spinner = world.create("Spinner")
    with pytest.raises(RunFailed) as failure:
        world.call(spinner, ["spin"])
    assert failure.value.kind == "FuelExhausted"
    assert world.call(world.create("Echo"), ["echo", 3]) == 3


def test_transactions_commit_or_abort() -> None:
    world = World.load(BANK, jit="off")
    alice = world.create("Account")
    with world.transaction() as tx:
        assert type(tx) is TxRef
        world.call(alice, ["deposit", 5])
        world.call(alice, ["deposit", 6])
        assert world.state(alice) == [11]  # the transaction's own view
    assert world.state(alice) == [11]
    with pytest.raises(CallFailed), world.transaction():
        world.call(alice, ["deposit", 100])
        world.call(alice, ["withdraw", 1000])
    assert world.state(alice) == [11]  # the deposit was aborted with the transaction
    with pytest.raises(KeyError), world.transaction():
        world.call(alice, ["deposit", 1])
        raise KeyError("any exception aborts")
    assert world.state(alice) == [11]


def test_main_trace_and_introspection(echo: tuple[World, ObjectRef]) -> None:
    world, obj = echo
    assert world.main() == "main ran"
    world.call(obj, ["echo", "x"])
    trace = world.trace()
    last = trace[-1]
    assert type(last.event) is ObjectCalled and last.event.id == obj.id
    assert 'called obj:0 with ["echo", "x"] -> "x"' in trace.text()
    assert '"ObjectCalled"' in trace[-1:].json()
    assert trace.mermaid().startswith("sequenceDiagram")
    assert world.objects == [obj] and world.behaviors == ["Echo", "Spinner"]


def test_loading_errors_are_clear(tmp_path: Path) -> None:
    bad = tmp_path / "bad.avm"
    bad.write_text("main { let x = }\n")
    with pytest.raises(LoadFailed, match=r"bad\.avm:1:\d+: error"):
        World.load(bad)
    with pytest.raises(LoadFailed, match="cannot read"):
        World.load(tmp_path / "missing.avm")
    junk = tmp_path / "junk.tape"
    junk.write_bytes(b"not a tape")
    with pytest.raises(LoadFailed, match=r"junk\.tape"):
        World.load(junk)
    with pytest.raises(TypeError, match="World options"):
        World.load(BANK, fule=3)


def test_conversions_by_hand() -> None:
    assert to_avm([1, (2, "a")]) == (1, (2, "a"))
    assert from_avm((1, (2, "a"))) == [1, [2, "a"]]
    assert to_avm(None) is NOTHING and from_avm(NOTHING) is None
    assert from_avm(to_avm(Pair([1], Just([2])))) == Pair([1], Just([2]))


def test_the_pytest_fixture(avm_world: Callable[..., World]) -> None:
    world = avm_world(ROOT / "examples" / "counter.avm", jit="off")
    counter = world.create("Counter")
    assert world.call(counter, ["inc"]) == 1


def test_the_documented_pytest_file_passes(tmp_path: Path) -> None:
    """docs/api.md's pytest file, run as a user would run it, from the repository root."""
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(# test_\w+\.py\n.*?)```", text, re.S)
    assert len(blocks) == 1, "docs/api.md should hold one pytest file"
    test_file = tmp_path / "test_from_docs.py"
    test_file.write_text(blocks[0], encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
