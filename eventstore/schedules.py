"""Schedules: plans started on a clock. The definitions, their ids and which ticks fire. Pure.

A schedule is operator configuration kept in the KV bucket :data:`SCHEDULE_BUCKET`:

``def.<name>``
    the :class:`ScheduleDefinition` (written by ``tep schedule add|pause|resume|remove``);
``state.<name>``
    the :class:`ScheduleState` (written by the leading orchestrator as ticks fire, and by
    ``tep schedule trigger``), always by compare-and-set on the key's revision.

Each tick starts one execution with a deterministic id, :func:`tick_execution_id`
(``<name>-<tick as YYYYMMDDTHHMMSSZ>``), submitted with a deterministic event id: a tick
submitted twice (two orchestrators, a restart between submitting and recording) is stored
once, because an execution id can start only one execution.

Ticks that came due while no orchestrator was looking are *missed*; :func:`plan_ticks` decides
which of them fire by the schedule's catch-up policy (``none``, ``one``, ``all``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo
from typing import Any, Literal

import msgspec

from eventstore.cron import Cron, time_zone
from eventstore.cron_parsing import parse_cron
from eventstore.errors import TepError
from eventstore.plan import Plan

__all__ = [
    "CATCH_UP_POLICIES",
    "DEFAULT_CATCH_UP",
    "MAX_CATCH_UP",
    "SCHEDULE_BUCKET",
    "CatchUp",
    "ScheduleDefinition",
    "ScheduleError",
    "ScheduleNotFoundError",
    "ScheduleState",
    "TickPlan",
    "baseline",
    "definition_key",
    "manual_execution_id",
    "next_fire",
    "parse_stamp",
    "plan_ticks",
    "schedule_name_problem",
    "stamp",
    "state_key",
    "submission_event_id",
    "tick_execution_id",
]

SCHEDULE_BUCKET = "tep_schedules"
"""The KV bucket of schedule definitions (``def.<name>``) and their state (``state.<name>``)."""

CatchUp = Literal["none", "one", "all"]
CATCH_UP_POLICIES: tuple[CatchUp, ...] = ("none", "one", "all")
DEFAULT_CATCH_UP: CatchUp = "one"
MAX_CATCH_UP = 1000
"""The most missed ticks policy ``all`` fires at once (the newest ones; older ones are
skipped)."""

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
_MANUAL = "-manual"
_TICK_FORMAT = "%Y%m%dT%H%M%SZ"


class ScheduleError(TepError, ValueError):
    """A schedule that cannot be stored or found (the message says why, in one line)."""


class ScheduleNotFoundError(ScheduleError, LookupError):
    """There is no schedule of that name."""


class ScheduleDefinition(msgspec.Struct, frozen=True, kw_only=True):
    """One schedule, as stored under ``def.<name>``.

    Attributes:
        name: ``[A-Za-z0-9_-]{1,64}``, not ending in ``-manual``.
        cron: the expression (see :mod:`eventstore.cron_parsing`).
        tz: the IANA time zone the expression's fields are read in.
        plan: the validated plan every tick submits, with ``input`` already merged in.
        input: the input given at ``add`` (kept to show it; already part of ``plan``).
        catch_up: which missed ticks fire when an orchestrator starts leading.
        paused: no ticks fire while set.
        created_at: when it was added (ISO-8601 UTC); no tick before it fires.
        resumed_at: when it was last resumed; ticks of the pause before it never fire.
    """

    name: str
    cron: str
    tz: str = "UTC"
    plan: Plan
    input: dict[str, Any] = {}
    catch_up: CatchUp = DEFAULT_CATCH_UP
    paused: bool = False
    created_at: str
    resumed_at: str | None = None

    def schedule(self) -> Cron:
        """The parsed expression (``CronError`` if it is malformed)."""
        return parse_cron(self.cron)

    def zone(self) -> tzinfo:
        """The time zone (``TimeZoneError`` if unknown)."""
        return time_zone(self.tz)

    def active_since(self) -> datetime:
        """Ticks at or before this moment never fire: its creation or its last resume."""
        return max(parse_stamp(self.created_at), parse_stamp(self.resumed_at or self.created_at))


class ScheduleState(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What the schedule has done, as stored under ``state.<name>``.

    Attributes:
        last_tick: the newest tick dealt with (fired, or skipped by the catch-up policy);
            ticks up to it never fire again.
        last_execution_id: the newest execution started, by a tick or ``trigger``.
        last_fired_at: when that execution was submitted (ISO-8601 UTC).
    """

    last_tick: str | None = None
    last_execution_id: str | None = None
    last_fired_at: str | None = None

    def with_tick(self, tick: datetime, execution_id: str | None, fired_at: str) -> ScheduleState:
        """This state after ticks up to ``tick`` were dealt with (``execution_id``: the newest
        one started, ``None`` if they were all skipped). A state already past ``tick`` (another
        orchestrator recorded it) stays as it is."""
        if self.last_tick is not None and parse_stamp(self.last_tick) >= tick:
            return self
        if execution_id is None:
            return msgspec.structs.replace(self, last_tick=stamp(tick))
        return ScheduleState(
            last_tick=stamp(tick), last_execution_id=execution_id, last_fired_at=fired_at
        )

    def with_manual(self, execution_id: str, fired_at: str) -> ScheduleState:
        """This state after ``tep schedule trigger`` started ``execution_id``."""
        return msgspec.structs.replace(self, last_execution_id=execution_id, last_fired_at=fired_at)


