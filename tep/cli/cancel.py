"""``tep cancel``: ask for an execution to stop (``execution.cancel.requested``)."""

from __future__ import annotations

import argparse
import sys

import anyio

from projections.cancel import request_cancel
from tep.cli.common import (
    EXIT_NOT_COMPLETED,
    EXIT_OK,
    EXIT_TIMEOUT,
    UsageError,
    add_nats_url,
    print_json,
)
from tep.cli.executions import open_log, require_execution, wait_for_terminal

__all__ = ["register"]

_EPILOG = """\
examples:
  tep cancel exe_018f2a9c3b1d4e5f6a7b
  tep cancel exe_018f2a9c3b1d4e5f6a7b --reason "wrong input" --wait --timeout 30

The orchestrator dispatches nothing new once cancellation is requested; running actions finish
(their late results are recorded but ignored) and the execution ends as cancelled.
exit codes: 0 cancellation requested (with --wait: the execution is cancelled), or it was already
cancelled or already being cancelled; 1 the execution had already completed or failed, so there
is nothing to cancel (with --wait: it ended other than cancelled); 2 unknown execution;
3 NATS unreachable; 124 --wait timed out.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``tep cancel``."""
    parser = subparsers.add_parser(
        "cancel",
        help="request cancellation of an execution",
        description="Append execution.cancel.requested for a running execution. Idempotent: a "
        "second request, or one for an execution already cancelled, changes nothing.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("execution_id", metavar="ID", help="the execution id")
    parser.add_argument("--reason", help="why (recorded in the event and the state)")
    parser.add_argument(
        "--wait", action="store_true", help="wait until the execution has actually ended"
    )
    parser.add_argument("--timeout", type=float, metavar="S", help="with --wait: give up after S s")
    parser.add_argument(
        "--json",
        action="store_true",
        help='print one JSON document {"execution_id", "outcome", "status"}',
    )
    add_nats_url(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handle ``tep cancel``."""
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    return anyio.run(_cancel, args)


def _report(args: argparse.Namespace, outcome: str, status: str, message: str) -> None:
    if args.json:
        print_json({"execution_id": args.execution_id, "outcome": outcome, "status": status})
    else:
        print(message)


async def _cancel(args: argparse.Namespace) -> int:
    execution_id = args.execution_id
    async with open_log(args) as log:
        await require_execution(log, execution_id)
        cancellation, state = await request_cancel(log, execution_id, args.reason)
        outcome = cancellation.outcome
        if outcome == "already_ended":
            code = EXIT_OK if state.status == "cancelled" else EXIT_NOT_COMPLETED
            _report(
                args,
                outcome,
                state.status,
                f"{execution_id} already {state.status}; nothing to cancel",
            )
            return code
        message = (
            f"{execution_id}: cancellation already requested"
            if outcome == "already_requested"
            else f"{execution_id}: cancellation requested"
        )
        if not args.wait:
            _report(args, outcome, state.status, message)
            return EXIT_OK
        if not args.json:
            print(message, flush=True)
        final, finished = await wait_for_terminal(log, execution_id, args.timeout)
    if not finished or final is None:
        if args.json:
            print_json({"execution_id": execution_id, "outcome": outcome, "status": "running"})
        sys.stderr.write(f"tep: {execution_id} did not end within {args.timeout:g}s\n")
        return EXIT_TIMEOUT
    _report(args, outcome, final.status, f"{execution_id} {final.status}")
    return EXIT_OK if final.status == "cancelled" else EXIT_NOT_COMPLETED
