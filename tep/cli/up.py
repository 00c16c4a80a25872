"""``tep up``: the whole stack on one machine, supervised, for development and demos.

Uses the NATS at ``--nats-url`` when one answers; otherwise starts a local ``nats-server`` with
JetStream (data under ``--data-dir``, which it locks for as long as it runs), provisions the
log, and runs the orchestrator, N executors and the projector (and optionally the demo target)
as child processes, restarting any that exits or stays unhealthy.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import anyio
from anyio.abc import TaskStatus

from eventstore.access import Role
from eventstore.config import DEFAULT_NATS_URL, TepSettings
from eventstore.errors import NatsAuthorizationError, NatsUnavailableError
from eventstore.jetstream.connection import NatsClient, connect_as
from eventstore.jetstream.local_stack import note_local_stack, remove_local_stack
from executor.secrets import check_secret_environment
from tep.api.config import DEFAULT_API_PORT
from tep.api.local import LocalApi, ensure_local_token, free_or_other_port
from tep.cli.common import EXIT_OK, UsageError, add_nats_url, settings_from, single_errors
from tep.cli.up_children import CHILD_GRACE_S, LOOPBACK_CIDRS, LineRenderer, child_specs
from tep.cli.up_server import (
    EmbeddedServerError,
    is_embedded_server_of,
    server_exit,
    start_embedded_server,
)
from tep.creds import AUTH_FILE, init_credentials, seed_path
from tep.demo_target import DEFAULT_PORT as DEMO_PORT
from tep.dir_lock import DataDirLock
from tep.health_watch import HealthWatch, wait_until_healthy
from tep.logging_setup import configure_logging
from tep.provision import provision
from tep.server import EmbeddedServer
from tep.supervisor import ChildSpec, Supervisor

__all__ = ["LineRenderer", "child_specs", "register"]

_log = logging.getLogger("tep.up")
T = TypeVar("T")

_EPILOG = """\
examples:
  tep up                                  # embedded NATS in ./.tep, 1 executor
  tep up --executors 3 --with-demo-target
  tep up --orchestrators 2 --executors 2  # two orchestrators share the partitions
  tep up --nats-url nats://10.0.0.5:4222  # use an existing NATS, run only the roles
  tep up --data-dir /tmp/tep --port 4333  # a second, separate stack
  tep up --no-api                         # without the HTTP API

The HTTP API (`tep api`) listens on http://127.0.0.1:--api-port; the banner prints its token,
kept in <data dir>/api/token (readable by you alone) across restarts.

