"""``tep executor``: serve one queue's action requests (HTTP and Python handlers)."""

from __future__ import annotations

import argparse
import os
import signal
from typing import Any

import anyio

from eventstore.config import Settings
from eventstore.jetstream.connection import connect
from eventstore.jetstream.provision import ensure_log
from executor.config import DEFAULT_CONCURRENCY, DEFAULT_MAX_OUTPUT_BYTES, ExecutorConfig
from executor.errors import HandlerLoadError
from executor.handlers import load_handler_modules
from executor.worker import Executor
from tep.cli.common import UsageError, add_health_options, add_nats_url, settings_from
from tep.health import serve_health
from tep.logging_setup import configure_logging

__all__ = ["register", "run"]

_EPILOG = """\
examples:
  tep executor                                   # queue "http", 32 requests at a time
  tep executor --queue http --concurrency 64 --health-port 8081
  tep executor --queue resize-image --handlers myapp.handlers

Run as many executors per queue as you like: they share the queue's work. Secrets referenced
as {{secrets.NAME}} are read from the environment variable TEP_SECRET_NAME at call time.
SIGTERM or Ctrl-C stops pulling, lets in-flight requests finish (--shutdown-grace), and hands
the rest back to the queue.
"""


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"{name}={value!r} is not an integer") from None


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
        default=os.environ.get("TEP_EXECUTOR_QUEUE", "http"),
        help="the queue to serve (default: $TEP_EXECUTOR_QUEUE or %(default)s)",
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
        default=[],
        help="import MODULE(s) whose @handler functions serve further action types",
    )
    parser.add_argument(
        "--max-output-bytes",
        type=int,
        default=None,
        metavar="BYTES",
        help=f"largest response body / output kept; larger fails with output_too_large "
        f"(default: $TEP_MAX_OUTPUT_BYTES or {DEFAULT_MAX_OUTPUT_BYTES})",
    )
    parser.add_argument(
        "--shutdown-grace",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="on SIGTERM, how long in-flight requests may finish (default %(default)s)",
    )
    add_health_options(parser, "connected and serving")
    add_nats_url(parser)
    parser.set_defaults(handler=run)


def config_from(args: argparse.Namespace) -> ExecutorConfig:
    """The executor's settings from flags, then ``TEP_*`` variables, then defaults."""
    concurrency = args.concurrency
    if concurrency is None:
        concurrency = _env_int("TEP_EXECUTOR_CONCURRENCY", DEFAULT_CONCURRENCY)
    max_output = args.max_output_bytes
    if max_output is None:
        max_output = _env_int("TEP_MAX_OUTPUT_BYTES", DEFAULT_MAX_OUTPUT_BYTES)
    try:
        return ExecutorConfig(
            queue=args.queue,
            concurrency=concurrency,
            handler_modules=tuple(args.handlers),
            max_output_bytes=max_output,
            shutdown_grace_s=args.shutdown_grace,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def run(args: argparse.Namespace) -> int:
    """Run the executor until SIGTERM / SIGINT."""
    configure_logging("executor")
    config = config_from(args)
    try:
        load_handler_modules(config.handler_modules)
    except HandlerLoadError as exc:
        raise UsageError(str(exc)) from exc
    settings = settings_from(args)
    anyio.run(_serve, settings, config, args.health_host, args.health_port)
    return 0


async def _serve(
    settings: Settings, config: ExecutorConfig, health_host: str, health_port: int | None
) -> None:
    nc = await connect(
        settings.nats_url, name=f"tep-executor-{config.queue}", timeout_s=settings.connect_timeout_s
    )
    try:
        await ensure_log(nc.jetstream(), settings)
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

        async with anyio.create_task_group() as group:
            group.start_soon(_stop_on_signal, executor, group.cancel_scope)
            if health_port is not None:
                await group.start(serve_health, health_host, health_port, report)
            await executor.run()
            group.cancel_scope.cancel()
    finally:
        await nc.close()


async def _stop_on_signal(executor: Executor, scope: anyio.CancelScope) -> None:
    """First signal: stop gracefully. Second: stop now."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        stopping = False
        async for _ in signals:
            if stopping:
                scope.cancel()
                return
            stopping = True
            executor.stop()
