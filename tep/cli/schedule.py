"""``tep schedule``: plans started on a clock (add, list, pause, resume, remove, trigger)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio
import msgspec

from eventstore.access import Role
from eventstore.cron import CronError, TimeZoneError, time_zone
from eventstore.cron_parsing import parse_cron
from eventstore.errors import PlanValidationError
from eventstore.jetstream.log import EventLog
from eventstore.schedules import (
    CATCH_UP_POLICIES,
    DEFAULT_CATCH_UP,
    MAX_CATCH_UP,
    ScheduleDefinition,
    ScheduleError,
    ScheduleState,
    schedule_name_problem,
    stamp,
)
from projections import StateManager
from projections import schedules as ops
from tep.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    UsageError,
    add_nats_url,
    print_json,
    settings_from,
)
from tep.cli.executions import open_log
from tep.cli.schedule_output import local_time, schedule_table
from tep.cli.submit import load_plan

__all__ = ["register"]

T = TypeVar("T")

_EPILOG = f"""\
examples:
  tep schedule add nightly --cron "0 3 * * *" --tz Europe/Berlin examples/scheduled-report.json
  tep schedule add ping --cron "@every 30s" plan.json --input '{{"target": "db"}}'
  tep schedule add sync --cron "*/5 * * * *" plan.json --input @input.json --catch-up all
  tep schedule list
  tep schedule pause nightly && tep schedule resume nightly
  tep schedule trigger nightly        # one execution now: nightly-manual-<time>
  tep schedule remove nightly

