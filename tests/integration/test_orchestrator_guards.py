"""Per-event guards on appends (``EventLog.append(guard=)``, ``append_atomic(guards=)``)."""

from __future__ import annotations

import pytest

from eventstore.errors import ConcurrencyError
from eventstore.events import (
    ActionExecuteRequested,
    ActionSkipped,
    ErrorInfo,
    ExecutionCompleted,
    ExecutionFailed,
)
from eventstore.jetstream.log import EventLog
from eventstore.records import Guard
from eventstore.subjects import terminal_filter
from orchestrator.guards import guard_for

pytestmark = pytest.mark.anyio


def _requested(action_id: str, event_id: str) -> ActionExecuteRequested:
    return ActionExecuteRequested(
        execution_id="e1", action_id=action_id, event_id=event_id, action_type="http", queue="http"
    )


async def test_guarded_batch_refuses_a_second_decision_on_the_same_subject(
    event_log: EventLog,
) -> None:
    first = [_requested("a", "e1.a.requested"), _requested("b", "e1.b.requested")]
    await event_log.append_atomic(first, guards=[Guard(), Guard()])
    before = await event_log.last_sequence()
    # A racing decider with other event ids (outside any dedupe) for one of the same actions.
    second = [_requested("c", "other-c"), _requested("b", "other-b")]

    with pytest.raises(ConcurrencyError):
        await event_log.append_atomic(second, guards=[Guard(), Guard()])

    assert await event_log.last_sequence() == before  # not even "c" was stored


async def test_guard_on_a_filter_stores_one_end_per_execution(event_log: EventLog) -> None:
    completed = ExecutionCompleted(execution_id="e1", event_id="e1.end")
    failed = ExecutionFailed(
        execution_id="e1", event_id="e1.other-end", error=ErrorInfo(message="x", code="y")
    )
    await event_log.append(completed, guard=guard_for(completed))

    with pytest.raises(ConcurrencyError):
        await event_log.append(failed, guard=guard_for(failed))
    with pytest.raises(ConcurrencyError):
        await event_log.append_atomic(
            [ActionSkipped(execution_id="e1", action_id="z", reason="condition_false"), failed],
            guards=[Guard(), Guard(0, terminal_filter("e1"))],
        )
    # Other executions are not affected by e1's end.
    other = ExecutionCompleted(execution_id="e2")
    await event_log.append(other, guard=guard_for(other))

    ends = [r.event for r in await event_log.read_execution("e1")]
    assert ends == [completed]


async def test_retrying_a_guarded_append_that_was_stored_is_a_duplicate(
    event_log: EventLog,
) -> None:
    event = _requested("a", "e1.a.requested")
    first = await event_log.append(event, guard=Guard())

    again = await event_log.append(event, guard=Guard())

    assert again.duplicate and again.sequence == first.sequence


async def test_unguarded_events_in_a_guarded_batch_are_unchecked(event_log: EventLog) -> None:
    await event_log.append(_requested("a", "x1"))
    results = await event_log.append_atomic(
        [_requested("a", "x2"), _requested("b", "x3")], guards=[None, Guard()]
    )
    assert [r.sequence for r in results] == [2, 3]


async def test_guard_and_expected_version_on_one_event_is_refused(event_log: EventLog) -> None:
    with pytest.raises(ValueError, match="both"):
        await event_log.append(_requested("a", "x"), expected_version=0, guard=Guard())
    with pytest.raises(ValueError, match="guards for"):
        await event_log.append_atomic([_requested("a", "x")], guards=[])
