"""``tep submit``: validate a plan, publish ``plan.submitted``, optionally wait for the outcome."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import anyio
import msgspec

from eventstore.config import TepSettings
from eventstore.errors import ExecutionExistsError, PlanValidationError
from eventstore.events import PlanSubmitted, new_execution_id
from eventstore.fold import fold
from eventstore.input_payloads import detach_input
from eventstore.jetstream.payloads import PayloadStore
from eventstore.jetstream.provision import ensure_log
from eventstore.payloads import EncodedPayload
from eventstore.plan import Plan
from eventstore.plan_validation import parse_plan
from eventstore.state import ExecutionState
from eventstore.tracing import client_trace, parse_traceparent, use_trace
from tep.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_NOT_COMPLETED,
    EXIT_OK,
    EXIT_TIMEOUT,
    UsageError,
    add_nats_url,
    print_json,
    settings_from,
)
from tep.cli.execution_views import state_table, summary
from tep.cli.executions import check_execution_id, open_log, wait_for_terminal
from tep.cli.validate import read_plan_document

__all__ = [
    "exit_code_for",
    "load_plan",
    "load_submission",
    "register",
    "state_document",
]

_EPILOG = """\
examples:
  tep submit examples/sequential-pipeline.json
  tep submit examples/fan-out-fan-in.json --input user_id=7 --wait --timeout 60
  tep submit plan.json --execution-id nightly-2024-06-01 --wait --json | jq .status
  cat plan.json | tep submit -

exit codes: 0 submitted (with --wait: completed), 1 failed or cancelled, 2 invalid plan or
execution id already used (nothing published), 3 NATS unreachable, 124 --wait timed out.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``tep submit``."""
    parser = subparsers.add_parser(
        "submit",
        help="validate a plan and start an execution of it",
        description="Validate PLAN (a JSON plan document, `-` for stdin), publish plan.submitted "
        "and print the new execution id. Nothing is published when the plan is invalid. With "
        "--wait, follow the execution's events in the log until it ends and print its final "
        "state (no projector needed).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("plan", metavar="PLAN.json", help="plan document, or - for stdin")
    parser.add_argument(
        "--execution-id",
        metavar="ID",
        help="execution id ([A-Za-z0-9_-], at most 128); default: a fresh time-sortable id",
    )
    parser.add_argument(
        "--input",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="set plan input KEY to the string VALUE (repeatable; overrides the plan's input)",
    )
    parser.add_argument(
        "--input-json",
        metavar="KEY=JSON",
        action="append",
        default=[],
        help="set plan input KEY to a JSON value, e.g. --input-json limit=10 (repeatable)",
    )
    parser.add_argument(
        "--wait", action="store_true", help="wait until the execution ends; exit 0 if completed"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help="with --wait: give up after S seconds (exit 124); default: wait forever",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document: {execution_id, plan_id, sequence, trace_id}, or with "
        "--wait the final state",
    )
    parser.add_argument(
        "--traceparent",
        metavar="HEADER",
        help="W3C traceparent the execution's events continue (00-<trace id>-<span id>-<flags>);"
        " default: a new trace",
    )
    add_nats_url(parser)
    parser.set_defaults(handler=run)


def _split_assignment(text: str, option: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"{option} expects KEY=VALUE, got {text!r}")
    return key, value


def _input_overrides(strings: list[str], values: list[str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for text in strings:
        key, value = _split_assignment(text, "--input")
        overrides[key] = value
    for text in values:
        key, value = _split_assignment(text, "--input-json")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            raise UsageError(f"--input-json {key}: {value!r} is not JSON") from None
    return overrides


def _with_input(raw: bytes, overrides: dict[str, Any]) -> bytes | dict[str, Any]:
    """The document with ``overrides`` merged into its input (raw bytes when there are none)."""
    if not overrides:
        return raw
    try:
        document = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return raw  # parse_plan reports the JSON error with line and column
    if not isinstance(document, dict):
        return raw
    current = document.get("input")
    document["input"] = {**(current if isinstance(current, dict) else {}), **overrides}
    return document


def load_plan(source: str, overrides: dict[str, Any], settings: TepSettings) -> Plan:
    """Read a plan file (``-``: stdin), merge input overrides, validate it.

    Raises:
        UsageError: the file cannot be read.
        PlanValidationError: the plan is invalid (every problem listed).
    """
    plan, _ = load_submission(source, overrides, settings, detach=False)
    return plan


def load_submission(
    source: str, overrides: dict[str, Any], settings: TepSettings, *, detach: bool = True
) -> tuple[Plan, EncodedPayload | None]:
    """:func:`load_plan`, with an input above ``TEP_PAYLOAD_INLINE_BYTES`` replaced by its
    reference and returned as the payload to store before the plan is published.

    Raises:
        UsageError: the file cannot be read.
        PlanValidationError: the plan is invalid, or its input is above the hard cap.
    """
    document: Any = _with_input(read_plan_document(source), overrides)
    payload = None
    if detach:
        document, payload = detach_input(
            document, settings.payload_limits, max_depth=settings.max_json_depth
        )
    return parse_plan(document, limits=settings.plan_limits), payload


def state_document(state: ExecutionState) -> Any:
    """An execution state as a JSON-ready value, without the plan, like the projected view's."""
    return msgspec.to_builtins(msgspec.structs.replace(state, plan=None))