CRON is 5 fields (minute hour day-of-month month day-of-week), 6 with seconds first, @hourly,
@daily, @weekly, @monthly, @yearly or @every <duration> (30s, 5m, 1h30m); --tz is an IANA
zone (default UTC). Each tick starts one execution with the id <name>-<tick as
YYYYMMDDTHHMMSSZ>, exactly once, fired by the leading orchestrator. Ticks missed while no
orchestrator ran: --catch-up none skips them, one (default) fires the newest, all fires every
one (the newest {MAX_CATCH_UP}). Ticks while paused never fire. See docs/schedules.md.
add, pause, resume, remove and trigger need the admin identity; list any identity.
exit codes: 0 ok, 2 bad input (unknown schedule, bad cron or zone, invalid plan, name taken),
3 NATS unreachable.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``tep schedule``."""
    parser = subparsers.add_parser(
        "schedule",
        help="start a plan on a clock: add, list, pause, resume, remove, trigger",
        description="Schedules start an execution of a plan at every tick of a cron "
        "expression, in a time zone, exactly once per tick.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(
        dest="schedule_command",
        metavar="<add|list|pause|resume|remove|trigger>",
        required=True,
    )

    def command(name: str, help_text: str, handler: Any) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=help_text,
            description=help_text[0].upper() + help_text[1:] + ".",
            epilog=_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(handler=handler)
        return sub

    add = command("add", "add a schedule (the plan is validated like tep submit)", run_add)
    add.add_argument("name", metavar="NAME", help="[A-Za-z0-9_-]{1,64}, the executions' id prefix")
    add.add_argument("plan", metavar="PLAN.json", help="plan document, or - for stdin")
    add.add_argument("--cron", required=True, metavar="EXPR", help="when it fires")
    add.add_argument("--tz", default="UTC", metavar="ZONE", help="time zone (default: UTC)")
    add.add_argument(
        "--input",
        metavar="JSON|@FILE",
        help="a JSON object merged into the plan's input at every tick",
    )
    add.add_argument(
        "--catch-up",
        choices=CATCH_UP_POLICIES,
        default=DEFAULT_CATCH_UP,
        help="ticks missed while no orchestrator ran (default: %(default)s)",
    )
    add.add_argument("--json", action="store_true", help="print one JSON document")

    listing = command("list", "list schedules: last and next fire, last execution", run_list)
    listing.add_argument("--json", action="store_true", help="print one JSON document")

    for name, help_text, handler in (
        ("pause", "pause a schedule: no tick fires until it is resumed", run_pause),
        ("resume", "resume a schedule (the ticks of the pause never fire)", run_resume),
        ("remove", "remove a schedule (its executions stay)", run_remove),
        ("trigger", "start one execution of a schedule's plan now", run_trigger),
    ):
        sub = command(name, help_text, handler)
        sub.add_argument("name", metavar="NAME", help="the schedule")
        sub.add_argument("--json", action="store_true", help="print one JSON document")
    for sub in commands.choices.values():
        add_nats_url(sub)


# ---------------------------------------------------------------------------- add


def _checked_name(name: str) -> str:
    problem = schedule_name_problem(name)
    if problem:
        raise UsageError(problem)
    return name


def _input(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    source = "--input"
    if text.startswith("@"):
        source = text[1:]
        try:
            text = Path(source).read_text()
        except OSError as exc:
            raise UsageError(f"--input {source}: cannot read: {exc.strerror or exc}") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{source}: not JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(value, dict):
        raise UsageError(f"{source}: expected a JSON object, got {type(value).__name__}")
    return value


def run_add(args: argparse.Namespace) -> int:
    """Handle ``tep schedule add``."""
    settings = settings_from(args)
    name = _checked_name(args.name)
    try:
        parse_cron(args.cron)
        time_zone(args.tz)
    except (CronError, TimeZoneError) as exc:
        raise UsageError(str(exc)) from None
    values = _input(args.input)
    try:
        plan = load_plan(args.plan, values, settings)
    except PlanValidationError as exc:
        for problem in exc.problems:
            sys.stderr.write(f"tep: {args.plan}: {problem}\n")
        return EXIT_BAD_INPUT
    definition = ScheduleDefinition(
        name=name,
        cron=parse_cron(args.cron).expression,
        tz=args.tz,
        plan=plan,
        input=values,
        catch_up=args.catch_up,
        created_at=stamp(datetime.now(UTC)),
    )

    async def add() -> None:
        async with open_log(args, role=Role.ADMIN) as log:
            await ops.add_schedule(log, definition)

    _as_usage(add)
    info = ops.schedule_info(definition, ScheduleState(), datetime.now(UTC))
    if args.json:
        print_json(msgspec.to_builtins(info))
    else:
        print(
            f'schedule {name} added: "{definition.cron}" in {definition.tz}, '
            f"next fire {local_time(info.next_fire, definition.tz)}"
        )
    return EXIT_OK


# --------------------------------------------------------------------------- list


def run_list(args: argparse.Namespace) -> int:
    """Handle ``tep schedule list``."""
    documents = anyio.run(_list, args)
    if args.json:
        print_json({"schedules": documents, "count": len(documents)})
        return EXIT_OK
    if not documents:
        print("no schedules (tep schedule add NAME --cron EXPR PLAN.json)")
        return EXIT_OK
    for line in schedule_table(documents):
        print(line)
    return EXIT_OK


async def _list(args: argparse.Namespace) -> list[dict[str, Any]]:
    async with open_log(args) as log:

        async def statuses(execution_ids: list[str]) -> Mapping[str, str]:
            return await _statuses(log, execution_ids)

        infos = await ops.list_schedules(log, statuses)
    return [msgspec.to_builtins(info) for info in infos]


async def _statuses(log: EventLog, execution_ids: list[str]) -> dict[str, str]:
    """The status in the view of each execution it holds (none without a view: a status is a
    nicety of the listing, not worth failing it)."""
    manager = StateManager(log.nc, log.settings)
    found: dict[str, str] = {}
    try:
        await manager.open()
        for execution_id in execution_ids:
            state = await manager.get_execution_state(execution_id)
            if state is not None:
                found[execution_id] = state.status
    except Exception:
        return found
    finally:
        await manager.close()
    return found


# ------------------------------------------------------- pause, resume, remove, trigger


def _changed(args: argparse.Namespace, paused: bool) -> int:
    name = _checked_name(args.name)

    async def change() -> ScheduleDefinition:
        async with open_log(args, role=Role.ADMIN) as log:
            return await ops.set_paused(log, name, paused)

    definition = _as_usage(change)
    if args.json:
        print_json({"name": name, "paused": definition.paused})
    else:
        print(f"schedule {name} {'paused' if paused else 'active'}")
    return EXIT_OK


def run_pause(args: argparse.Namespace) -> int:
    """Handle ``tep schedule pause``."""
    return _changed(args, True)


def run_resume(args: argparse.Namespace) -> int:
    """Handle ``tep schedule resume``."""
    return _changed(args, False)


def run_remove(args: argparse.Namespace) -> int:
    """Handle ``tep schedule remove``."""
    name = _checked_name(args.name)

    async def remove() -> None:
        async with open_log(args, role=Role.ADMIN) as log:
            await ops.remove_schedule(log, name)

    _as_usage(remove)
    if args.json:
        print_json({"name": name, "removed": True})
    else:
        print(f"schedule {name} removed (its executions stay)")
    return EXIT_OK


def run_trigger(args: argparse.Namespace) -> int:
    """Handle ``tep schedule trigger``."""
    name = _checked_name(args.name)

    async def trigger() -> str:
        async with open_log(args, role=Role.ADMIN) as log:
            return await ops.trigger_schedule(log, name)

    execution_id = _as_usage(trigger)
    if args.json:
        print_json({"name": name, "execution_id": execution_id})
    else:
        print(execution_id)
    return EXIT_OK


def _as_usage(work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work``; an unknown schedule, a name taken (or a lost race) is bad input, exit 2."""
    try:
        return anyio.run(work)
    except ScheduleError as exc:
        raise UsageError(str(exc)) from None
