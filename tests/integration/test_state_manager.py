"""The StateManager facade against a real nats-server and a running projector."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import msgspec
import pytest

from eventstore.config import TepSettings
from eventstore.errors import ExecutionExistsError, PlanValidationError
from eventstore.events import ActionCompleted, ActionExecuteRequested, ExecutionCompleted
from eventstore.jetstream.connection import NatsClient
from eventstore.jetstream.log import EventLog
from eventstore.state import ExecutionState
from projections import (
    ActionNotFoundError,
    ActionResult,
    ExecutionNotFoundError,
    InvalidTransitionError,
    StateManager,
    ViewTimeoutError,
)
from projections.testing import running_projector, synthetic_run

pytestmark = pytest.mark.anyio

DIAMOND = {
    "id": "diamond",
    "input": {"user_id": "42"},
    "actions": [
        {"id": "fetch", "type": "noop"},
        {"id": "left", "type": "noop", "dependsOn": ["fetch"]},
        {"id": "right", "type": "noop", "depends_on": ["fetch"]},
        {"id": "join", "type": "noop", "depends_on": ["left", "right"]},
    ],
}


@pytest.fixture
async def sm(nc: NatsClient, settings: TepSettings) -> AsyncIterator[StateManager]:
    async with running_projector(nc, settings), await StateManager.connect(settings=settings) as m:
        yield m


async def test_initialize_state_then_read_your_write(sm: StateManager) -> None:
    state = await sm.initialize_state(DIAMOND, execution_id="e1")

    seen = await sm.get_execution_state("e1", min_sequence=state.last_sequence)

    assert state.status == "pending" and state.last_sequence > 0
    assert seen == state
    assert seen is not None and seen.counts.total == 4 and seen.counts.pending == 4
    assert await sm.get_full_state("e1", min_sequence=state.last_sequence) == state


async def test_bad_plans_and_taken_ids_are_refused_before_publishing(
    sm: StateManager, event_log: EventLog
) -> None:
    await sm.initialize_state(DIAMOND, execution_id="e1")
    before = await event_log.last_sequence()

    with pytest.raises(PlanValidationError, match="unknown action"):
        await sm.initialize_state({"id": "p", "actions": [{"id": "a", "dependsOn": ["zz"]}]})
    with pytest.raises(PlanValidationError, match="reserved"):
        await sm.initialize_state(DIAMOND, execution_id="failed")
    with pytest.raises(ExecutionExistsError):
        await sm.initialize_state(DIAMOND, execution_id="e1")

    assert await event_log.last_sequence() == before


async def test_a_run_through_the_facade_follows_the_dag(sm: StateManager) -> None:
    await sm.initialize_state(DIAMOND, execution_id="e1")

    async def available() -> list[str]:
        return await sm.get_available_actions("e1", min_sequence=sm.last_sequence)

    assert await available() == ["fetch"]
    await sm.update_action_status("e1", "fetch", "running")
    assert await available() == []
    await sm.record_action_result("e1", "fetch", {"email": "a@example.com"})
    assert await available() == ["left", "right"]
    await sm.update_action_status("e1", "left", "running")
    await sm.record_action_result("e1", "left", ActionResult(output={"n": 1}, duration_ms=3))
    assert await available() == ["right"]
    await sm.update_action_status("e1", "right", "running")
    assert await available() == []
    await sm.record_action_result("e1", "right", ActionResult(error="boom"))
    assert await available() == []  # a failed dependency: join would be skipped

    fetch = await sm.get_action_result("e1", "fetch", min_sequence=sm.last_sequence)
    right = await sm.get_action_result("e1", "right")
    state = await sm.get_execution_state("e1")
    assert fetch is not None and fetch.status == "completed" and fetch.attempts == 1
    assert fetch.output == {"email": "a@example.com"}
    assert right is not None and right.status == "failed"
    assert right.error is not None and right.error.message == "boom"
    assert state is not None
    assert (state.counts.completed, state.counts.failed, state.counts.pending) == (2, 1, 1)
    await sm.update_action_status("e1", "join", "skipped", reason="right failed")
    skipped = await sm.get_action_result("e1", "join", min_sequence=sm.last_sequence)
    assert skipped is not None and skipped.status == "skipped"


async def test_invalid_transitions_are_rejected_and_nothing_is_written(
    sm: StateManager, event_log: EventLog
) -> None:
    await sm.initialize_state(DIAMOND, execution_id="e1")
    await sm.record_action_result("e1", "fetch", {"ok": True})
    before = await event_log.last_sequence()

    with pytest.raises(InvalidTransitionError, match="completed to running"):
        await sm.update_action_status("e1", "fetch", "running")
    with pytest.raises(InvalidTransitionError):
        await sm.update_action_status("e1", "left", "pending")
    with pytest.raises(ActionNotFoundError):
        await sm.update_action_status("e1", "nope", "running")
    with pytest.raises(ExecutionNotFoundError):
        await sm.record_action_result("missing", "fetch", {})
    with pytest.raises(ValueError, match="unknown action status"):
        await sm.update_action_status("e1", "left", "exploded")

    assert await event_log.last_sequence() == before


async def test_unknown_executions_read_as_none(sm: StateManager) -> None:
    assert await sm.get_execution_state("missing") is None
    assert await sm.get_action_result("missing", "a") is None
    with pytest.raises(ExecutionNotFoundError):
        await sm.get_available_actions("missing")


async def test_watch_yields_every_transition_in_order(
    nc: NatsClient, settings: TepSettings, event_log: EventLog
) -> None:
    run = synthetic_run("w1", actions=3, retries=[1])
    async with await StateManager.connect(settings=settings) as sm:
        states: list[ExecutionState] = []
        ended = anyio.Event()

        async def collect() -> None:
            async for state in sm.watch("w1"):
                states.append(state)
            ended.set()

        # The watch of an id the log has no plan.submitted for raises: submit it first.
        await event_log.append(run[0])
        async with anyio.create_task_group() as group:
            group.start_soon(collect)
            # The whole run is in the log before the projector starts: the view sees it in
            # one batch, the watch recovers the steps in between from the history.
            await event_log.append_many(run[1:])
            async with running_projector(nc, settings):
                with anyio.fail_after(30):
                    await ended.wait()

    assert [s.event_count for s in states] == list(range(1, len(run) + 1))
    statuses = [s.status for s in states]
    assert statuses[0] == "pending" and statuses[-1] == "completed"
    assert statuses == sorted(statuses, key=["pending", "running", "completed"].index)
    assert "running" in statuses
    assert [s.actions["a1"].attempts for s in states][-1] == 2


async def test_wait_for_completion_returns_the_terminal_state(
    sm: StateManager, event_log: EventLog
) -> None:
    await sm.initialize_state(DIAMOND, execution_id="e1")

    async with anyio.create_task_group() as group:

        async def finish() -> None:
            # An end the fold believes: every action finished first.
            for action_id in ("fetch", "left", "right", "join"):
                await event_log.append(
                    ActionCompleted(execution_id="e1", action_id=action_id, attempt=1, output={})
                )
            await event_log.append(ExecutionCompleted(execution_id="e1"))

        group.start_soon(finish)
        state = await sm.wait_for_completion("e1", timeout=30)

    assert state.status == "completed"
    await sm.initialize_state(DIAMOND, execution_id="e2")
    with pytest.raises(ViewTimeoutError, match="did not end"):
        await sm.wait_for_completion("e2", timeout=0.3)


async def test_reads_wait_for_min_sequence_and_time_out_without_a_projector(
    settings: TepSettings, nc: NatsClient
) -> None:
    async with await StateManager.connect(settings=settings) as sm:
        state = await sm.initialize_state(DIAMOND, execution_id="e1")
        with pytest.raises(ViewTimeoutError, match="is a projector running"):
            await sm.get_execution_state("e1", min_sequence=state.last_sequence, timeout=0.3)


async def test_time_travel_by_sequence_and_by_time(sm: StateManager, event_log: EventLog) -> None:
    events = synthetic_run("t1", actions=2)
    stamped = [
        msgspec.structs.replace(e, occurred_at=f"2025-01-01T00:00:{n:02d}.000Z")
        for n, e in enumerate(events)
    ]
    results = await event_log.append_many(stamped)
    dispatched = next(
        r.sequence
        for r, e in zip(results, stamped, strict=True)
        if isinstance(e, ActionExecuteRequested)
    )

    at_submit = await sm.get_execution_state("t1", at=results[0].sequence)
    at_dispatch = await sm.get_execution_state("t1", at=dispatched)
    at_two_seconds = await sm.get_execution_state("t1", at="2025-01-01T00:00:02.500Z")
    at_end = await sm.get_execution_state("t1", at=results[-1].sequence)
    before = await sm.get_execution_state("t1", at="2024-12-31T23:59:59Z")

    assert at_submit is not None and at_submit.status == "pending"
    assert at_dispatch is not None and at_dispatch.status == "running"
    assert at_two_seconds is not None and at_two_seconds.event_count == 3
    assert at_two_seconds.last_sequence == results[2].sequence
    assert at_end is not None and at_end.status == "completed"
    assert before is None
    with pytest.raises(ValueError, match="ISO-8601"):
        await sm.get_execution_state("t1", at="yesterday")
