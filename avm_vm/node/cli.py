"""`avm node`, the client commands and `avm replay`: thin click commands over the node.

Exit codes as for `avm run`: 0 success, 1 an error (a clear message on stderr), 2 a usage
error. `avm node` prints exactly one line on stdout once it listens, and logs to stderr.
The node's modules (asyncio and all) are imported only when one of these commands runs, so
`avm run` starts as fast as before.
"""

from __future__ import annotations

import gc
import ipaddress
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from avm_vm.cli_options import fuel_option, jit_option, max_value_bytes_option
from avm_vm.runtime.registry import RegistryError
from avm_vm.values import render


def _address(text: str, what: str = "address") -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise click.BadParameter(f"{what} must be HOST:PORT, not {text!r}")
    return host.strip("[]"), int(port)


def _name(text: str, option: str) -> str:
    """A machine name the protocol accepts (it goes into handshakes and logs)."""
    from avm_vm.node.messages import NAME

    try:
        NAME.check(text)
    except ValueError as error:
        raise click.BadParameter(f"{option}: the name {error}") from None
    return text


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _secret(path: Path | None) -> bytes | None:
    if path is None:
        return None
    from avm_vm.node.auth import SecretFileError, read_secret_file

    try:
        return read_secret_file(path)
    except SecretFileError as error:
        _fail(str(error))


def _fail(text: str) -> None:
    click.echo(f"error: {text}", err=True)
    sys.exit(1)


# File handles `avm node` keeps for itself besides accepted connections: standard streams,
# the event loop, listening sockets, the data directory, a trace file, dialled peers (added).
FD_RESERVE = 64
MAX_CONNECTIONS = 1000  # the default limit, when the file handles allow that many


def _connection_limit(requested: int | None, peers: int) -> int:
    """The accepted-connection limit: ``requested``, with the file-handle limit (ulimit -n)
    raised to fit it if the hard limit allows; by default three quarters of the handles
    left, at most `MAX_CONNECTIONS`. Staying below the limit means a crowd of clients is
    refused with a message rather than making every accept fail."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    reserve = FD_RESERVE + peers
    if requested is None:
        return max(1, min(MAX_CONNECTIONS, (soft - reserve) * 3 // 4))
    needed = requested + reserve
    if needed > soft:
        if hard != resource.RLIM_INFINITY and needed > hard:
            _fail(
                f"--max-connections {requested} needs about {needed} file handles, but this "
                f"process may open at most {hard} (ulimit -n)"
            )
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return requested


_SECRET = click.option(
    "--secret-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The shared secret: only nodes and clients holding it may connect.",
)
_TLS_FILES = (
    ("--tls-cert", "This side's certificate (PEM; `avm certs init` makes them)."),
    ("--tls-key", "The private key of --tls-cert (PEM)."),
    ("--tls-ca", "The CA certificate peers' certificates must come from (PEM)."),
)


def _remember(ctx: click.Context, param: click.Parameter, value: object) -> object:
    """Keep a TLS option in the context: the commands read them in one place (`_tls`)."""
    ctx.meta[f"avm.{param.name}"] = value
    return value


def _tls_options(command: Any) -> Any:
    """--tls-cert, --tls-key, --tls-ca (mutual TLS; docs/wire.md, "Security")."""
    for flag, text in reversed(_TLS_FILES):
        path = click.Path(exists=True, dir_okay=False, path_type=Path)
        option = click.option(flag, type=path, expose_value=False, callback=_remember, help=text)
        command = option(command)
    return command


def _tls(role: str, secret: bytes | None) -> Any:
    """The `Tls` of this command's --tls-* options (None without them); exits on misuse."""
    meta = click.get_current_context().meta
    files = [meta.get(f"avm.tls_{part}") for part in ("cert", "key", "ca")]
    if all(path is None for path in files):
        return None
    if any(path is None for path in files):
        _fail("--tls-cert, --tls-key and --tls-ca go together")
    if secret is not None:
        _fail("use either --tls-cert/--tls-key/--tls-ca or --secret-file, not both")
    from avm_vm.node.certs import CertError, load_tls

    try:
        return load_tls(*files, role)
    except CertError as error:
        _fail(str(error))


