"""``tep projector``: run the projection worker (log -> KV current-state view)."""

from __future__ import annotations

import argparse
import signal
from typing import Any

import anyio

from eventstore.config import Settings
from eventstore.jetstream.connection import connect
from projections import Projector
from projections.projector import DEFAULT_BATCH
from tep.cli.common import add_health_options, add_nats_url, settings_from
from tep.health import serve_health
from tep.logging_setup import configure_logging

__all__ = ["register"]

_EPILOG = """\
examples:
  tep projector
  tep projector --nats-url nats://10.0.0.5:4222 --health-port 8082

Any number of projectors may run: each follows the whole log from the view's checkpoint and
writes with compare-and-set, so they never double-count. SIGTERM / Ctrl-C stops cleanly.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``tep projector``."""
    parser = subparsers.add_parser(
        "projector",
        help="run the projector: fold the event log into the KV current-state view",
        description="Follow the event log and keep the KV view (per-execution state, index, "
        "counters) up to date. Poison events go to tep.deadletter.projector.<subject>.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=DEFAULT_BATCH,
        metavar="N",
        help="most events folded between writes (default %(default)s)",
    )
    add_health_options(parser, "connected and following the log")
    add_nats_url(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the projector until SIGTERM / SIGINT."""
    configure_logging("projector")
    settings = settings_from(args)
    anyio.run(_serve, settings, args.batch, args.health_host, args.health_port)
    return 0


async def _serve(settings: Settings, batch: int, health_host: str, health_port: int | None) -> None:
    nc = await connect(
        settings.nats_url, name="tep-projector", timeout_s=settings.connect_timeout_s
    )
    try:
        projector = Projector(nc, settings, batch_size=batch)

        def report() -> tuple[bool, dict[str, Any]]:
            return projector.report()

        async with anyio.create_task_group() as group:
            group.start_soon(_stop_on_signal, group.cancel_scope)
            if health_port is not None:
                await group.start(serve_health, health_host, health_port, report)
            await projector.run()
    finally:
        await nc.close()


async def _stop_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            scope.cancel()
            return