Stop with Ctrl-C (or SIGTERM): every child is stopped within 5 seconds. Starting `tep up` again
on the same data dir continues with the same history; only one `tep up` at a time may use a
data dir. A child that crashes, or whose /healthz has not answered 200 for
--restart-unhealthy-after seconds (30 s while it starts), is restarted with exponential
backoff (0.5 s doubling to 30 s). Each log line names the process it came from.
exit codes: 0 stopped cleanly, 1 could not start (nats-server missing or failing, the data dir
in use by another tep up) or the embedded nats-server died, 2 bad usage,
3 --nats-url is remote and unreachable.
"""

_LOOPBACK = ("localhost", "127.0.0.1", "::1")
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
        "--orchestrators",
        type=int,
        default=1,
        metavar="N",
        help="orchestrator processes, sharing the executions' partitions (default 1)",
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
        "--api-port",
        type=int,
        default=DEFAULT_API_PORT,
        metavar="P",
        help="port of the HTTP API on loopback (default %(default)s; another free one if taken)",
    )
    parser.add_argument("--no-api", action="store_true", help="do not run the HTTP API (`tep api`)")
    parser.add_argument(
        "--restart-unhealthy-after",
        type=float,
        default=_UNHEALTHY_GRACE_S,
        metavar="S",
        help="restart a child whose health endpoint has not answered 200 for S seconds "
        "(default %(default)g; 0 turns it off); a child still starting gets at least 30 s",
    )
    add_nats_url(parser)
    parser.set_defaults(handler=run)


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
    if args.orchestrators < 0:
        raise UsageError("--orchestrators must be 0 or more")
    if args.restart_unhealthy_after < 0:
        raise UsageError("--restart-unhealthy-after must be 0 or more")
    settings_from(args)  # validate TEP_* settings before anything starts
    check_secret_environment(os.environ)  # the executors' secrets, likewise
    configure_logging("up")
    return anyio.run(_up, args)


async def _try_connect(settings: TepSettings, lock: DataDirLock) -> NatsClient | None:
    """A connection to a server already answering at the URL (``None`` if none answers, or
    one that refuses us and is not this data dir's: starting ours then says the port is taken).

    Raises:
        DataDirInUseError: the server is the embedded one of a ``tep up`` on this data dir.
    """
    try:
        return await connect_as(
            settings, Role.ADMIN, name="tep-up", timeout_s=min(settings.connect_timeout_s, 1.5)
        )
    except NatsAuthorizationError:
        # E.g. a `tep up` on this data dir that has not noted its credentials yet.
        if await is_embedded_server_of(lock.directory, settings.nats_url):
            lock.check_free()
        return None
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
    url = _probe_url(args)
    settings = settings_from(args).model_copy(update={"nats_url": url})
    lock = DataDirLock(args.data_dir)
    server: EmbeddedServer | None = None
    creds_dir: Path | None = None
    nc = await _try_connect(settings, lock)
    # An existing server leaves the data dir alone: the API's token is kept with the state.
    parts = urlsplit(url)
    token_dir = (
        args.data_dir / "api"
        if nc is None
        else settings.state_dir / "api" / f"{parts.hostname}-{parts.port or 4222}"
    )
    api: LocalApi | None = None
    try:
        if nc is not None:
            # The server of a `tep up` holding this data dir belongs to that stack, which is
            # not one to join (checked after the probe: that one may have started meanwhile).
            if await is_embedded_server_of(args.data_dir, url):
                lock.check_free()
            api = _local_api(args, token_dir)
        else:
            if not _is_loopback(url):
                raise NatsUnavailableError(f"cannot reach NATS at {url}")
            lock.acquire()
            api = _local_api(args, token_dir)
            creds_dir = args.data_dir / "creds"
            await anyio.to_thread.run_sync(
                partial(init_credentials, creds_dir, settings=settings, reuse=True)
            )
            parts = urlsplit(url)
            server = await start_embedded_server(
                args.data_dir,
                parts.hostname or "127.0.0.1",
                parts.port or 4222,
                auth_file=creds_dir / AUTH_FILE,
            )
            url = server.url
            settings = _as_admin(settings, url, creds_dir)
            nc = await connect_as(settings, Role.ADMIN, name="tep-up")
            note_local_stack(
                settings.state_dir,
                url,
                creds_dir,
                api_url=api.url if api else None,
                api_token=api.credential.token if api else None,
            )
        await provision(nc.jetstream(), settings)
        specs = child_specs(args, url, creds_dir=creds_dir, environ=os.environ, api=api)
        if not stop.is_set():
            _banner(args, url, server, specs, api)
            await _supervise(specs, stop, server, _health_watch(args))
        else:
            print("stopping...", flush=True)
    finally:
        with anyio.CancelScope(shield=True):
            if nc is not None:
                with contextlib.suppress(Exception), anyio.move_on_after(1.0):
                    await nc.close()
            if server is not None:
                remove_local_stack(settings.state_dir, url)
                await anyio.to_thread.run_sync(server.stop, _SERVER_GRACE_S)
            lock.release()


def _local_api(args: argparse.Namespace, token_dir: Path) -> LocalApi | None:
    """The HTTP API to run (``None`` with ``--no-api``): its port and the token kept in
    ``token_dir``."""
    if args.no_api:
        return None
    credential = ensure_local_token(token_dir)
    return LocalApi(port=free_or_other_port(args.api_port), credential=credential)


def _as_admin(settings: TepSettings, url: str, creds_dir: Path) -> TepSettings:
    """``settings`` connecting to the embedded server at ``url`` as its admin."""
    identity = {"creds": None, "nkey": seed_path(creds_dir, Role.ADMIN), "user": None}
    return settings.model_copy(update={"nats_url": url, "password": None, **identity})


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
                await supervisor.stop(grace=CHILD_GRACE_S)
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
    args: argparse.Namespace,
    url: str,
    server: EmbeddedServer | None,
    specs: list[ChildSpec],
    api: LocalApi | None = None,
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
    orchestrators = sum(1 for n in names if n.startswith("orchestrator"))
    roles = [
        f"orchestrator x{orchestrators}" if orchestrators != 1 else "orchestrator",
        f"executor x{executors}" if executors != 1 else "executor",
        "projector",
    ]
    if args.with_demo_target:
        roles.append(f"demo-target (http://127.0.0.1:{args.demo_port})")
    lines = [
        "tep up",
        f"  nats    {nats}",
        f"  roles   {', '.join(roles)}",
    ]
    if server is not None:
        lines.append(
            f"  auth    one nkey per role in {args.data_dir / 'creds'}; server on loopback only; "
            "tep commands on this machine use them by themselves"
        )
    if api is not None:
        lines.append(
            f"  api     {api.url}  token {api.credential.token} "
            f"(also in {api.credential.token_file}; docs/api.md)"
        )
        lines.append(f"  dashboard {api.url}/?token={api.credential.token}  (docs/dashboard.md)")
    if "TEP_EXECUTOR_ALLOW_CIDRS" not in os.environ:
        lines.append(
            f"  targets executors may also call loopback ({', '.join(LOOPBACK_CIDRS)}): "
            "development only; private and metadata addresses stay refused"
        )
    metrics = [
        f"{spec.name} {spec.health_url.removesuffix('/healthz')}/metrics"
        for spec in specs
        if spec.health_url and spec.health_url.endswith("/healthz")
    ]
    lines.append(f"  metrics {', '.join(metrics)}")
    lines.append(f"  try     tep submit examples/sequential-pipeline.json --wait{url_flag}")
    print("\n".join(lines), flush=True)
