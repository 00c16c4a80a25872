"""``tep queue``: the operator's per-queue settings (concurrency across all executors)."""

from __future__ import annotations

import argparse

import anyio

from eventstore.access import Role
from eventstore.jetstream.queues import (
    DEFAULT_QUEUE_CONCURRENCY,
    QueueLimit,
    QueueStatus,
    queue_limit_problem,
    queue_statuses,
    set_queue_limit,
)
from tep.cli.common import EXIT_OK, UsageError, add_nats_url, print_json, settings_from
from tep.cli.executions import open_log
from tep.cli.text_format import format_table

__all__ = ["register"]

_EPILOG = f"""\
examples:
  tep queue show
  tep queue show http --json
  tep queue set http --concurrency 20
  tep queue set http --unlimited

A queue's concurrency is the most unfinished requests of that queue at once, across every
executor serving it (the consumer's max_ack_pending). It is stored in the KV bucket tep_queues,
applied to the queue's consumer at once, and again whenever an executor starts; a queue never
set gets {DEFAULT_QUEUE_CONCURRENCY}. Plans cannot change it: a plan's
queues.<name>.concurrency_limit caps that execution alone.
--json: show prints {{"queues": [{{queue, concurrency, configured, max_ack_pending, in_flight,
backlog}}]}}; set prints {{queue, concurrency, max_ack_pending}} (max_ack_pending null: no
executor has served the queue yet; the first one applies the setting).
exit codes: 0 ok, 2 bad queue name or concurrency, 3 NATS unreachable.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``tep queue``."""
    parser = subparsers.add_parser(
        "queue",
        help="show or set a queue's concurrency across all executors",
        description="Show the work queues, or set how many requests of one queue may run at "
        "once across all of its executors.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="queue_command", metavar="<show|set>", required=True)

    show = commands.add_parser(
        "show",
        help="queues with their setting, consumer limit, in-flight and backlog counts",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    show.add_argument("queue", metavar="NAME", nargs="?", help="only this queue")
    show.add_argument("--json", action="store_true", help="print one JSON document")
    add_nats_url(show)
    show.set_defaults(handler=run_show)

    set_ = commands.add_parser(
        "set",
        help="set a queue's concurrency (applied to its consumer at once)",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    set_.add_argument("queue", metavar="NAME", help="the queue, e.g. http")
    limit = set_.add_mutually_exclusive_group(required=True)
    limit.add_argument(
        "--concurrency", type=int, metavar="N", help="at most N requests at once (1 to 10000)"
    )
    limit.add_argument(
        "--unlimited",
        action="store_true",
        help="no queue-wide limit (each executor's own --concurrency still holds)",
    )
    set_.add_argument("--json", action="store_true", help="print one JSON document")
    add_nats_url(set_)
    set_.set_defaults(handler=run_set)


def _checked(queue: str, concurrency: int | None) -> None:
    problem = queue_limit_problem(queue, concurrency)
    if problem is not None:
        raise UsageError(problem)


def _limit_text(limit: QueueLimit | None) -> str:
    if limit is None:
        return f"default ({DEFAULT_QUEUE_CONCURRENCY})"
    return "unlimited" if limit.concurrency is None else str(limit.concurrency)


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _consumer_limit(value: int | None) -> str:
    if value is None:
        return "no consumer yet"
    return "unlimited" if value < 0 else str(value)


def run_show(args: argparse.Namespace) -> int:
    """Handle ``tep queue show``."""
    if args.queue is not None:
        _checked(args.queue, None)
    statuses = anyio.run(_show, args)
    if args.json:
        print_json({"queues": [_status_document(s) for s in statuses]})
        return EXIT_OK
    if not statuses:
        print("no queues yet: none configured and no executor has started")
        return EXIT_OK
    rows = [
        [
            s.queue,
            _limit_text(s.limit),
            _consumer_limit(s.max_ack_pending),
            _count(s.in_flight),
            _count(s.backlog),
        ]
        for s in statuses
    ]
    for line in format_table(["QUEUE", "CONCURRENCY", "CONSUMER", "IN FLIGHT", "BACKLOG"], rows):
        print(line)
    return EXIT_OK


def _status_document(status: QueueStatus) -> dict[str, object]:
    limit = status.limit
    return {
        "queue": status.queue,
        "concurrency": DEFAULT_QUEUE_CONCURRENCY if limit is None else limit.concurrency,
        "configured": limit is not None,
        "max_ack_pending": status.max_ack_pending,
        "in_flight": status.in_flight,
        "backlog": status.backlog,
    }


async def _show(args: argparse.Namespace) -> list[QueueStatus]:
    async with open_log(args) as log:
        return await queue_statuses(log.js, settings_from(args), args.queue)


def run_set(args: argparse.Namespace) -> int:
    """Handle ``tep queue set``."""
    concurrency: int | None = None if args.unlimited else args.concurrency
    _checked(args.queue, concurrency)
    applied = anyio.run(_set, args, concurrency)
    if args.json:
        print_json({"queue": args.queue, "concurrency": concurrency, "max_ack_pending": applied})
        return EXIT_OK
    wanted = "unlimited" if concurrency is None else f"concurrency {concurrency}"
    if applied is None:
        print(f"queue {args.queue}: {wanted} (applied when its first executor starts)")
    else:
        print(f"queue {args.queue}: {wanted}, applied to its consumer")
    return EXIT_OK


async def _set(args: argparse.Namespace, concurrency: int | None) -> int | None:
    async with open_log(args, role=Role.ADMIN) as log:
        return await set_queue_limit(log.js, settings_from(args), args.queue, concurrency)
