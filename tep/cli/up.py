"""``tep up``: the whole stack on one machine, supervised, for development and demos.

Uses the NATS at ``--nats-url`` when one answers; otherwise starts a local ``nats-server`` with
JetStream (data under ``--data-dir``, which it locks for as long as it runs), provisions the
log, and runs the orchestrator, N executors and the projector (and optionally the demo target)
as child processes, restarting any that exits or stays unhealthy.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import anyio
from anyio.abc import TaskStatus

from eventstore.config import DEFAULT_NATS_URL, TepSettings
from eventstore.errors import NatsUnavailableError
from eventstore.jetstream.connection import NatsClient, connect
from eventstore.jetstream.provision import ensure_log
from tep.cli.common import EXIT_OK, UsageError, add_nats_url, settings_from, single_errors
from tep.cli.up_server import (
    EmbeddedServerError,
    is_embedded_server_of,
    server_exit,
    start_embedded_server,
)
from tep.demo_target import DEFAULT_PORT as DEMO_PORT
from tep.dir_lock import DataDirLock
from tep.health_watch import HealthWatch, wait_until_healthy
from tep.logging_setup import configure_logging
from tep.server import EmbeddedServer, find_free_port
from tep.supervisor import ChildSpec, Supervisor

__all__ = ["LineRenderer", "child_specs", "register"]

_log = logging.getLogger("tep.up")
T = TypeVar("T")

_EPILOG = """\
examples:
  tep up                                  # embedded NATS in ./.tep, 1 executor
  tep up --executors 3 --with-demo-target
  tep up --nats-url nats://10.0.0.5:4222  # use an existing NATS, run only the roles
  tep up --data-dir /tmp/tep --port 4333  # a second, separate stack

Stop with Ctrl-C (or SIGTERM): every child is stopped within 5 seconds. Starting `tep up` again
on the same data dir continues with the same history; only one `tep up` at a time may use a
data dir. A child that crashes, or whose /healthz has not answered 200 for
--restart-unhealthy-after seconds, is restarted with exponential backoff (0.5 s doubling to
30 s). Each log line names the process it came from.
exit codes: 0 stopped cleanly, 1 could not start (nats-server missing or failing, the data dir
in use by another tep up) or the embedded nats-server died, 2 bad usage,
3 --nats-url is remote and unreachable.
"""

_LOOPBACK = ("localhost", "127.0.0.1", "::1")
_CHILD_GRACE_S = 2.5
_SERVER_GRACE_S = 1.5
_READY_TIMEOUT_S = 30.0
_UNHEALTHY_GRACE_S = 15.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``tep up``."""
    parser = subparsers.add_parser(
        "up",
        help="run everything locally: NATS (if none answers), orchestrator, executors, projector",
        description="Start the whole stack on this machine and keep it running: use the NATS "
        "at --nats-url if one answers, otherwise start a local nats-server with JetStream "
        "under --data-dir; provision the log; supervise the orchestrator, N executors and the "
        "projector as child processes. Ctrl-C stops everything.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--executors", type=int, default=1, metavar="N", help="executor processes (default 1)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".tep"),
        metavar="D",
        help="where the embedded nats-server keeps its data and log (default ./.tep)",
    )
    parser.add_argument(
        "--port",
        type=int,
        metavar="P",
        help="client port of the embedded nats-server (default: the port of --nats-url, 4222)",
    )
    parser.add_argument(
        "--with-demo-target",
        action="store_true",
        help="also run `tep demo-target` (the examples' HTTP service) on --demo-port",
    )
    parser.add_argument(
        "--demo-port",
        type=int,
        default=DEMO_PORT,
        metavar="P",
        help="port of the demo target (default %(default)s)",
    )
    parser.add_argument(
        "--handlers",
        metavar="MODULE",
        action="append",
        default=[],
        help="passed to every executor: a module registering Python action handlers",
    )
    parser.add_argument(
        "--restart-unhealthy-after",
        type=float,
        default=_UNHEALTHY_GRACE_S,
        metavar="S",
        help="restart a child whose health endpoint has not answered 200 for S seconds "
        "(default %(default)g; 0 turns it off)",
    )
    add_nats_url(parser)
    parser.set_defaults(handler=run)


