"""The schedules' clock: fires the ticks of every schedule as they come due.

:class:`Scheduler` runs while its orchestrator process serves partition 0 (started and
cancelled with that partition's consumer,
:class:`orchestrator.partition_worker.PartitionWorker`). Each look, at least once a second and
at every tick due before that, reads every definition and state from the schedules bucket in
one pass, works out the due ticks with :func:`eventstore.schedules.plan_ticks`, submits each as
an execution with its deterministic id and records the newest tick dealt with by compare-and-set.

Exactly once comes from the id, not from the lease: a tick submitted again (by a process that
just took partition 0 over, or after a crash between submitting and recording) finds its
execution stored and changes nothing. Ticks that came due while no scheduler looked (before
this one took partition 0, or during a stall longer than the lease) are missed ones, for the
catch-up policy.

"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import anyio

from eventstore.jetstream.log import EventLog
from eventstore.jetstream.schedules import ScheduleStore, Stored, submit_scheduled
from eventstore.schedules import (
    MAX_CATCH_UP,
    ScheduleDefinition,
    ScheduleState,
    baseline,
    plan_ticks,
    stamp,
    tick_execution_id,
)

__all__ = ["Scheduler"]

_log = logging.getLogger("tep.orchestrator.scheduler")
_RETRY_DELAY_S = 1.0

FIRED = "schedule_ticks_fired"
CAUGHT_UP = "schedule_ticks_caught_up"
SKIPPED = "schedule_catch_ups_skipping"
"""Counters in the orchestrator's stats: ticks that started an execution, those of them that
were missed ticks, and looks where the catch-up policy left missed ticks out."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Scheduler:
    """Fires due schedule ticks until cancelled.

    Args:
        log: the event log to submit executions to.
        stats: counters to add to (the orchestrator's).
        stall_s: a gap between looks longer than this (the lease time) makes the ticks of the
            gap missed ones: another orchestrator may have led meanwhile.
        poll_s: the longest wait between looks (how soon a new or changed schedule is seen).
        limit: the most ticks fired at once from a missed stretch (policy ``all``).
        clock: the current time (aware UTC).
    """

    def __init__(
        self,
        log: EventLog,
        *,
        stats: dict[str, int] | None = None,
        stall_s: float = 3.0,
        poll_s: float = 1.0,
        limit: int = MAX_CATCH_UP,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.log = log
        self.stats = stats if stats is not None else {}
        for counter in (FIRED, CAUGHT_UP, SKIPPED):
            self.stats.setdefault(counter, 0)
        self.stall_s = stall_s
        self.poll_s = poll_s
        self.limit = limit
        self.clock = clock
        self.looks = 0
        """Looks completed so far (each read every schedule once)."""
        self._broken: dict[str, str] = {}

    async def run(self) -> None:
        """Look, fire, sleep until the next tick or ``poll_s``; until cancelled.

        Until the schedules bucket exists there is nothing to fire; it is looked for every
        ``poll_s``. Errors (NATS unreachable, a write refused) are logged and the look is
        retried a second later; they never reach the orchestrator's consumer.
        """
        store: ScheduleStore | None = None
        missed_until = self.clock()
        failure: str | None = None
        while True:
            delay = self.poll_s
            try:
                # The admin creates the bucket (tep provision, tep up, the first schedule add).
                store = store or await ScheduleStore.open(self.log)
                if store is not None:
                    wake = await self.look(store, missed_until)
                    delay = max((wake - self.clock()).total_seconds(), 0.0)
                failure = None
            except Exception as exc:
                if repr(exc) != failure:  # once per distinct failure, not every second
                    _log.exception("schedules: look failed; retrying")
                failure, store = repr(exc), None
                delay = _RETRY_DELAY_S
            due = time.monotonic() + delay
            await anyio.sleep(delay)
            if time.monotonic() - due > self.stall_s:
                missed_until = self.clock()
                _log.warning("scheduler stalled: the ticks of the gap count as missed")

    async def look(self, store: ScheduleStore, missed_until: datetime) -> datetime:
        """Fire what is due now; the time of the next look."""
        now = self.clock()
        wake = now + timedelta(seconds=self.poll_s)
        schedules = await store.read_all()
        for key, problem in schedules.unreadable.items():
            self._report_broken(key, f"unreadable: {problem}")
        for name, stored in schedules.definitions.items():
            state = schedules.states.get(name)
            try:
                upcoming = await self._fire_due(store, stored.value, state, now, missed_until)
            except Exception as exc:  # one schedule's trouble must not hold up the others
                self._report_broken(name, f"{type(exc).__name__}: {exc}")
                continue
            self._broken.pop(name, None)
            if upcoming is not None:
                wake = min(wake, upcoming)
        self.looks += 1
        return wake

    async def _fire_due(
        self,
        store: ScheduleStore,
        definition: ScheduleDefinition,
        state: Stored[ScheduleState] | None,
        now: datetime,
        missed_until: datetime,
    ) -> datetime | None:
        """Fire the schedule's due ticks; its next tick (``None``: paused, or never again)."""
        if definition.paused:
            return None
        cron, zone = definition.schedule(), definition.zone()
        after = baseline(definition, state.value if state else None)
        plan = plan_ticks(
            cron,
            zone,
            after=after,
            now=now,
            missed_until=missed_until,
            policy=definition.catch_up,
            limit=self.limit,
        )
        if plan.last is not None:
            newest = None
            for index, tick in enumerate(plan.fire):
                execution_id = tick_execution_id(definition.name, tick)
                if await submit_scheduled(self.log, definition, execution_id):
                    self.stats[FIRED] += 1
                    self.stats[CAUGHT_UP] += int(index < plan.caught_up)
                    _log.info(
                        "schedule %s: tick %s started %s",
                        definition.name,
                        stamp(tick),
                        execution_id,
                        extra={"schedule": definition.name, "execution_id": execution_id},
                    )
                newest = execution_id
            if plan.skipped:
                self.stats[SKIPPED] += 1
                _log.info(
                    "schedule %s: missed ticks skipped (catch_up=%s)",
                    definition.name,
                    definition.catch_up,
                    extra={"schedule": definition.name},
                )
            last, fired_at = plan.last, stamp(self.clock())
            await store.record(
                definition.name, lambda s: s.with_tick(last, newest, fired_at), known=state
            )
        return cron.next_after(max(now, after), zone)

    def _report_broken(self, name: str, problem: str) -> None:
        if self._broken.get(name) == problem:
            return  # once, not at every look
        self._broken[name] = problem
        _log.warning("schedule %s cannot fire: %s", name, problem, extra={"schedule": name})