def exit_code_for(state: ExecutionState | None, finished: bool) -> int:
    """0 completed, 1 failed or cancelled, 124 not finished in time."""
    if not finished or state is None:
        return EXIT_TIMEOUT
    return EXIT_OK if state.status == "completed" else EXIT_NOT_COMPLETED


def run(args: argparse.Namespace) -> int:
    """Handle ``tep submit``."""
    settings = settings_from(args)
    try:
        plan, payload = load_submission(
            args.plan, _input_overrides(args.input, args.input_json), settings
        )
    except PlanValidationError as exc:
        for problem in exc.problems:
            sys.stderr.write(f"tep: {args.plan}: {problem}\n")
        return EXIT_BAD_INPUT
    execution_id = check_execution_id(args.execution_id or new_execution_id())
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    if args.traceparent is not None and parse_traceparent(args.traceparent) is None:
        raise UsageError(f"--traceparent {args.traceparent!r} is no W3C traceparent (version 00)")
    return anyio.run(_submit, args, plan, execution_id, payload)


async def _submit(
    args: argparse.Namespace, plan: Plan, execution_id: str, payload: EncodedPayload | None
) -> int:
    async with open_log(args) as log:
        await ensure_log(log.js, log.settings)
        if payload is not None:
            await PayloadStore(log.nc, log.settings).put(payload)
        trace = client_trace(args.traceparent)
        try:
            with use_trace(trace):
                result = await log.append(PlanSubmitted(execution_id=execution_id, plan=plan))
        except ExecutionExistsError:
            raise UsageError(
                f"execution {execution_id!r} already exists: choose another --execution-id"
            ) from None
        if not args.wait:
            if args.json:
                print_json(
                    {
                        "execution_id": execution_id,
                        "plan_id": plan.id,
                        "sequence": result.sequence,
                        "trace_id": trace.trace_id,
                    }
                )
            else:
                print(execution_id)
            return EXIT_OK
        if not args.json:
            print(execution_id, flush=True)
        state, finished = await wait_for_terminal(log, execution_id, args.timeout)
        if state is None:
            state = fold(await log.read_execution(execution_id))
    if args.json:
        print_json(state_document(state) if state is not None else {"execution_id": execution_id})
    elif state is not None:
        for line in [*state_table(state), "", *summary(state)]:
            print(line)
    if not finished:
        sys.stderr.write(
            f"tep: {execution_id} did not finish within {args.timeout:g}s "
            f"(still {state.status if state else 'pending'}); it keeps running: "
            f"tep watch {execution_id}\n"
        )
    return exit_code_for(state, finished)