def child_specs(args: argparse.Namespace, nats_url: str) -> list[ChildSpec]:
    """The processes to supervise, each ``python -m tep.cli.main <role>`` (no PATH needed).

    Every role serves its health endpoint on a free loopback port, which ``tep up`` polls to
    tell when the stack is ready.
    """
    base = [sys.executable, "-m", "tep.cli.main"]
    env = {"TEP_NATS_URL": nats_url, "TEP_LOG_FORMAT": "json"}
    url = ["--nats-url", nats_url]

    def role(name: str, command: str, *extra: str) -> ChildSpec:
        port = find_free_port()
        health = ["--health-port", str(port), "--health-host", "127.0.0.1"]
        argv = [*base, command, *url, *health, *extra]
        return ChildSpec(name, argv, env, health_url=f"http://127.0.0.1:{port}/healthz")

    specs = [role("orchestrator", "orchestrator")]
    handler_args = [arg for module in args.handlers for arg in ("--handlers", module)]
    # In-flight calls must be handed back before the supervisor's grace period ends.
    grace = ["--shutdown-grace", str(_CHILD_GRACE_S - 1)]
    for n in range(1, args.executors + 1):
        name = "executor" if args.executors == 1 else f"executor-{n}"
        specs.append(role(name, "executor", *grace, *handler_args))
    specs.append(role("projector", "projector"))
    if args.with_demo_target:
        demo = [*base, "demo-target", "--port", str(args.demo_port)]
        health_url = f"http://127.0.0.1:{args.demo_port}/health"
        specs.append(ChildSpec("demo-target", demo, env, health_url=health_url))
    return specs


class LineRenderer:
    """Child output, tagged with the child's name: readable on a terminal, JSON otherwise.

    Children log JSON lines; on a terminal each becomes ``HH:MM:SS name level message k=v``,
    elsewhere the JSON gains a ``proc`` field. Lines that are not JSON are prefixed.
    """

    _SKIP = frozenset({"ts", "level", "logger", "msg", "role", "proc"})

    def __init__(self, json_output: bool, width: int) -> None:
        self.json_output = json_output
        self.width = width

    def __call__(self, name: str, line: str) -> None:
        """Write one child line to stderr."""
        sys.stderr.write(self.render(name, line) + "\n")
        sys.stderr.flush()

    def render(self, name: str, line: str) -> str:
        """The line as it is written."""
        entry: Any = None
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
        if self.json_output:
            if not isinstance(entry, dict):
                entry = {"ts": datetime.now().astimezone().isoformat(), "msg": line}
            return json.dumps({"proc": name, **entry}, default=str)
        if not isinstance(entry, dict):
            return f"{datetime.now():%H:%M:%S} {name:<{self.width}} {line}"
        stamp = _clock(entry.get("ts"))
        extras = " ".join(f"{k}={v}" for k, v in entry.items() if k not in self._SKIP)
        text = f"{stamp} {name:<{self.width}} {entry.get('level', 'info'):7} {entry.get('msg', '')}"
        return f"{text}  {extras}" if extras else text


def _clock(timestamp: object) -> str:
    if isinstance(timestamp, str):
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(timestamp).astimezone().strftime("%H:%M:%S")
    return datetime.now().strftime("%H:%M:%S")


def _probe_url(args: argparse.Namespace) -> str:
    if args.port is None:
        return str(args.nats_url)
    parts = urlsplit(args.nats_url.split(",")[0].strip())
    host = parts.hostname or "127.0.0.1"
    return f"nats://{host}:{args.port}"


def _is_loopback(url: str) -> bool:
    if "," in url:
        return False
    host = urlsplit(url).hostname or ""
    return host in _LOOPBACK or host.startswith("127.")


def run(args: argparse.Namespace) -> int:
    """Handle ``tep up``."""
    if args.executors < 0:
        raise UsageError("--executors must be 0 or more")
    if args.restart_unhealthy_after < 0:
        raise UsageError("--restart-unhealthy-after must be 0 or more")
    settings_from(args)  # validate TEP_* settings before anything starts
    configure_logging("up")
    return anyio.run(_up, args)


async def _try_connect(url: str, settings: TepSettings) -> NatsClient | None:
    try:
        return await connect(url, name="tep-up", timeout_s=min(settings.connect_timeout_s, 1.5))
    except NatsUnavailableError:
        return None


async def _up(args: argparse.Namespace) -> int:
    stop = anyio.Event()
    with single_errors():
        async with anyio.create_task_group() as group:
            # Signals are caught from the start: one that arrives while starting up stops right
            # after, and ones during the stop change nothing.
            await group.start(_set_on_signal, stop)
            await _run_stack(args, stop)
            group.cancel_scope.cancel()
    print("stopped", flush=True)
    return EXIT_OK