# --------------------------------------------------------------------------- avm node


@click.command("node")
@click.option("--name", required=True, help="This node's machine name.")
@click.option("--listen", "listen", required=True, help="HOST:PORT to listen on (port 0: any).")
@click.option("--peer", "peers", multiple=True, help="Another node, NAME=HOST:PORT (repeatable).")
@click.option(
    "--load",
    "files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A .tape file whose behaviors this node runs (repeatable).",
)
@_SECRET
@_tls_options
@click.option(
    "--allow-client-load",
    "client_loaders",
    multiple=True,
    metavar="CLIENT",
    help="With TLS: a client (by its certificate's name) that may `avm load` code "
    "(repeatable; no client may without it).",
)
@click.option(
    "--prefix",
    type=click.IntRange(0, 0xFFFF),
    default=None,
    help="16-bit id prefix (default: the listening port).",
)
@click.option(
    "--call-timeout",
    type=click.FloatRange(min=0.001),
    default=5.0,
    show_default=True,
    help="Seconds a request to a peer may take before it fails.",
)
@fuel_option("VM steps each run may take.")
@max_value_bytes_option
@jit_option
@click.option(
    "--trace-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Append the trace here as JSON lines.",
)
@click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    help="Data directory: log every event durably and restart from it (docs/durability.md).",
)
@click.option(
    "--snapshot-every",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="Events between snapshots (with --data); at least as many as objects held.",
)
@click.option(
    "--checkpoint-every",
    type=click.IntRange(min=1),
    default=1_000,
    show_default=True,
    help="Events between state hashes logged for `avm replay` (with --data); at least as "
    "many as objects held.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    default=None,
    help="Connections accepted at once; more are refused with a message saying why "
    f"[default: 3/4 of the file handles (ulimit -n) left, at most {MAX_CONNECTIONS}].",
)
@click.option(
    "--idle-timeout",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Seconds a client may stay connected without asking anything (0: no limit).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="The least important messages the node logs on stderr.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="One line per record: text, or a JSON object (time, level, logger, message, extras).",
)
@click.option(
    "--http",
    "http",
    default=None,
    metavar="[HOST:]PORT",
    help="Serve /health, /metrics, /events and a live page over HTTP here (host: 127.0.0.1; "
    "see docs/observability.md).",
)
@click.option(
    "--http-token",
    envvar="AVM_HTTP_TOKEN",
    default=None,
    help="HTTP requests must carry Authorization: Bearer TOKEN (needed beyond loopback; "
    "also read from AVM_HTTP_TOKEN).",
)
@click.option(
    "--profile",
    type=click.Choice(["ours", "r"]),
    default="ours",
    show_default=True,
    help="r: the spec's rules, where a remote call stays outside the caller's transaction "
    "(see docs/transactions.md); kept in --data.",
)
@click.option(
    "--volatile-commit",
    is_flag=True,
    help="Without --data, still take part in transactions across nodes, accepting that a "
    "crash between vote and decision loses this node's part.",
)
def node_command(
    name: str,
    listen: str,
    peers: tuple[str, ...],
    files: tuple[Path, ...],
    secret_file: Path | None,
    client_loaders: tuple[str, ...],
    prefix: int | None,
    call_timeout: float,
    fuel: int,
    max_value_bytes: int,
    jit: str,
    trace_out: Path | None,
    data: Path | None,
    snapshot_every: int,
    checkpoint_every: int,
    max_connections: int | None,
    idle_timeout: float,
    log_level: str,
    log_format: str,
    http: str | None,
    http_token: str | None,
    profile: str,
    volatile_commit: bool,
) -> None:
    """Run a node: host objects of the loaded behaviors, serve peers and clients.

    With --data, a restart needs no --load: the programs are in the log."""
    host, port = _address(listen, "--listen")
    _name(name, "--name")
    peer_table: dict[str, tuple[str, int]] = {}
    for item in peers:
        peer, sep, where = item.partition("=")
        if not sep:
            raise click.BadParameter(f"--peer must be NAME=HOST:PORT, not {item!r}")
        peer_table[_name(peer, "--peer")] = _address(where, "--peer")
    secret = _secret(secret_file)
    tls = _tls("node", secret)
    if tls is not None and tls.name != name:
        _fail(f"the certificate --tls-cert is for node {tls.name}, not --name {name}")
    if client_loaders and tls is None:
        _fail("--allow-client-load needs TLS (--tls-cert): only certificates name clients")
    if secret is None and tls is None and not _is_loopback(host):
        _fail(
            f"listening on {host} needs --tls-cert/--tls-key/--tls-ca or --secret-file "
            "(without either, only loopback is allowed)"
        )
    if not files and data is None:
        raise click.UsageError("give --load FILE (or --data DIR of a node that loaded some)")
    web = None
    if http is not None:
        web = _address(http if ":" in http else f"127.0.0.1:{http}", "--http")
        if not http_token and not _is_loopback(web[0]):
            _fail(f"serving http on {web[0]} needs --http-token (without one, only loopback)")
    programs = [_load(path) for path in files]
    import asyncio
    import logging

    from avm_vm.node.durable import DataError
    from avm_vm.node.engine import LoadError
    from avm_vm.node.eventlog import LogError
    from avm_vm.node.node import GC_YOUNG_THRESHOLD, GIL_SWITCH_SECONDS, NodeConfig
    from avm_vm.node.state import StateError

    config = NodeConfig(
        name=name,
        host=host,
        port=port,
        peers=peer_table,
        secret=secret,
        tls=tls,
        client_loaders=frozenset(client_loaders),
        prefix=prefix,
        call_timeout=call_timeout,
        fuel=fuel,
        max_value_bytes=max_value_bytes,
        jit=jit,
        trace_out=trace_out,
        record_trace=web is not None,  # /events streams the trace
        data=data,
        snapshot_every=snapshot_every,
        checkpoint_every=checkpoint_every,
        max_connections=_connection_limit(max_connections, len(peer_table)),
        idle_timeout=idle_timeout or None,
        profile=profile,
        volatile_commit=volatile_commit,
    )
    from avm_vm.node.logs import configure_logging

    handler = configure_logging(log_level, log_format)
    sys.setswitchinterval(GIL_SWITCH_SECONDS)  # the process is the node's alone
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    try:
        fatal = asyncio.run(_serve(config, programs, handler, web, http_token or None))
    except OSError as error:
        where = f"listen on {listen}" if data is None else f"listen on {listen} or use {data}"
        _fail(f"cannot {where}: {error.strerror or error}")
    except (RegistryError, LoadError) as error:  # two loaded files define the same behavior
        _fail(str(error))
    except (DataError, LogError, StateError) as error:
        _fail(str(error))
    handler.summarize(final=True)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if fatal is None else 1)  # a run computing in the VM thread must not hold it


