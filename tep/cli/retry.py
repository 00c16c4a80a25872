"""``tep retry``: re-run an ended execution from a step (``execution.retried``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import anyio

from eventstore.fold import apply
from eventstore.jetstream.log import EventLog
from eventstore.state import ExecutionState
from projections.errors import (
    ExecutionNotFoundError,
    InvalidExecutionIdError,
    RetryRefusedError,
)
from projections.retry import retry
from tep.cli.common import (
    EXIT_NOT_COMPLETED,
    EXIT_OK,
    EXIT_TIMEOUT,
    UsageError,
    add_nats_url,
    local_user,
    print_json,
)
from tep.cli.executions import follow, open_log, require_execution

__all__ = ["register"]

_EPILOG = """\
examples:
  tep retry exe_018f2a9c3b1d4e5f6a7b                      # what failed or was cancelled, and after
  tep retry exe_018f2a9c3b1d4e5f6a7b --from charge        # charge and everything after it
  tep retry exe_018f2a9c3b1d4e5f6a7b --only-failed --reason "card API fixed" --wait

Which actions run again (the others keep their results; their outputs feed the ones that run):
  --from A          A and everything downstream of it (its dependents, theirs, ... and its
                    on_error routes), whatever their status; repeat it for several
  --only-failed     the failed and cancelled actions, and downstream of them only what did
                    not complete (completed actions keep their results)
  (neither)         the failed and cancelled actions and everything downstream of them
Both flags together: the union. A failed or cancelled execution can be retried; a completed
one only with --from (a replay from there). The retry is appended as execution.retried (who
and why included): history is never rewritten, each action's earlier runs stay in its `runs`
(tep status --json), and the actions run again under keys <id>~<run> (tep events).
exit codes: 0 retried (with --wait: the new run completed); 1 with --wait: the new run ended
other than completed; 2 bad input or refused (unknown execution or action, the execution is
still running, nothing to retry, an action would stay failed, another retry came first);
3 NATS unreachable; 124 --wait timed out.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``tep retry``."""
    parser = subparsers.add_parser(
        "retry",
        help="re-run a failed, cancelled or completed execution from a step",
        description="Re-open an ended execution: reset the named actions (or what failed) and "
        "everything downstream of them, keep the upstream outputs, and run on. Checked "
        "against the execution's history first: a refused retry appends nothing.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("execution_id", metavar="EXECUTION", help="the execution id")
    parser.add_argument(
        "--from",
        dest="from_actions",
        metavar="ACTION",
        action="append",
        default=[],
        help="run again from this action and everything downstream of it (repeatable)",
    )
    parser.add_argument(
        "--only-failed",
        action="store_true",
        help="run again only what failed or was cancelled, and what did not complete after it",
    )
    parser.add_argument("--reason", metavar="TEXT", help="why (recorded in the event)")
    parser.add_argument(
        "--requested-by",
        metavar="NAME",
        help="who retries, recorded in the event (default: the local user name)",
    )
    parser.add_argument("--wait", action="store_true", help="wait until the new run has ended")
    parser.add_argument("--timeout", type=float, metavar="S", help="with --wait: give up after S s")
    parser.add_argument(
        "--json",
        action="store_true",
        help='print one JSON document {"execution_id", "run", "reset", "kept", "status", ...}',
    )
    add_nats_url(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handle ``tep retry``."""
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    if args.reason is not None and not args.reason.strip():
        raise UsageError("--reason needs a text")
    try:
        return anyio.run(_retry, args)
    except (RetryRefusedError, ExecutionNotFoundError, InvalidExecutionIdError) as exc:
        raise UsageError(str(exc)) from None


async def _retry(args: argparse.Namespace) -> int:
    execution_id = args.execution_id
    async with open_log(args) as log:
        await require_execution(log, execution_id)
        state = await retry(
            log,
            execution_id,
            from_actions=args.from_actions,
            only_failed=args.only_failed,
            requested_by=args.requested_by or local_user(),
            reason=args.reason,
        )
        reset = [a.action_id for a in state.actions.values() if a.run == state.run]
        retried_at = state.last_sequence
        if not args.wait:
            _report(args, state, reset, retried_at)
            return EXIT_OK
        if not args.json:
            _report(args, state, reset, retried_at)
        final = await _new_run_end(log, execution_id, state.run, args.timeout)
    if final is None:
        if args.json:
            print_json(_document(state, reset, retried_at))
        sys.stderr.write(
            f"tep: run {state.run} of {execution_id} did not end within {args.timeout:g}s\n"
        )
        return EXIT_TIMEOUT
    if args.json:
        print_json(_document(final, reset, retried_at))
    else:
        print(f"{execution_id} {final.status}")
    return EXIT_OK if final.status == "completed" else EXIT_NOT_COMPLETED


def _document(state: ExecutionState, reset: list[str], sequence: int) -> dict[str, Any]:
    again = set(reset)
    return {
        "execution_id": state.execution_id,
        "run": state.run,
        "reset": reset,
        "kept": [a for a in state.actions if a not in again],
        "status": state.status,
        "sequence": sequence,
    }


def _report(args: argparse.Namespace, state: ExecutionState, reset: list[str], at: int) -> None:
    if args.json:
        print_json(_document(state, reset, at))
        return
    print(
        f"{state.execution_id}: run {state.run} started; running again: {', '.join(reset)}",
        flush=True,
    )


async def _new_run_end(
    log: EventLog, execution_id: str, run: int, timeout: float | None
) -> ExecutionState | None:
    """Fold the execution's events until run ``run`` has ended (``None``: ``timeout`` ran out)."""
    state: ExecutionState | None = None
    stream = follow(log, execution_id)
    try:
        async with asyncio.timeout(timeout):
            async for record in stream:
                state = apply(state, record)
                if state is not None and state.terminal and state.run >= run:
                    return state
    except TimeoutError:
        pass
    finally:
        await stream.aclose()
    return None
