"""Starting a long-running role process: the one place for connect, provision, health, signals.

Every role command (``tep orchestrator``, ``tep executor``, ``tep projector``) describes its
service as a :class:`RoleService` and hands it to :func:`run_role`, which:

1. sets up logging for the role and connects to NATS (exit 3 with one line if unreachable);
2. provisions the log (idempotent) when the role needs it;
3. serves ``GET /healthz`` and ``GET /metrics`` when ``--health-port`` was given, and then
   samples the service's gauges every ``TEP_METRICS_SAMPLE_S``; exports OpenTelemetry spans
   when the ``otel`` extra is installed and ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set;
4. runs the service until it returns or a signal arrives: the first SIGTERM/SIGINT asks the
   service to stop gracefully (or cancels it, if it has no graceful stop), a second one
   cancels it;
5. closes the connection.

A connection the client closed for good (the server refused something and dropped it; nats-py
does not reconnect then) ends the process with exit code 3 and one error line, so whatever
supervises it starts a fresh one: a role never lingers, unhealthy, on a dead connection.
"""

from __future__ import annotations

import argparse
import gc
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio

from eventstore import otel
from eventstore.config import TepSettings
from eventstore.errors import NatsAuthorizationError, NatsUnavailableError
from eventstore.jetstream.connection import NatsClient, connect_as, last_permission_denial
from eventstore.jetstream.provision import ensure_log
from eventstore.jetstream.settling import asking_again
from tep.cli.common import single_errors
from tep.health import serve_health
from tep.logging_setup import configure_logging

__all__ = ["Report", "RoleService", "add_health_options", "run_role"]

Report = Callable[[], tuple[bool, dict[str, Any]]]
"""``() -> (healthy, status document)``: what ``GET /healthz`` answers."""

_log = logging.getLogger("tep.role")
_CLOSED_POLL_S = 0.2


@dataclass(frozen=True)
class RoleService:
    """A role's service as :func:`run_role` drives it.

    Attributes:
        run: runs the service until it is done or cancelled.
        report: the health report.
        stop: asks ``run`` to finish gracefully (first signal); ``None``: cancel at once.
        sample: refreshes the metrics counted by looking (a consumer's backlog), called every
            ``TEP_METRICS_SAMPLE_S`` while the health endpoint is served.
    """

    run: Callable[[], Awaitable[None]]
    report: Report
    stop: Callable[[], None] | None = None
    sample: Callable[[], Awaitable[None]] | None = None


def add_health_options(parser: argparse.ArgumentParser, healthy_when: str) -> None:
    """``--health-port`` / ``--health-host`` for a long-running role's ``GET /healthz``."""
    parser.add_argument(
        "--health-port",
        type=int,
        default=None,
        metavar="PORT",
        help=f"serve GET /healthz (200 while {healthy_when}) and GET /metrics on this port",
    )
    parser.add_argument(
        "--health-host",
        default="0.0.0.0",
        help="address of the health endpoint (default %(default)s)",
    )


def run_role(
    args: argparse.Namespace,
    settings: TepSettings,
    *,
    role: str,
    client_name: str,
    build: Callable[[NatsClient], RoleService],
    provision: bool = True,
) -> int:
    """Run one role process until it ends or is stopped by a signal; returns the exit code.

    Args:
        args: the command's arguments (``--health-port``/``--health-host``).
        settings: the validated settings.
        role: the role's name in log lines.
        client_name: the NATS connection's name.
        build: makes the service once connected.
        provision: ensure the log's streams before starting.

    Raises:
        NatsUnavailableError: NATS could not be reached, or the connection was closed for good
            while running (exit code 3).
    """
    configure_logging(role, settings)
    otel.configure(f"tep-{role}")
    # Everything imported so far lives as long as the process: kept out of the collector's
    # full passes, which otherwise stall a role for tens of milliseconds now and then.
    gc.collect()
    gc.freeze()
    try:
        with single_errors():
            anyio.run(_serve, args, settings, role, client_name, build, provision)
    except TimeoutError:
        denied = last_permission_denial()
        if denied is None:
            raise
        # Most likely a stream or bucket that is missing and that this role may not create.
        raise NatsAuthorizationError(
            f"NATS refused the {role} identity permission {denied}: run `tep provision` with "
            "the admin identity first, and give this process the identity of its role"
        ) from None
    finally:
        otel.shutdown()
    return 0


async def _serve(
    args: argparse.Namespace,
    settings: TepSettings,
    role: str,
    client_name: str,
    build: Callable[[NatsClient], RoleService],
    provision: bool,
) -> None:
    nc = await connect_as(settings, role, name=client_name)
    try:
        if provision:
            await asking_again(
                lambda: ensure_log(nc.jetstream(), settings), what="provisioning the log"
            )
        service = build(nc)
        async with anyio.create_task_group() as group:
            group.start_soon(_stop_on_signal, service, group.cancel_scope)
            group.start_soon(_fail_when_closed, nc)
            port = getattr(args, "health_port", None)
            if port is not None:
                await group.start(serve_health, args.health_host, port, service.report)
                if service.sample is not None:
                    group.start_soon(_sample, service.sample, settings.metrics_sample_s)
            await service.run()
            group.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await nc.close()


async def _sample(sample: Callable[[], Awaitable[None]], interval_s: float) -> None:
    """Refresh the sampled metrics every ``interval_s`` (a failure waits for the next turn)."""
    while True:
        try:
            await sample()
        except Exception as exc:
            _log.debug("sampling metrics failed: %s", exc)
        await anyio.sleep(interval_s)


async def _fail_when_closed(nc: NatsClient) -> None:
    """Raise once the client gave the connection up (it never reconnects from there)."""
    # Polled: nats-py skips its closed callback when it closes while (re)connecting.
    while not nc.is_closed:  # noqa: ASYNC110
        await anyio.sleep(_CLOSED_POLL_S)
    error = getattr(nc, "last_error", None)
    reason = f" ({error})" if error else ""
    _log.error("the NATS connection was closed for good%s; exiting", reason)
    raise NatsUnavailableError(f"the NATS connection was closed for good{reason}")


async def _stop_on_signal(service: RoleService, scope: anyio.CancelScope) -> None:
    """First signal: stop gracefully (when the service can). Second: stop now."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        asked = False
        async for _ in signals:
            if asked or service.stop is None:
                scope.cancel()
                return
            asked = True
            service.stop()