async def _serve(
    config: Any,
    programs: list,
    handler: Any,
    web: tuple[str, int] | None = None,
    token: str | None = None,
) -> str | None:
    """Run the node (and its HTTP side at ``web``) until a signal (None) or until it cannot
    go on (why)."""
    import asyncio
    import signal
    from contextlib import suppress

    from avm_vm.node.logs import log_loop_error, logger
    from avm_vm.node.node import Node

    loop = asyncio.get_running_loop()
    loop.set_exception_handler(log_loop_error)
    node = Node(config, programs)
    await node.start()
    http = None
    if web is not None:
        from avm_vm.node.http import HttpServer

        http = HttpServer(node, web[0], web[1], token)
        try:
            await http.start()
        except OSError as error:
            logger.critical("cannot serve http on %s:%d: %s", *web, error.strerror or error)
            await node.stop()
            return f"cannot serve http on {web[0]}:{web[1]}"
    stop = node.stop_requested
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    click.echo(f"avm node {config.name} listening on {node.address}")
    sys.stdout.flush()
    while not stop.is_set():  # now and then, the counts of repeated log lines
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), handler.window)
        handler.summarize()
    logger.info("node %s: stopping", config.name)
    if http is not None:
        await http.stop()
    await node.stop()
    return node.fatal


