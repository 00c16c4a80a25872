"""``tep resume``: end a waitpoint with data (it completes) or a rejection (it fails)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import anyio
import msgspec

from projections.errors import (
    ActionNotFoundError,
    ExecutionNotFoundError,
    InvalidExecutionIdError,
    ResumeTimeoutError,
    WaitpointRefusedError,
)
from projections.waitpoints import Resumed, resume, resume_by_token, token_ids
from tep.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    EXIT_TIMEOUT,
    UsageError,
    add_nats_url,
    local_user,
    print_json,
)
from tep.cli.executions import open_log, require_execution

__all__ = ["register"]

_DEFAULT_TIMEOUT_S = 30.0

_EPILOG = """\
examples:
  tep resume exe_018f2a9c3b1d4e5f6a7b approve --data '{"approved": true, "by": "ana"}'
  tep resume exe_018f2a9c3b1d4e5f6a7b approve --data @decision.json --json
  tep resume exe_018f2a9c3b1d4e5f6a7b approve --reject "over budget"
  tep resume --token "$TOKEN" --data '{"approved": true}'

The data becomes the action's output ({{actions.approve.output.approved}}): an object as it
is, any other JSON value as {"value": ...}; it must match the waitpoint's schema. --reject
fails the action with code `rejected` (routable like any failure). The request is checked
against the execution's history in the log first: a refused one changes nothing and the wait
goes on. Then it is appended and the log followed until the outcome says whether this request
ended the wait (a racing timeout or another resume may have won). No projector is needed; an
orchestrator records the outcome.
exit codes: 0 resumed (the action completed, or failed as --reject asked; with --no-wait: the
request was accepted); 2 bad input or refused (unknown execution or action, bad JSON, not
waiting, already resumed or timed out, token or schema mismatch: each problem by its path);
3 NATS unreachable; 124 accepted, but no outcome within --timeout (the request stands).
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``tep resume``."""
    parser = subparsers.add_parser(
        "resume",
        help="resume a waitpoint: complete it with data, or fail it with --reject",
        description="End a waiting waitpoint (an action of type wait), named by its execution "
        "and action ids or by its token: with --data it completes with the data as its "
        "output, with --reject it fails with code rejected. Exactly one resume (or the "
        "timeout) ends a waitpoint; any later one is refused.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("execution_id", metavar="EXECUTION", nargs="?", help="the execution id")
    parser.add_argument("action_id", metavar="ACTION", nargs="?", help="the waitpoint's id")
    outcome = parser.add_mutually_exclusive_group()
    outcome.add_argument(
        "--data",
        metavar="JSON|@FILE",
        help="the resume data: JSON text, @FILE to read it from a file, @- from stdin",
    )
    outcome.add_argument("--reject", metavar="REASON", help="fail the waitpoint (code rejected)")
    parser.add_argument(
        "--token",
        help="the waitpoint's token ({{actions.<id>.token}}); alone, it names the waitpoint",
    )
    parser.add_argument(
        "--requested-by",
        metavar="NAME",
        help="who resumes, recorded in the event (default: the local user name)",
    )
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="return once the request is accepted, without waiting for the outcome",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=_DEFAULT_TIMEOUT_S,
        metavar="S",
        help="how long to wait for the outcome (default: %(default)g s)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help='print one JSON document {"execution_id", "action_id", "outcome", "status", ...}',
    )
    add_nats_url(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handle ``tep resume``."""
    if args.execution_id is None and args.token is None:
        raise UsageError("name the waitpoint: EXECUTION ACTION, or --token TOKEN")
    if args.execution_id is not None and args.action_id is None:
        raise UsageError(f"name the waitpoint of {args.execution_id}: EXECUTION ACTION")
    if args.reject is not None and not args.reject.strip():
        raise UsageError("--reject needs a reason")
    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    data = _data(args.data)
    try:
        result = anyio.run(_resume, args, data)
    except WaitpointRefusedError as exc:
        _report_refusal(args, exc)
        return EXIT_BAD_INPUT
    except (ExecutionNotFoundError, ActionNotFoundError, InvalidExecutionIdError) as exc:
        raise UsageError(str(exc)) from None
    except ResumeTimeoutError as exc:
        if args.json:
            print_json(_document(args, "no_outcome", "waiting", reason=str(exc)))
        sys.stderr.write(f"tep: {exc}\n")
        return EXIT_TIMEOUT
    _report(args, result)
    return EXIT_OK


def _data(text: str | None) -> Any:
    """The ``--data`` value as JSON (``None`` without it)."""
    if text is None:
        return None
    where = "--data"
    if text.startswith("@"):
        source = text[1:]
        where = f"--data {text}"
        try:
            text = sys.stdin.read() if source == "-" else Path(source).read_text()
        except OSError as exc:
            raise UsageError(f"{where}: cannot read it: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        position = f"line {exc.lineno} column {exc.colno}"
        raise UsageError(f"{where}: not JSON: {exc.msg} at {position}") from None


async def _resume(args: argparse.Namespace, data: Any) -> Resumed:
    options: dict[str, Any] = {
        "reject": args.reject,
        "requested_by": args.requested_by or local_user(),
        "wait": not args.no_wait,
        "timeout": args.timeout,
    }
    async with open_log(args) as log:
        if args.execution_id is None:
            return await resume_by_token(log, args.token, data, **options)
        await require_execution(log, args.execution_id)
        return await resume(
            log, args.execution_id, args.action_id, data, token=args.token, **options
        )


def _names(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """The execution and action ids given, or named by the token."""
    if args.execution_id is not None:
        return args.execution_id, args.action_id
    return token_ids(args.token) or (None, None)


def _document(
    args: argparse.Namespace, outcome: str, status: str | None, **extra: Any
) -> dict[str, Any]:
    execution_id, action_id = _names(args)
    return {
        "execution_id": execution_id,
        "action_id": action_id,
        "outcome": outcome,
        "status": status,
        **extra,
    }


def _report(args: argparse.Namespace, result: Resumed) -> None:
    action = result.action
    if args.json:
        print_json(
            _document(
                args,
                "accepted" if action.status == "waiting" else action.status,
                action.status,
                request_id=result.request_id,
                request_sequence=result.request_sequence,
                outcome_sequence=result.outcome_sequence,
                action=msgspec.to_builtins(action),
            )
        )
        return
    execution_id, _ = _names(args)
    name = f"{execution_id} {action.action_id}"
    if action.status == "waiting":
        print(f"{name}: resume accepted; an orchestrator records the outcome")
    elif action.status == "completed":
        print(f"{name} completed; output: {json.dumps(action.output, ensure_ascii=False)}")
    else:
        error = action.error
        detail = f": {error.code}: {error.message}" if error is not None else ""
        print(f"{name} {action.status}{detail}")


def _report_refusal(args: argparse.Namespace, exc: WaitpointRefusedError) -> None:
    if args.json:
        print_json(
            _document(
                args,
                "refused",
                None,
                reason=exc.reason,
                problems=list(exc.problems),
                appended=exc.appended,
            )
        )
    sys.stderr.write(f"tep: refused: {exc.reason}\n")
