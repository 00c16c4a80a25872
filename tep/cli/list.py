"""``tep list``: executions from the view's index, by status and/or plan."""

from __future__ import annotations

import argparse

import anyio
import msgspec

from projections import ExecutionSummary, StateManager, ViewStats
from projections.view import LISTING_STATUSES
from tep.cli.common import EXIT_OK, add_nats_url, print_json, settings_from
from tep.cli.text_format import format_table

__all__ = ["register"]

_EPILOG = """\
examples:
  tep list
  tep list --status running
  tep list --status waiting                  # waitpoints waiting for someone to `tep resume`
  tep list --plan welcome-email --status failed --json | jq -r '.executions[].execution_id'

Read from the projected view's index (run `tep projector`), oldest first. --status waiting
lists the executions with a waitpoint waiting to be resumed (they are running). --json prints
{"executions": [{execution_id, plan_id, status, submitted_at, started_at, completed_at}],
 "count": N, "stats": {"executions": {status: n}, "actions": {status: n}}}.
exit codes: 0 ok, 2 bad option, 3 NATS unreachable.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``tep list``."""
    parser = subparsers.add_parser(
        "list",
        help="list executions (optionally by status and/or plan)",
        description="List executions from the view's index, optionally only those in one "
        "status and/or of one plan, with the view's global counters.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--status",
        choices=LISTING_STATUSES,
        help="only this status (waiting: a waitpoint waits to be resumed)",
    )
    parser.add_argument("--plan", metavar="PLAN_ID", help="only executions of this plan id")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    add_nats_url(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handle ``tep list``."""
    executions, stats = anyio.run(_list, args)
    if args.json:
        print_json(
            {
                "executions": msgspec.to_builtins(executions),
                "count": len(executions),
                "stats": msgspec.to_builtins(stats),
            }
        )
        return EXIT_OK
    rows = [
        [e.execution_id, e.plan_id, e.status, e.submitted_at or "-", e.completed_at or "-"]
        for e in executions
    ]
    for line in format_table(["EXECUTION", "PLAN", "STATUS", "SUBMITTED", "COMPLETED"], rows):
        print(line)
    counts = ", ".join(f"{n} {status}" for status, n in stats.executions.items() if n)
    print(f"\n{len(executions)} shown; all executions: {counts or 'none'}")
    return EXIT_OK


async def _list(args: argparse.Namespace) -> tuple[list[ExecutionSummary], ViewStats]:
    async with await StateManager.connect(settings=settings_from(args), name="tep-cli") as sm:
        executions = await sm.list_executions(status=args.status, plan_id=args.plan)
        return executions, await sm.get_stats()
