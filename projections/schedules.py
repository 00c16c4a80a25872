"""Schedules as operators see and change them: one listing shape and the writes behind
``tep schedule`` and the HTTP API.

Reading needs any identity; every write (add, pause, resume, remove, trigger) changes the
definitions or the state in their bucket, which only the admin identity may (see
:mod:`eventstore.access`): callers pass a log connected as admin for those.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec

from eventstore.config import TepSettings
from eventstore.cron import time_zone
from eventstore.cron_parsing import parse_cron
from eventstore.jetstream.log import EventLog
from eventstore.jetstream.provision import ensure_log
from eventstore.jetstream.schedules import ScheduleStore, submit_scheduled
from eventstore.plan_validation import parse_plan
from eventstore.schedules import (
    DEFAULT_CATCH_UP,
    CatchUp,
    ScheduleDefinition,
    ScheduleError,
    ScheduleNotFoundError,
    ScheduleState,
    manual_execution_id,
    schedule_name_problem,
    stamp,
)
from projections.schedule_info import ScheduleInfo, schedule_info

__all__ = [
    "ScheduleInfo",
    "add_schedule",
    "get_schedule",
    "list_schedules",
    "new_definition",
    "remove_schedule",
    "schedule_info",
    "set_paused",
    "trigger_schedule",
]

StatusLookup = Callable[[list[str]], Awaitable[Mapping[str, str]]]
"""Execution ids -> the status of those the view holds."""


def new_definition(
    name: str,
    cron: str,
    plan: Mapping[str, Any],
    settings: TepSettings,
    *,
    tz: str = "UTC",
    input: Mapping[str, Any] | None = None,
    catch_up: CatchUp = DEFAULT_CATCH_UP,
    now: datetime | None = None,
) -> ScheduleDefinition:
    """A checked definition: the name, expression and zone valid, the plan (with ``input``
    merged into its input) validated like a submission.

    Raises:
        ScheduleError: a bad name; CronError, TimeZoneError: a bad expression or zone;
        PlanValidationError: an invalid plan (every problem listed).
    """
    problem = schedule_name_problem(name)
    if problem:
        raise ScheduleError(problem)
    expression = parse_cron(cron).expression
    time_zone(tz)
    values = dict(input or {})
    document = dict(plan)
    if values:
        current = document.get("input")
        document["input"] = {**(current if isinstance(current, dict) else {}), **values}
    return ScheduleDefinition(
        name=name,
        cron=expression,
        tz=tz,
        plan=parse_plan(document, limits=settings.plan_limits),
        input=values,
        catch_up=catch_up,
        created_at=stamp(now or datetime.now(UTC)),
    )


async def list_schedules(log: EventLog, statuses: StatusLookup | None = None) -> list[ScheduleInfo]:
    """Every schedule, by name (none before the first was added)."""
    store = await ScheduleStore.open(log)
    if store is None:
        return []
    schedules = await store.read_all()
    now = datetime.now(UTC)
    states = {name: stored.value for name, stored in schedules.states.items()}
    last = [s.last_execution_id for s in states.values() if s.last_execution_id]
    found = await statuses(last) if statuses is not None and last else {}
    listed = []
    for name in sorted(schedules.definitions):
        state = states.get(name, ScheduleState())
        status = found.get(state.last_execution_id or "")
        listed.append(schedule_info(schedules.definitions[name].value, state, now, status))
    return listed


async def get_schedule(
    log: EventLog, name: str, statuses: StatusLookup | None = None
) -> ScheduleInfo:
    """One schedule.

    Raises:
        ScheduleNotFoundError: there is no such schedule.
    """
    store = await _store(log, name)
    definition = await store.definition(name)
    state = (await store.state(name)).value
    last = state.last_execution_id
    found = await statuses([last]) if statuses is not None and last else {}
    return schedule_info(definition.value, state, datetime.now(UTC), found.get(last or ""))


async def _store(log: EventLog, name: str) -> ScheduleStore:
    problem = schedule_name_problem(name)
    if problem:
        # Not a key the bucket could hold: no such schedule, without asking the server.
        raise ScheduleNotFoundError(f'unknown schedule "{name}": {problem}')
    store = await ScheduleStore.open(log)
    if store is None:
        raise ScheduleNotFoundError(
            f'unknown schedule "{name}": no schedules yet (tep schedule add NAME --cron EXPR '
            "PLAN.json)"
        )
    return store


async def add_schedule(admin: EventLog, definition: ScheduleDefinition) -> None:
    """Store a new schedule (its bucket created if needed).

    Raises:
        ScheduleError: a schedule of that name exists.
    """
    await (await ScheduleStore.ensure(admin)).add(definition)


async def set_paused(admin: EventLog, name: str, paused: bool) -> ScheduleDefinition:
    """Pause or resume a schedule (resuming: the ticks of the pause never fire).

    Raises:
        ScheduleNotFoundError: there is no such schedule.
    """

    def edit(definition: ScheduleDefinition) -> ScheduleDefinition:
        if definition.paused == paused:
            return definition
        resumed = definition.resumed_at if paused else stamp(datetime.now(UTC))
        return msgspec.structs.replace(definition, paused=paused, resumed_at=resumed)

    return await (await _store(admin, name)).change(name, edit)


async def remove_schedule(admin: EventLog, name: str) -> None:
    """Remove a schedule and its state (its executions stay).

    Raises:
        ScheduleNotFoundError: there is no such schedule.
    """
    await (await _store(admin, name)).remove(name)


async def trigger_schedule(admin: EventLog, name: str) -> str:
    """Start one execution of the schedule's plan now (``<name>-manual-<time>``); its id.

    Raises:
        ScheduleNotFoundError: there is no such schedule.
        ScheduleError: it was triggered this second already.
    """
    await ensure_log(admin.js, admin.settings)
    store = await _store(admin, name)
    definition = await store.definition(name)
    now = datetime.now(UTC)
    execution_id = manual_execution_id(name, now)
    if not await submit_scheduled(admin, definition.value, execution_id):
        raise ScheduleError(
            f"schedule {name} was already triggered this second ({execution_id}); try again"
        )
    fired_at = stamp(now)
    await store.record(name, lambda s: s.with_manual(execution_id, fired_at))
    return execution_id
