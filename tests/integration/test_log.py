"""The event log against a real nats-server."""

from __future__ import annotations

import asyncio

import pytest

from eventstore.errors import ConcurrencyError, ExecutionExistsError
from eventstore.events import (
    ActionCompleted,
    ActionExecuteRequested,
    ActionStarted,
    PlanSubmitted,
)
from eventstore.jetstream.log import EventLog
from eventstore.plan import Action, Plan, RequestSpec

pytestmark = pytest.mark.anyio

PLAN = Plan(id="p", actions=[Action(id="a", request=RequestSpec(url="http://127.0.0.1:1/x"))])


async def test_append_then_read_returns_events_in_order(event_log: EventLog) -> None:
    submitted = PlanSubmitted(execution_id="e1", plan=PLAN)
    started = ActionStarted(execution_id="e1", action_id="a", attempt=1)
    completed = ActionCompleted(execution_id="e1", action_id="a", attempt=1, output={"ok": True})
    for event in (submitted, started, completed):
        await event_log.append(event)

    history = await event_log.read_execution("e1")

    assert [r.event for r in history] == [submitted, started, completed]
    assert [r.sequence for r in history] == [1, 2, 3]


async def test_reappending_the_same_event_id_is_a_noop(event_log: EventLog) -> None:
    event = ActionStarted(execution_id="e1", action_id="a", attempt=1)
    first = await event_log.append(event)
    again = await event_log.append(event)

    assert again.duplicate and again.sequence == first.sequence
    assert await event_log.last_sequence() == 1


async def test_submitting_an_existing_execution_id_is_rejected(event_log: EventLog) -> None:
    await event_log.append(PlanSubmitted(execution_id="e1", plan=PLAN))
    with pytest.raises(ExecutionExistsError):
        await event_log.append(PlanSubmitted(execution_id="e1", plan=PLAN))


async def test_concurrent_appends_at_one_version_exactly_one_wins(event_log: EventLog) -> None:
    await event_log.append(PlanSubmitted(execution_id="e1", plan=PLAN))
    version = await event_log.execution_version("e1")
    contenders = [ActionStarted(execution_id="e1", action_id="a", attempt=n) for n in range(1, 6)]

    results = await asyncio.gather(
        *(event_log.append(e, expected_version=version) for e in contenders),
        return_exceptions=True,
    )

    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1
    assert len(losers) == 4 and all(isinstance(r, ConcurrencyError) for r in losers)
    assert await event_log.execution_version("e1") == winners[0].sequence


async def test_writes_to_other_executions_do_not_conflict(event_log: EventLog) -> None:
    version = await event_log.execution_version("e1")
    await event_log.append(ActionStarted(execution_id="e2", action_id="a", attempt=1))

    result = await event_log.append(
        ActionStarted(execution_id="e1", action_id="a", attempt=1), expected_version=version
    )

    assert not result.duplicate


async def test_atomic_append_is_all_or_nothing_under_conflict(event_log: EventLog) -> None:
    await event_log.append(ActionStarted(execution_id="e1", action_id="a", attempt=1))
    batch = [
        ActionExecuteRequested(
            execution_id="e1", action_id=f"x{i}", action_type="http", queue="http"
        )
        for i in range(5)
    ]
    before = await event_log.last_sequence()

    with pytest.raises(ConcurrencyError):
        await event_log.append_atomic(batch, expected_version=0)

    assert await event_log.last_sequence() == before
    results = await event_log.append_atomic(batch, expected_version=before)
    assert [r.sequence for r in results] == list(range(before + 1, before + 6))


async def test_pipelined_append_stores_every_event_in_order(event_log: EventLog) -> None:
    events = [
        ActionStarted(execution_id=f"e{i % 7}", action_id="a", attempt=i) for i in range(3000)
    ]

    results = await event_log.append_many(events, max_in_flight=64)

    assert [r.sequence for r in results] == list(range(1, 3001))
    replayed = [r.event async for r in event_log.replay()]
    assert replayed == events


async def test_reading_an_unknown_execution_returns_nothing(event_log: EventLog) -> None:
    assert await event_log.read_execution("missing") == []
