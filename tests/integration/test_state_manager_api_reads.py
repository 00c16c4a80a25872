"""What the HTTP API stands on, on a real nats-server: watching from a sequence on (history
first, then live, each state once), following past the end, submitting once per idempotency
key, and cancelling idempotently."""

from __future__ import annotations

import anyio
import pytest

from eventstore.config import TepSettings
from eventstore.jetstream.connection import NatsClient
from eventstore.jetstream.log import EventLog
from eventstore.state import ExecutionState
from projections import StateManager
from projections.submission import IdempotencyKeyReusedError, idempotent_execution_id
from projections.testing import running_projector, synthetic_run

pytestmark = pytest.mark.anyio

PLAN = {"id": "p", "actions": [{"id": "a", "type": "noop"}]}


async def test_watch_after_a_sequence_gives_every_later_state_once(
    nc: NatsClient, settings: TepSettings, event_log: EventLog
) -> None:
    run = synthetic_run("w-after", actions=3)
    await event_log.append_many(run[: len(run) // 2])
    async with running_projector(nc, settings), await StateManager.connect(settings=settings) as sm:
        history = await sm.history("w-after")
        after = history[1].sequence
        states: list[ExecutionState] = []
        ended = anyio.Event()

        async def collect() -> None:
            async for state in sm.watch("w-after", after=after):
                states.append(state)
            ended.set()

        async with anyio.create_task_group() as group:
            group.start_soon(collect)
            await event_log.append_many(run[len(run) // 2 :])
            with anyio.fail_after(30):
                await ended.wait()
        everything = [r.sequence for r in await sm.history("w-after")]
        resumed_at_end = [s async for s in sm.watch("w-after", after=everything[-1])]

    assert [s.last_sequence for s in states] == [seq for seq in everything if seq > after]
    assert states[-1].status == "completed"
    assert resumed_at_end == []


async def test_watch_without_until_end_follows_on(
    nc: NatsClient, settings: TepSettings, event_log: EventLog
) -> None:
    run = synthetic_run("w-on", actions=1)
    await event_log.append_many(run)
    async with running_projector(nc, settings), await StateManager.connect(settings=settings) as sm:
        seen: list[ExecutionState] = []
        with anyio.move_on_after(1.0):
            async for state in sm.watch("w-on", after=0, until_end=False):
                seen.append(state)

    assert len(seen) == len(run) and seen[-1].terminal  # still following when cut off


async def test_submit_once_per_idempotency_key(nc: NatsClient, settings: TepSettings) -> None:
    async with await StateManager.connect(settings=settings) as sm:
        first = await sm.submit(PLAN, idempotency_key="order-1")
        again = await sm.submit(PLAN, idempotency_key="order-1")
        named = await sm.submit(PLAN, execution_id="mine", idempotency_key="k")
        named_again = await sm.submit(PLAN, execution_id="mine", idempotency_key="k")
        with pytest.raises(IdempotencyKeyReusedError):
            await sm.submit({**PLAN, "id": "other"}, idempotency_key="order-1")

    assert first.created and not again.created
    assert (
        first.state.execution_id == again.state.execution_id == idempotent_execution_id("order-1")
    )
    assert named.created and not named_again.created and named_again.state.execution_id == "mine"
    with pytest.raises(ValueError, match="1 to 256"):
        idempotent_execution_id("")


async def test_cancel_is_idempotent(nc: NatsClient, settings: TepSettings) -> None:
    async with await StateManager.connect(settings=settings) as sm:
        state = await sm.initialize_state(PLAN, execution_id="c1")
        first = await sm.cancel("c1", reason="stop")
        second = await sm.cancel("c1")

    assert state.status == "pending"
    assert first.outcome == "requested" and first.sequence is not None
    assert sm.last_sequence >= first.sequence
    assert second.outcome == "already_requested" and second.sequence is None
