"""One schedule as operators see it: its definition, what it did, when it fires next. Pure."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from eventstore.cron import CronError, TimeZoneError
from eventstore.schedules import CatchUp, ScheduleDefinition, ScheduleState, next_fire, stamp

__all__ = ["ScheduleInfo", "schedule_info"]


class ScheduleInfo(msgspec.Struct, kw_only=True):
    """One schedule as listed: its definition, what it did, and when it fires next.

    Attributes:
        name: the schedule (its executions' id prefix).
        cron: the expression; ``tz`` the IANA zone its fields are read in.
        catch_up: which missed ticks fire when an orchestrator starts leading.
        paused: no tick fires while set.
        plan_id: the id of the plan each tick submits.
        input: the input merged into the plan at every tick.
        created_at, resumed_at: when it was added and last resumed (ISO-8601 UTC).
        last_tick: the newest tick dealt with; ``last_fired_at`` when it last started one.
        next_fire: the next tick due (``None`` while paused or if it never fires again).
        last_execution_id: the newest execution it started; ``last_execution_status`` its
            status in the view (``None`` when the view does not hold it).
    """

    name: str
    cron: str
    tz: str
    catch_up: CatchUp
    paused: bool
    plan_id: str
    input: dict[str, Any]
    created_at: str
    resumed_at: str | None = None
    last_tick: str | None = None
    last_fired_at: str | None = None
    next_fire: str | None = None
    last_execution_id: str | None = None
    last_execution_status: str | None = None


def schedule_info(
    definition: ScheduleDefinition,
    state: ScheduleState,
    now: datetime,
    status: str | None = None,
) -> ScheduleInfo:
    """The listing of one schedule at ``now`` (a definition that cannot fire: no next fire)."""
    try:
        upcoming = next_fire(definition, state, now)
    except (CronError, TimeZoneError):
        upcoming = None
    return ScheduleInfo(
        name=definition.name,
        cron=definition.cron,
        tz=definition.tz,
        catch_up=definition.catch_up,
        paused=definition.paused,
        plan_id=definition.plan.id,
        input=definition.input,
        created_at=definition.created_at,
        resumed_at=definition.resumed_at,
        last_tick=state.last_tick,
        last_fired_at=state.last_fired_at,
        next_fire=stamp(upcoming) if upcoming else None,
        last_execution_id=state.last_execution_id,
        last_execution_status=status,
    )
