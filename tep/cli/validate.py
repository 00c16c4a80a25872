"""``tep validate PLAN.json``: check a plan offline; nothing is published, no NATS needed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from eventstore.config import TepSettings
from eventstore.dag import topological_levels
from eventstore.errors import PlanValidationError
from eventstore.input_payloads import detach_input
from eventstore.plan_validation import parse_plan
from tep.cli.common import EXIT_BAD_INPUT, EXIT_OK, UsageError, print_json

__all__ = ["read_plan_document", "register", "run"]

_EPILOG = """\
example:
  tep validate plan.json
  cat plan.json | tep validate - --json

Limits come from TEP_MAX_PLAN_BYTES and TEP_MAX_ACTIONS. Exit code 0 when the plan is valid,
2 with one line per problem on stderr otherwise.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``validate`` command."""
    parser = subparsers.add_parser(
        "validate",
        help="check a plan offline",
        description="Check a plan document (JSON) without publishing anything: shape, ids,\n"
        "dependencies, cycles, URLs, templates, conditions, retry policies and limits.\n"
        "Every problem is listed, one per line, naming the action and the field.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("plan", metavar="PLAN.json", help="the plan file, or - for stdin")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document ({ok, plan_id, actions, levels} or {ok, problems})",
    )
    parser.set_defaults(handler=run)


def read_plan_document(path: str) -> bytes:
    """The bytes of a plan file (``-`` reads stdin).

    Raises:
        UsageError: the file is missing, a directory, or unreadable.
    """
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise UsageError(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise UsageError(f"{path}: is a directory, expected a plan file") from exc
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def run(args: argparse.Namespace) -> int:
    """Validate the plan; print a summary (exit 0) or every problem (exit 2)."""
    settings = TepSettings.from_env()
    document = read_plan_document(args.plan)
    try:
        # A large input is stored by reference when submitted: the plan is checked without it.
        detached, _ = detach_input(
            document, settings.payload_limits, max_depth=settings.max_json_depth
        )
        plan = parse_plan(
            detached,
            limits=settings.plan_limits,
        )
    except PlanValidationError as exc:
        for problem in exc.problems:
            sys.stderr.write(f"tep: {args.plan}: {problem}\n")
        if args.json:
            print_json({"ok": False, "file": args.plan, "problems": exc.problems})
        return EXIT_BAD_INPUT
    if args.json:
        print_json(
            {
                "ok": True,
                "file": args.plan,
                "plan_id": plan.id,
                "actions": len(plan.actions),
                "levels": topological_levels(plan),
            }
        )
    else:
        noun = "action" if len(plan.actions) == 1 else "actions"
        sys.stdout.write(f'ok: plan "{plan.id}" with {len(plan.actions)} {noun}\n')
    return EXIT_OK
