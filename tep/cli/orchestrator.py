"""``tep orchestrator``: run the orchestrator role (any number of processes share the work)."""

from __future__ import annotations

import argparse
from typing import Any

from eventstore.jetstream.connection import NatsClient
from orchestrator.config import OrchestratorConfig
from orchestrator.service import Orchestrator
from tep.cli.common import add_nats_url, settings_from
from tep.roles import RoleService, add_health_options, run_role

__all__ = ["register", "run"]

_EPILOG = """\
examples:
  tep orchestrator
  tep orchestrator --nats-url nats://10.0.0.5:4222 --health-port 8080

Start as many as you like: executions are spread over the deployment's partitions (16 by
default, TEP_PARTITIONS when first provisioned) and the processes share them evenly, each
holding its partitions by lease (KV bucket tep_leases); when one stops the others take its
partitions at once, when one dies within TEP_ORCHESTRATOR_LEASE_S (3 s), and a new one gets
its share from the others. `tep status --partitions` shows who holds what. GET /healthz
answers 200 while connected to NATS, with {"role", "partitions", "members", ...}. SIGTERM or
Ctrl-C stops within a couple of seconds, handing unfinished events and the partitions over.
Tuning: TEP_ORCHESTRATOR_LEASE_S, TEP_ORCHESTRATOR_ACK_WAIT_S, TEP_ORCHESTRATOR_CACHE_SIZE, ...
"""


def register(subparsers: Any) -> None:
    """Add ``tep orchestrator``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "orchestrator",
        help="run the orchestrator: dispatch actions as their dependencies finish",
        description="Consume plan.submitted, action outcomes and cancel requests; decide what "
        "runs next (dependencies, conditions, skips, failure, cancellation, deadlines) and "
        "append the decisions to the log. Processes share the partitions of the executions; "
        "decisions are guarded in the log, so no action is ever dispatched twice.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_health_options(parser, "connected to NATS")
    parser.add_argument(
        "--instance-id",
        default=None,
        help="this process's name in the leases and in logs (default: random)",
    )
    add_nats_url(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the orchestrator until SIGTERM / SIGINT."""
    settings = settings_from(args)
    config = OrchestratorConfig.from_env()

    def build(nc: NatsClient) -> RoleService:
        service = Orchestrator(nc, settings, config, instance_id=args.instance_id)
        return RoleService(
            run=service.run,
            report=lambda: (bool(nc.is_connected), service.status()),
            sample=service.sample_metrics,
        )

    return run_role(
        args, settings, role="orchestrator", client_name="tep-orchestrator", build=build
    )
