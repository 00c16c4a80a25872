"""``tep orchestrator``: run the orchestrator role (one leader, any number of hot standbys)."""

from __future__ import annotations

import argparse
import signal
from typing import Any

import anyio

from eventstore.config import Settings
from eventstore.jetstream.connection import connect
from eventstore.jetstream.provision import ensure_log
from orchestrator.config import OrchestratorConfig
from orchestrator.service import Orchestrator
from tep.cli.common import add_health_options, add_nats_url, settings_from
from tep.health import serve_health
from tep.logging_setup import configure_logging

__all__ = ["register", "run"]

_EPILOG = """\
examples:
  tep orchestrator
  tep orchestrator --nats-url nats://10.0.0.5:4222 --health-port 8080

Start as many as you like: one holds the lease (KV bucket tep_leases) and decides, the others
stand by and take over within seconds when it stops or dies. GET /healthz answers 200 while
connected to NATS, with {"role", "leader", ...}. SIGTERM or Ctrl-C stops within a couple of
seconds, handing unfinished events and the lease to a standby.
Tuning: TEP_ORCHESTRATOR_LEASE_S, TEP_ORCHESTRATOR_ACK_WAIT_S, TEP_ORCHESTRATOR_CACHE_SIZE, ...
"""


def register(subparsers: Any) -> None:
    """Add ``tep orchestrator``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "orchestrator",
        help="run the orchestrator: dispatch actions as their dependencies finish",
        description="Consume plan.submitted, action outcomes and cancel requests; decide what "
        "runs next (dependencies, conditions, skips, failure, cancellation, deadlines) and "
        "append the decisions to the log. Replicas elect one leader; decisions are guarded in "
        "the log, so no action is ever dispatched twice.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_health_options(parser, "connected to NATS")
    parser.add_argument(
        "--instance-id",
        default=None,
        help="this replica's name in the lease and in logs (default: random)",
    )
    add_nats_url(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the orchestrator until SIGTERM / SIGINT."""
    configure_logging("orchestrator")
    settings = settings_from(args)
    config = OrchestratorConfig.from_env()
    anyio.run(_serve, settings, config, args.instance_id, args.health_host, args.health_port)
    return 0


async def _serve(
    settings: Settings,
    config: OrchestratorConfig,
    instance_id: str | None,
    health_host: str,
    health_port: int | None,
) -> None:
    nc = await connect(
        settings.nats_url, name="tep-orchestrator", timeout_s=settings.connect_timeout_s
    )
    try:
        await ensure_log(nc.jetstream(), settings)
        service = Orchestrator(nc, settings, config, instance_id=instance_id)

        def report() -> tuple[bool, dict[str, Any]]:
            return bool(nc.is_connected), service.status()

        async with anyio.create_task_group() as group:
            group.start_soon(_stop_on_signal, group.cancel_scope)
            if health_port is not None:
                await group.start(serve_health, health_host, health_port, report)
            await group.start(service.run)
    finally:
        with anyio.CancelScope(shield=True):
            await nc.close()


async def _stop_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            scope.cancel()
            return