def _load(path: Path) -> Any:
    from avm_vm.cli import _Exit
    from avm_vm.cli import _load as load_program
    from avm_vm.diagnostics import use_color

    try:
        return load_program(path, use_color(sys.stderr))
    except _Exit as problem:
        click.echo(str(problem), err=True)
        sys.exit(1)


# --------------------------------------------------------------------------- clients


def _client_options(command: Any) -> Any:
    command = click.option(
        "--timeout",
        type=click.FloatRange(min=0.001),
        default=10.0,
        show_default=True,
        help="Seconds to wait for the node.",
    )(command)
    return _tls_options(_SECRET(command))


def _ask(node: str, secret_file: Path | None, timeout: float, ask: Any, wait: float = 0.0) -> Any:
    """Connect to ``node`` (trying again for up to ``wait`` seconds while nothing listens
    there yet), run ``ask(client)``, and turn failures into exit status 1."""
    import asyncio
    import time

    from avm_vm.node.client import Client, ClientError

    host, port = _address(node, "NODE")
    secret = _secret(secret_file)
    tls = _tls("client", secret)

    async def go() -> Any:
        deadline = time.monotonic() + wait
        while True:
            try:
                client = await Client.connect(host, port, secret, timeout, tls)
                break
            except ClientError:
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(0.1)
        try:
            return await ask(client)
        finally:
            await client.close()

    try:
        return asyncio.run(go())
    except ClientError as error:
        _fail(str(error))


def _object(text: str) -> int:
    digits = text.removeprefix("obj:")
    if not digits.isdigit() or int(digits) >= 1 << 64:
        raise click.BadParameter(f"OBJECT must be obj:N or N, not {text!r}")
    return int(digits)


@click.command("call")
@click.argument("node")
@click.argument("target", metavar="OBJECT")
@click.argument("value")
@_client_options
def call_command(
    node: str, target: str, value: str, secret_file: Path | None, timeout: float
) -> None:
    """Call OBJECT with VALUE (canonical text) on NODE (HOST:PORT); print the answer.

    When OBJECT fails, the answer is `nothing`: why it failed goes to stderr, exit status 1."""
    from avm_vm.value_text import ValueTextError, parse_value

    object_id = _object(target)
    try:
        message = parse_value(value)
    except ValueTextError as error:
        raise click.BadParameter(f"VALUE {error}") from None
    answer, failure = _ask(
        node, secret_file, timeout, lambda c: c.call_reason(object_id, message, timeout)
    )
    click.echo(render(answer))
    if failure is not None:
        _fail(f"obj:{object_id} failed: {failure.text()}")


@click.command("create")
@click.argument("node")
@click.argument("behavior")
@click.option("--controller", default=None, help="The new object's controller.")
@_client_options
def create_command(
    node: str, behavior: str, controller: str | None, secret_file: Path | None, timeout: float
) -> None:
    """Create an object of BEHAVIOR on NODE (HOST:PORT); print its reference."""
    object_id = _ask(node, secret_file, timeout, lambda c: c.create(behavior, controller, timeout))
    click.echo(f"obj:{object_id}")


@click.command("status")
@click.argument("node")
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON object.")
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=0.0,
    help="Seconds to keep trying while the node is not up yet (for scripts that start one).",
)
@_client_options
def status_command(
    node: str, as_json: bool, wait: float, secret_file: Path | None, timeout: float
) -> None:
    """Show NODE's objects, peers and counters."""
    status = _ask(node, secret_file, timeout, lambda c: c.status(timeout), wait)
    click.echo(json.dumps(status, sort_keys=True) if as_json else _status_text(status))


