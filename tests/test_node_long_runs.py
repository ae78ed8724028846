"""A long run does not take the node away (docs/wire.md, "Processes and threads"): past its
fuel slice it goes on in the VM thread, while the loop answers `status` at once (marked
busy), keeps its peers' keep-alive going, and the run's answer is exact."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from node_harness import Nodes, Session, compile_tape, timed_status, wait_connected

from avm_vm.values import Just

SPINNER = """
behavior Spinner {
  on ["spin", n] { let i = 0; while i < n { i += 1 } return i }
}
"""
TURNS = 20_000_000  # about 4 s of VM work with --jit off: thousands of slices


def test_status_and_peers_are_served_while_a_long_run_computes(tmp_path: Path) -> None:
    nodes = Nodes(tmp_path)
    try:
        tape = compile_tape(SPINNER, tmp_path, "spinner")
        beta = nodes.start("beta", [tape], options=["--jit", "off"])
        alpha = nodes.start("alpha", [tape], peers={"beta": beta}, options=["--jit", "off"])
        wait_connected(alpha, ["beta"])
        with Session(alpha) as session:
            spinner = session.create("Spinner")
        answers: list[object] = []

        def spin() -> None:
            with Session(alpha, timeout=120.0) as caller:
                answers.append(caller.call(spinner, ("spin", TURNS)))

        started = time.monotonic()
        caller = threading.Thread(target=spin)
        caller.start()
        time.sleep(0.5)
        busy_seen = 0
        while caller.is_alive():
            status, seconds = timed_status(alpha, timeout=5.0)
            assert seconds < 1.0, f"status took {seconds:.2f} s during a long run"
            busy_seen += bool(status.get("busy"))
            peers = {p["name"]: p["connected"] for p in status["peers"]}
            assert peers == {"beta": True}, f"the peer was dropped during a long run: {peers}"
            time.sleep(0.3)
        caller.join()
        computed = time.monotonic() - started
        assert answers == [Just(TURNS)]
        # The run outlived the peers' keep-alive limit (4 s of silence), so the peer link
        # survived only because the loop kept answering; and status saw the node busy.
        assert busy_seen > 0, f"status never reported busy in {computed:.1f} s of computing"
        with Session(alpha) as session:
            assert session.status().get("busy") is None  # the run is over
    finally:
        nodes.close()
