"""``tep status``: an execution's current state from the KV view, or as of a point in time."""

from __future__ import annotations

import argparse
from datetime import datetime

import anyio
import msgspec

from eventstore.state import ExecutionState
from eventstore.subjects import execution_id_problem
from projections import StateManager
from projections.history import parse_at
from tep.cli.common import EXIT_OK, UsageError, add_nats_url, print_json, settings_from
from tep.cli.execution_views import state_table
from tep.cli.partitions_view import run_partitions
from tep.cli.text_format import format_duration

__all__ = ["register", "status_lines"]

_EPILOG = """\
examples:
  tep status exe_018f2a9c3b1d4e5f6a7b
  tep status exe_018f2a9c3b1d4e5f6a7b --json | jq .counts
  tep status exe_018f2a9c3b1d4e5f6a7b --at 1234              # as of stream sequence 1234
  tep status exe_018f2a9c3b1d4e5f6a7b --at 2025-01-31T12:00:00Z
  tep status --partitions                                  # holders and backlog per partition

Without --at the state comes from the projected view (run `tep projector`); with --at it is
folded from the execution's history in the log, up to that sequence or moment. A waiting
action's note says what it waits for and until when (a waitpoint: how to `tep resume` it; a
sleep: when it wakes) and the last resume refused, if any; --json has it under "wait".
An output, input or resume data above TEP_PAYLOAD_INLINE_BYTES is stored in the payload
bucket: the table says so, --json shows its reference, --json --resolve the value.
exit codes: 0 ok, 2 unknown execution or bad --at, 3 NATS unreachable.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``tep status``."""
    parser = subparsers.add_parser(
        "status",
        help="show an execution's current state (from the view), or its state at a past point",
        description="Print one execution's state: status, timings, counts and a table of its "
        "actions (status, attempts, duration, error). --json prints the state as one JSON "
        "document; --at travels back to a stream sequence or an ISO-8601 time.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("execution_id", metavar="ID", nargs="?", help="the execution id")
    parser.add_argument(
        "--partitions",
        action="store_true",
        help="instead of an execution: which orchestrator process holds each partition, "
        "and each partition's backlog (pending: not yet delivered; unsettled: delivered, "
        "not yet acknowledged)",
    )
    parser.add_argument(
        "--at",
        metavar="SEQ|ISO-TIME",
        help="the state as of this stream sequence or time, folded from the log",
    )
    parser.add_argument(
        "--min-sequence",
        type=int,
        default=None,
        metavar="SEQ",
        help="first wait (up to 10s) until the view has applied this stream sequence",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument(
        "--resolve",
        action="store_true",
        help="with --json: write out values stored by reference (large outputs, input, resume "
        'data) instead of their {"$ref": {"digest", "size", "bucket"}}',
    )
    add_nats_url(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handle ``tep status``."""
    if args.partitions:
        if args.execution_id is not None or args.at is not None:
            raise UsageError("--partitions takes no execution id and no --at")
        return run_partitions(args)
    if args.execution_id is None:
        raise UsageError("an execution id is required (or --partitions)")
    problem = execution_id_problem(args.execution_id)
    if problem:
        raise UsageError(problem)
    at = None
    if args.at is not None:
        try:
            at = parse_at(args.at)
        except ValueError as exc:
            raise UsageError(f"--at: {exc}") from None
    state, in_log = anyio.run(_read, args, at)
    if state is None and in_log:
        raise UsageError(
            f"execution {args.execution_id!r} is in the log but not in the view yet: "
            "is a projector running (tep projector)? `tep events` reads the log directly"
        )
    if state is None:
        where = f" at {args.at}" if args.at is not None else ""
        raise UsageError(f"unknown execution {args.execution_id!r}{where}")
    if args.json:
        print_json(msgspec.to_builtins(state))
    else:
        for line in status_lines(state, at=args.at):
            print(line)
    return EXIT_OK


async def _read(
    args: argparse.Namespace, at: int | datetime | None
) -> tuple[ExecutionState | None, bool]:
    """The state, and (when there is none in the view) whether the log has the execution."""
    async with await StateManager.connect(settings=settings_from(args), name="tep-cli") as sm:
        state = await sm.get_execution_state(
            args.execution_id, at=at, min_sequence=args.min_sequence, resolve=args.resolve
        )
        in_log = state is None and at is None and await sm.in_log(args.execution_id)
        return state, in_log


def status_lines(state: ExecutionState, *, at: str | None = None) -> list[str]:
    """The human-readable status: a header block, then one row per action."""
    counts = state.counts
    parts = [f"{counts.total} total"]
    for name in ("completed", "failed", "skipped", "running", "waiting", "pending", "cancelled"):
        value = getattr(counts, name)
        if value:
            parts.append(f"{value} {name}")
    elapsed = _elapsed(state)
    lines = [
        f"execution  {state.execution_id}",
        f"plan       {state.plan_id}",
        f"status     {state.status}" + (f" in {elapsed}" if elapsed else ""),
        f"submitted  {state.submitted_at or '-'}",
        f"completed  {state.completed_at or '-'}",
        f"actions    {', '.join(parts)}",
        f"sequence   {state.last_sequence}" + (f" (as of {at})" if at else ""),
    ]
    if state.parent is not None:
        link = state.parent
        lines.append(
            f"parent     {link.execution_id} (sub-plan action {link.action_id}, depth {link.depth})"
        )
    if state.error is not None:
        lines.append(f"error      {state.error.code}: {state.error.message}")
    if state.cancel_reason:
        lines.append(f"reason     {state.cancel_reason}")
    for noted in state.inconsistent:  # events the fold did not believe
        lines.append(f"ignored    {noted.event_type} at {noted.sequence}: {noted.reason}")
    return [*lines, "", *state_table(state)]


def _elapsed(state: ExecutionState) -> str:
    if not (state.submitted_at and state.completed_at):
        return ""
    try:
        start = datetime.fromisoformat(state.submitted_at)
        end = datetime.fromisoformat(state.completed_at)
    except ValueError:
        return ""
    return format_duration((end - start).total_seconds())