def _status_text(status: dict[str, Any]) -> str:
    lines = [
        f"node {status.get('name')} on {status.get('listen')} (prefix {status.get('prefix')}), "
        f"up {status.get('uptime_s', 0):.1f} s",
        f"objects: {status.get('object_count', 0)}",
    ]
    for object_id, behavior, machine in status.get("objects", []):
        lines.append(f"  obj:{object_id}  {behavior}  {machine}")
    lines.append(f"peers: {len(status.get('peers', []))}")
    for peer in status.get("peers", []):
        state = "connected" if peer.get("connected") else "not connected"
        lines.append(f"  {peer.get('name')}  {state}  {peer.get('address')}")
    lines.append("counters:")
    for key, count in sorted(status.get("counters", {}).items()):
        lines.append(f"  {key.replace('_', ' ')}: {count}")
    for key in ("directory", "parked_runs", "queued", "pending_requests"):
        lines.append(f"  {key.replace('_', ' ')}: {status.get(key)}")
    tx = status.get("transactions", {})
    lines.append(
        f"transactions across nodes: {tx.get('parts', 0)} parts here "
        f"({tx.get('prepared', 0)} prepared), {tx.get('locked_objects', 0)} locked objects, "
        f"{tx.get('unacknowledged', 0)} commits awaiting acknowledgement"
    )
    pool = status.get("intents", {})
    lines.append(
        f"intents: {pool.get('pending', 0)} pending, {pool.get('settled', 0)} settled, "
        f"{pool.get('expired', 0)} failed at their deadline; {pool.get('batches_tried', 0)} "
        f"batches tried, {pool.get('batches_committed', 0)} committed"
    )
    for intent in pool.get("oldest", []):
        lines.append(
            f"  intent {intent['intent']}  obj:{intent['target']}  "
            f"{intent['attempts']} batches tried  last: {intent['reason'] or '-'}"
        )
    lines.append(f"events applied: {status.get('events')}")
    busy = "(runs are parked, or a transaction across nodes is open)"
    lines.append(f"state hash: {status.get('state_hash') or busy}")
    return "\n".join(lines)


@click.command("state-hash")
@click.argument("node")
@_client_options
def state_hash_command(node: str, secret_file: Path | None, timeout: float) -> None:
    """Print NODE's state hash and how many events it has applied."""
    digest, events = _ask(node, secret_file, timeout, lambda c: c.state_hash(timeout))
    click.echo(f"{digest} after {events} events")


@click.command("snapshot")
@click.argument("node")
@_client_options
def snapshot_command(node: str, secret_file: Path | None, timeout: float) -> None:
    """Have NODE write a snapshot of its state now (or once no run is parked)."""
    index, digest = _ask(node, secret_file, timeout, lambda c: c.snapshot(timeout))
    click.echo(f"snapshot at event {index}, state hash {digest}")


@click.command("peek")
@click.argument("node")
@click.argument("target", metavar="OBJECT")
@click.option("--json", "as_json", is_flag=True, help="Print the object as one JSON object.")
@_client_options
def peek_command(
    node: str, target: str, as_json: bool, secret_file: Path | None, timeout: float
) -> None:
    """Show OBJECT's behavior, code hash, metadata and state; NODE logs and changes nothing."""
    from avm_vm.node.codec import value_from_json

    object_id = _object(target)
    shipped = _ask(node, secret_file, timeout, lambda c: c.peek(object_id, timeout))
    if as_json:
        click.echo(json.dumps(shipped, sort_keys=True))
        return
    click.echo(f"obj:{object_id}  {shipped['behavior']}  on {shipped['machine']}")
    click.echo(f"  code hash: {shipped['code_hash']}")
    for key in ("creating", "current"):
        click.echo(f"  {key} controller: {shipped[key] or '(none)'}")
    state = tuple(value_from_json(v) for v in shipped["state"])
    click.echo(f"  state: {render(state)}")


@click.command("load")
@click.argument("node")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_client_options
def load_command(node: str, file: Path, secret_file: Path | None, timeout: float) -> None:
    """Upgrade NODE's code: FILE's behaviors replace those of the same name (a logged event).

    Existing objects keep their state and run the new code from their next call."""
    from avm_vm.format.bytecode import encode

    tape = encode(_load(file))
    behaviors = _ask(node, secret_file, timeout, lambda c: c.load(tape, timeout))
    for name, digest in sorted(behaviors.items()):
        click.echo(f"loaded {name}  code hash {digest}")


