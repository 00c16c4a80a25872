"""A first delivery claims a new action without reading it first: the claim's guard decides.

The consumer's delivery count does not survive every server restart, so a request delivered
"for the first time" may belong to an action that already started or ended; the log refuses
the claim and the delivery goes on from where the action stands.
"""

from __future__ import annotations

import time
from collections import Counter

import anyio
import pytest
from support.executors import http_request, running_executor, wait_for_outcome
from support.http_target import HttpTarget

from eventstore.config import TepSettings
from eventstore.events import ActionCompleted, ActionStarted
from eventstore.jetstream.connection import NatsClient
from eventstore.jetstream.log import EventLog
from eventstore.jetstream.queues import consumer_name, ensure_queue_consumer

pytestmark = pytest.mark.anyio


async def test_a_new_action_is_claimed_and_called_once(
    nc: NatsClient, settings: TepSettings, event_log: EventLog, http_target: HttpTarget
) -> None:
    await ensure_queue_consumer(nc.jetstream(), settings, "http")
    await event_log.append(http_request("e1", "new", http_target.url("/echo/new")))

    async with running_executor(settings) as executor:
        outcome = await wait_for_outcome(event_log, "e1", "new")

    assert isinstance(outcome, ActionCompleted) and outcome.attempt == 1
    events = [r.event for r in await event_log.read_execution("e1")]
    starts = [e for e in events if isinstance(e, ActionStarted)]
    assert [(s.attempt, s.interruption) for s in starts] == [(1, 0)]
    assert len(http_target.hits) == 1 and executor.stats["completed"] == 1


async def test_a_first_delivery_of_an_ended_action_is_acked_without_a_call(
    nc: NatsClient, settings: TepSettings, event_log: EventLog, http_target: HttpTarget
) -> None:
    await ensure_queue_consumer(nc.jetstream(), settings, "http")
    await event_log.append(http_request("e1", "done", http_target.url("/echo/done")))
    # Recorded by an executor whose delivery the restarted server has forgotten.
    await event_log.append(
        ActionCompleted(
            execution_id="e1", action_id="done", event_id="e1.done.completed", attempt=1, output={}
        )
    )

    async with running_executor(settings) as executor:
        await wait_for_stats(executor.stats, "duplicate")

    info = await nc.jetstream().consumer_info(settings.stream, consumer_name("http"))
    assert info.num_ack_pending == 0 and info.num_pending == 0
    assert http_target.hits == []
    events = [r.event for r in await event_log.read_execution("e1")]
    assert not any(isinstance(e, ActionStarted) for e in events)


async def test_a_first_delivery_of_an_interrupted_attempt_starts_it_again(
    nc: NatsClient, settings: TepSettings, event_log: EventLog, http_target: HttpTarget
) -> None:
    await ensure_queue_consumer(nc.jetstream(), settings, "http")
    await event_log.append(http_request("e1", "once", http_target.url("/echo/once")))
    await event_log.append(
        ActionStarted(
            execution_id="e1",
            action_id="once",
            event_id="e1.once.started.1.0.x",
            attempt=1,
            executor_id="gone",
        )
    )

    async with running_executor(settings):
        outcome = await wait_for_outcome(event_log, "e1", "once")

    assert isinstance(outcome, ActionCompleted) and outcome.attempt == 1
    events = [r.event for r in await event_log.read_execution("e1")]
    starts = [e for e in events if isinstance(e, ActionStarted)]
    assert [(s.attempt, s.interruption) for s in starts] == [(1, 0), (1, 1)]
    assert len(http_target.hits) == 1


async def wait_for_stats(stats: Counter[str], key: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not stats[key]:
        if time.monotonic() > deadline:
            raise AssertionError(f"no {key!r} delivery in time")
        await anyio.sleep(0.02)
