"""``tep projector``: run the projection worker (log -> KV current-state view)."""

from __future__ import annotations

import argparse

from eventstore.jetstream.connection import NatsClient
from projections import Projector
from projections.projector import DEFAULT_BATCH
from tep.cli.common import add_nats_url, settings_from
from tep.roles import RoleService, add_health_options, run_role

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
    settings = settings_from(args)

    def build(nc: NatsClient) -> RoleService:
        projector = Projector(nc, settings, batch_size=args.batch)
        return RoleService(run=projector.run, report=projector.report)

    return run_role(
        args, settings, role="projector", client_name="tep-projector", build=build, provision=False
    )