@click.command("intent")
@click.argument("node")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--deadline",
    type=click.FloatRange(min=0, max=1e9),
    default=60.0,
    show_default=True,
    help="Seconds the intent may wait in the pool for others to settle with.",
)
@click.option("--no-wait", is_flag=True, help="Print the intent's number and return at once.")
@_client_options
def intent_command(
    node: str,
    file: Path,
    deadline: float,
    no_wait: bool,
    secret_file: Path | None,
    timeout: float,
) -> None:
    """Submit the intent in FILE to NODE and wait until it settles or fails (docs/intents.md).

    FILE holds one value in canonical text: [OBJECT, OFFER, CHECK]. The node runs
    call!(OBJECT, OFFER) and then call!(OBJECT, CHECK) in one transaction with the
    offers and checks of other pending intents. Exit status 1 when the intent fails."""
    import asyncio
    import time

    from avm_vm.value_text import ValueTextError, parse_value
    from avm_vm.values import ObjectRef

    try:
        intent = parse_value(file.read_text(encoding="utf-8"))
    except (ValueTextError, UnicodeDecodeError) as error:
        raise click.BadParameter(f"FILE {error}") from None
    if type(intent) is not tuple or len(intent) != 3 or type(intent[0]) is not ObjectRef:
        raise click.BadParameter("FILE must hold [OBJECT, OFFER, CHECK], e.g. [obj:1, [], []]")
    target, offer, check = intent
    wait_ms = round(deadline * 1000)

    async def submit(client: Any) -> dict[str, Any]:
        number = await client.intent(target.id, offer, check, wait_ms, timeout)
        click.echo(f"intent {number} accepted")
        report = {"intent": number, "state": "pending"}
        give_up = time.monotonic() + deadline + timeout  # the node expires it by then
        while not no_wait and report["state"] == "pending" and time.monotonic() < give_up:
            await asyncio.sleep(0.05)
            report = await client.intent_status(number, timeout)
        return report

    report = _ask(node, secret_file, timeout, submit)
    if report["state"] == "settled":
        batch = ", ".join(str(n) for n in report["batch"])
        click.echo(f"intent {report['intent']} settled with intents {batch} in one transaction")
    elif report["state"] == "failed":
        _fail(f"intent {report['intent']} failed: {report['reason']}")
    elif not no_wait:
        _fail(f"intent {report['intent']}: no word from the node before its deadline")


@click.command("replay")
@click.argument("data", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--from-snapshot/--from-start",
    default=True,
    show_default=True,
    help="Begin at the latest valid snapshot, or re-execute the whole log.",
)
def replay_command(data: Path, from_snapshot: bool) -> None:
    """Re-execute a node's event log offline and check it reaches the recorded state.

    Exit 0 when everything matches, 1 on a mismatch (the first diverging event is named)."""
    from avm_vm.node.durable import DataError, describe, replay
    from avm_vm.node.eventlog import LogError
    from avm_vm.node.state import StateError

    try:
        report = replay(data, from_start=not from_snapshot)
    except (DataError, LogError, StateError, OSError) as error:
        _fail(str(error))
    click.echo(describe(report, data))
    sys.exit(0 if report.divergence is None else 1)


# --------------------------------------------------------------------------- avm certs


@click.group("certs")
def certs_group() -> None:
    """Make certificates for mutual TLS between nodes and clients (docs/wire.md, "Security")."""


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _certs_options(command: Any) -> Any:
    """DIRECTORY, --nodes, --clients, --days (of `avm certs init` and `avm certs add`)."""
    decorators = (
        click.argument("directory", type=click.Path(file_okay=False, path_type=Path)),
        click.option("--nodes", default="", help="Node names, comma-separated (alpha,beta)."),
        click.option("--clients", default="", help="Client names, comma-separated (ops)."),
        click.option(
            "--days",
            type=click.IntRange(1, 3650),
            default=365,
            show_default=True,
            help="Days the node and client certificates stay valid (the CA: ten years).",
        ),
    )
    for decorate in reversed(decorators):
        command = decorate(command)
    return command


