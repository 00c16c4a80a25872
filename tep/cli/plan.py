"""``tep plan``: the plan registry that sub-plan actions refer to (put, get, list, delete)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import anyio
import msgspec

from eventstore.errors import PlanValidationError
from eventstore.jetstream.plan_registry import PlanRegistry
from eventstore.plan_registry import PLAN_BUCKET, RegisteredPlan, plan_name_problem
from tep.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    UsageError,
    add_nats_url,
    print_json,
    settings_from,
)
from tep.cli.executions import open_log
from tep.cli.submit import load_plan
from tep.cli.text_format import format_table

__all__ = ["register"]

_EPILOG = f"""\
examples:
  tep plan put send-welcome examples/sequential-pipeline.json
  tep plan get send-welcome > plan.json
  tep plan list
  tep plan delete send-welcome

A sub-plan action runs a registered plan as a child execution:
  {{"id": "welcome", "type": "plan", "plan_ref": "send-welcome",
   "input": {{"user_id": "{{{{input.user_id}}}}"}}}}
The child runs the plan the name holds when the action starts: a later put changes no
execution that already began. Plans are validated like tep submit before they are stored;
each put stores a new revision (the KV bucket {PLAN_BUCKET}). NAME is [A-Za-z0-9_-]{{1,64}}.
--json: put prints {{name, revision, plan_id, actions}}; get {{name, revision, stored_at, plan}};
list {{plans: [{{name, revision, plan_id, actions, stored_at}}], count}}.
exit codes: 0 ok, 2 invalid plan, bad or unknown name, 3 NATS unreachable.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``tep plan``."""
    parser = subparsers.add_parser(
        "plan",
        help="the plan registry for sub-plans: put, get, list, delete",
        description="Store validated plans by name, for sub-plan actions to run with "
        '"plan_ref": "NAME".',
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(
        dest="plan_command", metavar="<put|get|list|delete>", required=True
    )

    def command(name: str, help_text: str, handler: Any) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=help_text,
            description=help_text[0].upper() + help_text[1:] + ".",
            epilog=_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.add_argument("--json", action="store_true", help="print one JSON document")
        add_nats_url(sub)
        sub.set_defaults(handler=handler)
        return sub

    put = command("put", "validate a plan and store it under NAME (prints the revision)", run_put)
    put.add_argument("name", metavar="NAME", help="the registry name, [A-Za-z0-9_-]{1,64}")
    put.add_argument("plan", metavar="PLAN.json", help="plan document, or - for stdin")
    get = command("get", "print the plan registered under NAME", run_get)
    get.add_argument("name", metavar="NAME", help="the registry name")
    command("list", "list the registered plans", run_list)
    delete = command("delete", "remove NAME from the registry (executions stay)", run_delete)
    delete.add_argument("name", metavar="NAME", help="the registry name")


def _checked_name(name: str) -> str:
    problem = plan_name_problem(name)
    if problem:
        raise UsageError(problem)
    return name


def _summary(registered: RegisteredPlan) -> dict[str, Any]:
    return {
        "name": registered.name,
        "revision": registered.revision,
        "plan_id": registered.plan.id,
        "actions": len(registered.plan.actions),
        "stored_at": registered.stored_at,
    }


def run_put(args: argparse.Namespace) -> int:
    """Handle ``tep plan put``."""
    name = _checked_name(args.name)
    settings = settings_from(args)
    try:
        plan = load_plan(args.plan, {}, settings)
    except PlanValidationError as exc:
        for problem in exc.problems:
            sys.stderr.write(f"tep: {args.plan}: {problem}\n")
        return EXIT_BAD_INPUT

    async def put() -> int:
        async with open_log(args) as log:
            registry = await PlanRegistry.open(log.nc, log.js)
            if registry is None:  # never provisioned: create it (where this identity may)
                registry = await PlanRegistry.ensure(log.nc, log.js, replicas=settings.replicas)
            return await registry.put(name, plan)

    revision = anyio.run(put)
    if args.json:
        print_json(
            {"name": name, "revision": revision, "plan_id": plan.id, "actions": len(plan.actions)}
        )
    else:
        noun = "action" if len(plan.actions) == 1 else "actions"
        print(
            f'plan {name} stored as revision {revision} (plan "{plan.id}", '
            f"{len(plan.actions)} {noun})"
        )
    return EXIT_OK


async def _get(args: argparse.Namespace, name: str) -> RegisteredPlan | None:
    async with open_log(args) as log:
        registry = await PlanRegistry.open(log.nc, log.js)
        return None if registry is None else await registry.get(name)


def _unknown(name: str) -> UsageError:
    return UsageError(f'no plan named "{name}" in the plan registry (tep plan list shows them)')


def run_get(args: argparse.Namespace) -> int:
    """Handle ``tep plan get``."""
    name = _checked_name(args.name)
    registered = anyio.run(_get, args, name)
    if registered is None:
        raise _unknown(name)
    document = msgspec.to_builtins(registered.plan)
    if args.json:
        print_json(
            {
                "name": registered.name,
                "revision": registered.revision,
                "stored_at": registered.stored_at,
                "plan": document,
            }
        )
    else:
        print(json.dumps(document, indent=2))
    return EXIT_OK


def run_list(args: argparse.Namespace) -> int:
    """Handle ``tep plan list``."""

    async def read() -> tuple[list[RegisteredPlan], dict[str, str]]:
        async with open_log(args) as log:
            registry = await PlanRegistry.open(log.nc, log.js)
            return ([], {}) if registry is None else await registry.read_all()

    plans, unreadable = anyio.run(read)
    for name, why in unreadable.items():
        sys.stderr.write(f"tep: {name}: {why}\n")
    if args.json:
        print_json({"plans": [_summary(p) for p in plans], "count": len(plans)})
        return EXIT_OK
    if not plans:
        print("no plans registered (tep plan put NAME PLAN.json)")
        return EXIT_OK
    rows = [
        [p.name, str(p.revision), p.plan.id, str(len(p.plan.actions)), p.stored_at] for p in plans
    ]
    for line in format_table(["NAME", "REVISION", "PLAN", "ACTIONS", "STORED AT"], rows):
        print(line)
    return EXIT_OK


def run_delete(args: argparse.Namespace) -> int:
    """Handle ``tep plan delete``."""
    name = _checked_name(args.name)

    async def delete() -> bool:
        async with open_log(args) as log:
            registry = await PlanRegistry.open(log.nc, log.js)
            return registry is not None and await registry.delete(name)

    if not anyio.run(delete):
        raise _unknown(name)
    if args.json:
        print_json({"name": name, "deleted": True})
    else:
        print(f"plan {name} deleted (executions that started it are not affected)")
    return EXIT_OK