async def _set_on_signal(
    stop: anyio.Event, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        task_status.started()
        async for _ in signals:
            stop.set()


async def _run_stack(args: argparse.Namespace, stop: anyio.Event) -> None:
    """NATS (found or started), the log provisioned, the roles supervised until ``stop``; then
    everything stopped in order: the roles, the connection, the server.

    Raises:
        DataDirInUseError: another ``tep up`` holds ``--data-dir``.
        EmbeddedServerError: the embedded server could not start, or died while running.
    """
    settings = settings_from(args)
    url = _probe_url(args)
    lock = DataDirLock(args.data_dir)
    server: EmbeddedServer | None = None
    nc = await _try_connect(url, settings)
    try:
        if nc is not None:
            # The server of a `tep up` holding this data dir belongs to that stack, which is
            # not one to join (checked after the probe: that one may have started meanwhile).
            if await is_embedded_server_of(args.data_dir, url):
                lock.check_free()
        else:
            if not _is_loopback(url):
                raise NatsUnavailableError(f"cannot reach NATS at {url}")
            lock.acquire()
            parts = urlsplit(url)
            server = await start_embedded_server(
                args.data_dir, parts.hostname or "127.0.0.1", parts.port or 4222
            )
            url = server.url
            nc = await connect(url, name="tep-up", timeout_s=settings.connect_timeout_s)
        await ensure_log(nc.jetstream(), TepSettings.from_env(nats_url=url))
        specs = child_specs(args, url)
        if not stop.is_set():
            _banner(args, url, server, specs)
            await _supervise(specs, stop, server, _health_watch(args))
        else:
            print("stopping...", flush=True)
    finally:
        with anyio.CancelScope(shield=True):
            if nc is not None:
                with contextlib.suppress(Exception), anyio.move_on_after(1.0):
                    await nc.close()
            if server is not None:
                await anyio.to_thread.run_sync(server.stop, _SERVER_GRACE_S)
            lock.release()


def _health_watch(args: argparse.Namespace) -> HealthWatch | None:
    grace: float = args.restart_unhealthy_after
    return HealthWatch(grace=grace) if grace > 0 else None


async def _supervise(
    specs: list[ChildSpec],
    stop: anyio.Event,
    server: EmbeddedServer | None,
    health: HealthWatch | None,
) -> None:
    """Run the roles, say when they are ready, and stop them all once ``stop`` is set (or the
    embedded server dies: every role would only loop on a dead connection)."""
    width = max(len(spec.name) for spec in specs)
    supervisor = Supervisor(specs, LineRenderer(_json_logs(), width), health=health)
    server_died: list[int] = []
    async with anyio.create_task_group() as roles:
        await roles.start(supervisor.run)
        if server is not None:
            roles.start_soon(_stop_when_server_exits, server, stop, server_died)
        try:
            urls = {spec.name: spec.health_url for spec in specs if spec.health_url}
            ready = partial(wait_until_healthy, urls, _READY_TIMEOUT_S)
            unhealthy = await _unless_stopped(ready, stop)
            if unhealthy is not None:
                if unhealthy:
                    _log.warning("not healthy yet: %s; going on", ", ".join(unhealthy))
                print(f"ready: {len(specs)} processes running; Ctrl-C to stop", flush=True)
            await stop.wait()
            print("stopping...", flush=True)
        finally:
            with anyio.CancelScope(shield=True):
                await supervisor.stop(grace=_CHILD_GRACE_S)
            roles.cancel_scope.cancel()
    if server_died:
        raise EmbeddedServerError(
            f"the embedded nats-server exited with code {server_died[0]} while running; "
            f"every role was stopped (log {server.log_file if server else '-'})"
        )


async def _stop_when_server_exits(
    server: EmbeddedServer, stop: anyio.Event, exit_codes: list[int]
) -> None:
    exit_codes.append(await server_exit(server))
    _log.error("the embedded nats-server exited with code %s; stopping", exit_codes[0])
    stop.set()


async def _unless_stopped(work: Callable[[], Awaitable[T]], stop: anyio.Event) -> T | None:
    """The result of ``work``, or ``None`` if ``stop`` is set first (``work`` is cancelled)."""
    result: T | None = None
    async with anyio.create_task_group() as group:

        async def cancel_on_stop() -> None:
            await stop.wait()
            group.cancel_scope.cancel()

        group.start_soon(cancel_on_stop)
        result = await work()
        group.cancel_scope.cancel()
    return None if stop.is_set() else result


def _json_logs() -> bool:
    chosen = os.environ.get("TEP_LOG_FORMAT")
    if chosen:
        return chosen == "json"
    return not sys.stderr.isatty()


def _banner(
    args: argparse.Namespace, url: str, server: EmbeddedServer | None, specs: list[ChildSpec]
) -> None:
    if server is not None:
        nats = (
            f"{url} (embedded nats-server, data in {args.data_dir / 'nats'}, "
            f"log {args.data_dir / 'nats-server.log'})"
        )
    else:
        nats = f"{url} (existing server)"
    url_flag = "" if url == DEFAULT_NATS_URL else f" --nats-url {url}"
    names = [spec.name for spec in specs]
    executors = sum(1 for n in names if n.startswith("executor"))
    roles = [
        "orchestrator",
        f"executor x{executors}" if executors != 1 else "executor",
        "projector",
    ]
    if args.with_demo_target:
        roles.append(f"demo-target (http://127.0.0.1:{args.demo_port})")
    lines = [
        "tep up",
        f"  nats    {nats}",
        f"  roles   {', '.join(roles)}",
        f"  try     tep submit examples/sequential-pipeline.json --wait{url_flag}",
    ]
    print("\n".join(lines), flush=True)
