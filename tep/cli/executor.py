"""``tep executor``: serve one queue's action requests (HTTP and Python handlers)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from eventstore.jetstream.connection import NatsClient
from executor.config import DEFAULT_CONCURRENCY, ExecutorConfig
from executor.errors import HandlerLoadError
from executor.handlers import load_handler_modules
from executor.secrets import check_secret_environment
from executor.worker import Executor
from tep.cli.common import UsageError, add_nats_url, settings_from
from tep.roles import RoleService, add_health_options, run_role

__all__ = ["register", "run"]

_EPILOG = """\
examples:
  tep executor                                   # queue "http", 32 requests at a time
  tep executor --queue http --concurrency 64 --health-port 8081
  tep executor --queue resize-image --handlers myapp.handlers
  tep executor --allow-host api.internal --allow-cidr 10.20.0.0/16
  tep executor --allow-env REGION --allow-env STAGE

Run as many executors per queue as you like: they share the queue's work. Secrets referenced
as {{secrets.NAME}} are read from the environment variable TEP_SECRET_NAME at call time (at
least 8 characters), and go only to the hosts TEP_SECRET_NAME_HOSTS (or the JSON file named by
TEP_EXECUTOR_SECRETS_FILE) grants them, e.g. TEP_SECRET_NAME_HOSTS=api.example.com.
HTTP calls to loopback, private, link-local, CGNAT, multicast and cloud-metadata addresses are
refused (target_not_allowed) unless opened with --allow-host or --allow-cidr.
{{env.NAME}} reads this process's variable NAME at call time, only if --allow-env NAME (or
TEP_EXECUTOR_ALLOW_ENV) lists it; the value is not redacted, so keep secrets out of it.
SIGTERM or Ctrl-C stops pulling, lets in-flight requests finish (--shutdown-grace), and hands
the rest back to the queue.
"""


def register(subparsers: Any) -> None:
    """Add ``tep executor``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "executor",
        help="serve a queue of action requests (HTTP calls and Python handlers)",
        description="Serve one queue: take action.execute.requested messages from the queue's "
        "durable consumer (shared with every other executor of the queue), run each attempt "
        "with retries, timeouts and an Idempotency-Key, and record action.started / "
        "attempt.failed / completed / failed in the log.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--queue",
        default=None,
        help="the queue to serve (default: $TEP_EXECUTOR_QUEUE or http)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        metavar="N",
        help=f"requests this process runs at once (default: $TEP_EXECUTOR_CONCURRENCY or "
        f"{DEFAULT_CONCURRENCY})",
    )
    parser.add_argument(
        "--handlers",
        metavar="MODULE",
        nargs="+",
        action="extend",
        default=None,
        help="import MODULE(s) whose @handler functions serve further action types",
    )
    parser.add_argument(
        "--max-output-bytes",
        type=int,
        default=None,
        metavar="BYTES",
        help="largest response body / output kept; larger fails with output_too_large "
        "(default: $TEP_MAX_OUTPUT_BYTES, else the hard cap $TEP_PAYLOAD_MAX_BYTES, 64 MiB)",
    )
    parser.add_argument(
        "--shutdown-grace",
        type=float,
        default=None,
        metavar="SECONDS",
        help="on SIGTERM, how long in-flight requests may finish (default 5)",
    )
    parser.add_argument(
        "--allow-host",
        metavar="HOST",
        action="append",
        default=None,
        help="let HTTP calls reach HOST whatever it resolves to (*.example.com: its "
        "subdomains); repeatable (default: $TEP_EXECUTOR_ALLOW_HOSTS)",
    )
    parser.add_argument(
        "--allow-cidr",
        metavar="CIDR",
        action="append",
        default=None,
        help="let HTTP calls reach addresses in CIDR although they are internal (e.g. "
        "10.20.0.0/16, 127.0.0.0/8); repeatable (default: $TEP_EXECUTOR_ALLOW_CIDRS)",
    )
    parser.add_argument(
        "--allow-env",
        metavar="NAME",
        action="append",
        default=None,
        help="let plans read this process's environment variable NAME as {{env.NAME}} (not "
        "redacted: no secrets); repeatable (default: $TEP_EXECUTOR_ALLOW_ENV)",
    )
    add_health_options(parser, "connected and serving")
    add_nats_url(parser)
    parser.set_defaults(handler=run)


def config_from(args: argparse.Namespace) -> ExecutorConfig:
    """The executor's settings from flags, then ``TEP_EXECUTOR_*`` variables, then defaults."""
    return ExecutorConfig.from_env(
        queue=args.queue,
        concurrency=args.concurrency,
        handler_modules=tuple(args.handlers) if args.handlers else None,
        max_output_bytes=args.max_output_bytes,
        shutdown_grace_s=args.shutdown_grace,
        allow_hosts=tuple(args.allow_host) if args.allow_host else None,
        allow_cidrs=tuple(args.allow_cidr) if args.allow_cidr else None,
        allow_env=tuple(args.allow_env) if args.allow_env else None,
    )


def run(args: argparse.Namespace) -> int:
    """Run the executor until SIGTERM / SIGINT (a second signal stops at once)."""
    config = config_from(args)
    check_secret_environment(os.environ)
    try:
        load_handler_modules(config.handler_modules)
    except HandlerLoadError as exc:
        raise UsageError(str(exc)) from exc
    settings = settings_from(args)

    def build(nc: NatsClient) -> RoleService:
        executor = Executor(nc, settings, config)

        def report() -> tuple[bool, dict[str, Any]]:
            healthy = bool(nc.is_connected and executor.running)
            return healthy, {
                "role": "executor",
                "queue": config.queue,
                "executor_id": config.executor_id,
                "nats_connected": bool(nc.is_connected),
                "serving": executor.running,
                "in_flight": executor.in_flight,
                "handled": dict(executor.stats),
            }

        return RoleService(
            run=executor.run, report=report, stop=executor.stop, sample=executor.sample_metrics
        )

    return run_role(
        args, settings, role="executor", client_name=f"tep-executor-{config.queue}", build=build
    )