class TickPlan(msgspec.Struct, frozen=True, kw_only=True):
    """What one look at a schedule does.

    Attributes:
        fire: the ticks to submit, oldest first.
        caught_up: how many of them were missed ticks.
        skipped: whether missed ticks were left out by the catch-up policy or its cap.
        last: the newest tick dealt with (to record), ``None`` when nothing was due.
    """

    fire: list[datetime]
    caught_up: int = 0
    skipped: bool = False
    last: datetime | None = None


# ---------------------------------------------------------------------- names and ids


def schedule_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a schedule, or ``None`` if it can."""
    if not _NAME.match(name):
        return f'schedule name "{name}" must match [A-Za-z0-9_-]{{1,64}}'
    if name.endswith(_MANUAL):
        return f'schedule name "{name}" must not end in "{_MANUAL}" (manual runs use it)'
    return None


def definition_key(name: str) -> str:
    """The KV key of a schedule's definition."""
    return f"def.{name}"


def state_key(name: str) -> str:
    """The KV key of a schedule's state."""
    return f"state.{name}"


def tick_execution_id(name: str, tick: datetime) -> str:
    """The execution one tick starts: ``<name>-<YYYYMMDDTHHMMSSZ>``."""
    return f"{name}-{tick.astimezone(UTC):{_TICK_FORMAT}}"


def manual_execution_id(name: str, at: datetime) -> str:
    """The execution ``tep schedule trigger`` starts at ``at``: ``<name>-manual-<time>``."""
    return f"{name}{_MANUAL}-{at.astimezone(UTC):{_TICK_FORMAT}}"


def submission_event_id(execution_id: str) -> str:
    """The event id of a scheduled ``plan.submitted``: the same for every try of one tick."""
    return f"{execution_id}.scheduled"


def stamp(moment: datetime) -> str:
    """An aware datetime as ISO-8601 UTC (``2024-06-01T12:00:00Z``, microseconds if any)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_stamp(text: str) -> datetime:
    """The aware UTC datetime of an ISO-8601 string (``ValueError`` if it is none)."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset")
    return moment.astimezone(UTC)


# ---------------------------------------------------------------------------- ticks


def baseline(definition: ScheduleDefinition, state: ScheduleState | None) -> datetime:
    """Ticks at or before this moment are done: the last tick dealt with, or the time the
    schedule became active, whichever is later."""
    since = definition.active_since()
    if state is None or state.last_tick is None:
        return since
    return max(since, parse_stamp(state.last_tick))


def next_fire(
    definition: ScheduleDefinition, state: ScheduleState | None, now: datetime
) -> datetime | None:
    """The next tick due after ``now`` (``None`` while paused or if it never fires again)."""
    if definition.paused:
        return None
    start = max(now, baseline(definition, state))
    return definition.schedule().next_after(start, definition.zone())


def plan_ticks(
    cron: Cron,
    tz: tzinfo,
    *,
    after: datetime,
    now: datetime,
    missed_until: datetime,
    policy: CatchUp,
    limit: int = MAX_CATCH_UP,
) -> TickPlan:
    """Which ticks in ``(after, now]`` fire.

    Ticks up to ``missed_until`` (when the looking orchestrator started leading, or resumed
    after a stall) were missed: ``none`` fires none of them, ``one`` the newest, ``all`` every
    one (the newest ``limit``). Later ticks are on time and all fire (the newest ``limit``,
    should the clock have jumped).

    Args:
        cron: the schedule.
        tz: its time zone.
        after: ticks at or before it are done (see :func:`baseline`).
        now: the current time.
        missed_until: the end of the missed stretch.
        policy: the catch-up policy.
        limit: the most ticks fired from each of the two stretches.

    Example:
        >>> t0 = datetime(2024, 1, 1, tzinfo=UTC)
        >>> cron = parse_cron("@every 1s")
        >>> plan = plan_ticks(cron, UTC, after=t0, now=t0.replace(second=7),
        ...                   missed_until=t0.replace(second=5), policy="one")
        >>> [t.second for t in plan.fire], plan.caught_up, plan.skipped
        ([5, 6, 7], 1, True)
    """
    if now <= after:
        return TickPlan(fire=[])
    boundary = min(max(after, missed_until), now)
    fire: list[datetime] = []
    skipped = False
    last: datetime | None = None
    if boundary > after:
        missed, older = cron.latest(after, boundary, tz, limit if policy == "all" else 1)
        if missed:
            last = missed[-1]
            fire = [] if policy == "none" else missed
            skipped = older or policy == "none"
    caught_up = len(fire)
    on_time, dropped = cron.latest(boundary, now, tz, limit)
    if on_time:
        last = on_time[-1]
    return TickPlan(fire=fire + on_time, caught_up=caught_up, skipped=skipped or dropped, last=last)