def _issue(make: Any, directory: Path, nodes: str, clients: str, days: int) -> None:
    """Run ``make`` (`certs.init` or `certs.add`) and list what it wrote."""
    from avm_vm.node.certs import CertError

    if not _names(nodes) and not _names(clients):
        raise click.UsageError("give --nodes NAMES or --clients NAMES")
    try:
        issued = make(directory, _names(nodes), _names(clients), days)
    except (CertError, OSError) as error:
        _fail(str(error))
    ca = directory / "ca.crt"
    click.echo(f"CA: {ca} (its key {directory / 'ca.key'})")
    for made in issued:
        click.echo(f"{made.role} {made.name}: {made.cert} {made.key}")
    click.echo(
        f"start a node: avm node --name NAME --listen HOST:PORT --load FILE "
        f"--tls-cert {directory / 'NAME.crt'} --tls-key {directory / 'NAME.key'} --tls-ca {ca}"
    )


@certs_group.command("init")
@_certs_options
def certs_init_command(directory: Path, nodes: str, clients: str, days: int) -> None:
    """Make a CA (DIRECTORY/ca.crt, ca.key) and a certificate and key per node and client
    (DIRECTORY/NAME.crt, NAME.key). Keep ca.key away from the nodes: it makes certificates."""
    from avm_vm.node.certs import init

    _issue(init, directory, nodes, clients, days)


@certs_group.command("add")
@_certs_options
def certs_add_command(directory: Path, nodes: str, clients: str, days: int) -> None:
    """Make certificates for more nodes and clients with the CA that `avm certs init` made
    in DIRECTORY."""
    from avm_vm.node.certs import add

    _issue(add, directory, nodes, clients, days)


# --------------------------------------------------------------------------- avm log


@click.group("log")
def log_group() -> None:
    """Check a node's data directory, or repair one that is damaged (docs/durability.md)."""


@log_group.command("verify")
@click.argument("data", type=click.Path(file_okay=False, path_type=Path))
def log_verify_command(data: Path) -> None:
    """Read every log segment and snapshot of DATA and report each problem with its file
    and byte offset. Changes nothing. Exit 0 when no problem is found, 1 otherwise."""
    from avm_vm.node.durable import DataError, verify
    from avm_vm.node.eventlog import LogError

    try:
        found = verify(data)
    except (DataError, LogError, OSError) as error:
        _fail(str(error))
    for note in found.notes:
        click.echo(f"note: {note}")
    for problem in found.problems:
        click.echo(f"problem: {problem}")
    verdict = f"{len(found.problems)} problem(s)" if found.problems else "no problem found"
    click.echo(f"{data}: {found.events} readable events; {verdict}")
    sys.exit(1 if found.problems else 0)


@log_group.command("repair")
@click.argument("data", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--truncate-at",
    type=click.IntRange(min=0),
    default=None,
    help="Keep only the events before this index; discard the rest of the log and the "
    "snapshots after it [default: keep every event, when the log is undamaged].",
)
@click.option("--yes", is_flag=True, help="Do it; without --yes only print what would go.")
def log_repair_command(data: Path, truncate_at: int | None, yes: bool) -> None:
    """Make DATA usable again by discarding damaged data, saying exactly what goes.

    Prints every event and file it discards; with --yes, moves them into a new directory
    DATA/discarded-<time>/ (nothing is deleted) and cuts the log. A node must not be
    running on DATA (the directory's lock is taken)."""
    from avm_vm.node.durable import DataError, DataLock, plan_repair, repair
    from avm_vm.node.eventlog import LogError

    if not data.is_dir():
        _fail(f"{data} is not a directory")
    try:
        lock = DataLock(data, "avm log repair")  # no node may write while this looks
        try:
            plan = plan_repair(data, truncate_at)
            click.echo(plan.describe(data))
            if not plan.cut and not plan.moved:
                return
            if not yes:
                click.echo("nothing changed: run again with --yes to do this")
                return
            aside = repair(data, plan)
        finally:
            lock.release()
    except (DataError, LogError, OSError) as error:
        _fail(str(error))
    click.echo(f"done: the discarded data is in {aside}")


COMMANDS = (
    node_command,
    call_command,
    create_command,
    status_command,
    state_hash_command,
    snapshot_command,
    peek_command,
    load_command,
    intent_command,
    replay_command,
    log_group,
    certs_group,
)
