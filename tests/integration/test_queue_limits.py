"""Queue limits: operator configuration (``tep queue``), never changed by a submitted plan.

Real nats-server, a real in-process executor and orchestrator, a real HTTP target, and the
``tep`` command line as a child process.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from support.executors import running_executor
from support.http_target import HttpTarget
from test_orchestrator import orchestrator

from eventstore.config import TepSettings
from eventstore.events import ActionExecuteRequested, PlanSubmitted
from eventstore.fold import fold
from eventstore.jetstream.connection import NatsClient
from eventstore.jetstream.log import EventLog
from eventstore.jetstream.queues import (
    DEFAULT_QUEUE_CONCURRENCY,
    consumer_name,
    ensure_queue_consumer,
    set_queue_limit,
)
from eventstore.plan import Action, Plan, QueueConfig, RequestSpec
from eventstore.state import ExecutionState

pytestmark = pytest.mark.anyio


async def eventually(condition: Callable[[], Awaitable[Any] | Any], message: str) -> Any:
    """Poll ``condition`` until it is truthy; fail after 15 s with ``message``."""
    deadline = time.monotonic() + 15
    while True:
        value = condition()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} (within 15s)")
        await anyio.sleep(0.02)


def call(action_id: str, url: str) -> Action:
    return Action(id=action_id, request=RequestSpec(url=url))


async def state_of(log: EventLog, execution_id: str) -> ExecutionState | None:
    return fold(await log.read_execution(execution_id))


async def ended(log: EventLog, execution_id: str) -> ExecutionState | None:
    state = await state_of(log, execution_id)
    return state if state is not None and state.terminal else None


async def max_ack_pending(nc: NatsClient, settings: TepSettings, queue: str = "http") -> int:
    info = await nc.jetstream().consumer_info(settings.stream, consumer_name(queue))
    value: int = info.config.max_ack_pending
    return value


async def tep(settings: TepSettings, *args: str) -> tuple[int, str, str]:
    done = await anyio.run_process(
        [sys.executable, "-m", "tep", *args, "--nats-url", settings.nats_url], check=False
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def test_a_plan_limit_caps_its_execution_and_leaves_the_queue_to_other_plans(
    nc: NatsClient, settings: TepSettings, event_log: EventLog, http_target: HttpTarget
) -> None:
    limited = Plan(
        id="one-at-a-time",
        queues={"http": QueueConfig(concurrency_limit=1)},
        actions=[
            call("long", http_target.url("/slow/long?delay=60")),
            call("next", http_target.url("/echo/next")),
        ],
    )
    other = Plan(
        id="other", actions=[call(f"o{i}", http_target.url(f"/echo/o{i}")) for i in range(4)]
    )

    async with running_executor(settings, concurrency=8), orchestrator(settings):
        before = await max_ack_pending(nc, settings)
        await event_log.append(PlanSubmitted(execution_id="limited-1", plan=limited))
        await eventually(lambda: http_target.in_flight == 1, "the long call started")

        # Its only slot is busy: the execution waits, the queue does not.
        await event_log.append(PlanSubmitted(execution_id="other-1", plan=other))
        done = await eventually(lambda: ended(event_log, "other-1"), "the other plan ended")
        assert done.status == "completed"
        assert {hit.path for hit in http_target.hits} == {
            "/slow/long",
            *(f"/echo/o{i}" for i in range(4)),
        }

        state = await state_of(event_log, "limited-1")
        assert state is not None and state.status == "running"
        assert state.actions["long"].status == "running"
        assert state.actions["next"].dispatched_at is None
        assert await max_ack_pending(nc, settings) == before == DEFAULT_QUEUE_CONCURRENCY


async def test_tep_queue_set_changes_the_consumer_and_bounds_the_calls(
    nc: NatsClient, settings: TepSettings, event_log: EventLog, http_target: HttpTarget
) -> None:
    plan = Plan(
        id="wide",
        actions=[call(f"b{i}", http_target.url(f"/slow/b{i}?delay=0.3")) for i in range(8)],
    )
    async with running_executor(settings, concurrency=8), orchestrator(settings):
        assert await max_ack_pending(nc, settings) == DEFAULT_QUEUE_CONCURRENCY

        code, out, err = await tep(settings, "queue", "set", "http", "--concurrency", "2", "--json")
        assert (code, err) == (0, "")
        assert json.loads(out) == {"queue": "http", "concurrency": 2, "max_ack_pending": 2}
        assert await max_ack_pending(nc, settings) == 2

        await event_log.append(PlanSubmitted(execution_id="wide-1", plan=plan))
        done = await eventually(lambda: ended(event_log, "wide-1"), "the plan ended")
        assert done.status == "completed"
        assert len(http_target.hits) == 8
        assert http_target.max_in_flight == 2

        code, out, _ = await tep(settings, "queue", "show", "http", "--json")
        assert code == 0
        [shown] = json.loads(out)["queues"]
        assert shown["concurrency"] == 2 and shown["configured"] is True
        assert shown["max_ack_pending"] == 2 and shown["in_flight"] == 0

    # All eight were dispatched at once: the queue held them back, not the orchestrator.
    history = [r.event for r in await event_log.read_execution("wide-1")]
    submitted = history[0]
    causes = {e.causation_id for e in history if isinstance(e, ActionExecuteRequested)}
    assert isinstance(submitted, PlanSubmitted) and causes == {submitted.event_id}


async def test_an_executor_start_applies_the_stored_limit_and_puts_back_a_foreign_one(
    nc: NatsClient, settings: TepSettings
) -> None:
    js = nc.jetstream()
    # A limit left on the consumer by something else (as plans once did) does not stick.
    await ensure_queue_consumer(js, settings, "http")
    info = await js.consumer_info(settings.stream, consumer_name("http"))
    info.config.max_ack_pending = 5
    await js.add_consumer(settings.stream, config=info.config)
    async with running_executor(settings):
        assert await max_ack_pending(nc, settings) == DEFAULT_QUEUE_CONCURRENCY

    # A stored limit outlives the consumer: whoever creates it again applies it.
    assert await set_queue_limit(js, settings, "http", 3) == 3
    await js.delete_consumer(settings.stream, consumer_name("http"))
    async with running_executor(settings):
        assert await max_ack_pending(nc, settings) == 3

    # Before any executor: stored, and applied by the first one.
    assert await set_queue_limit(js, settings, "mail", None) is None
    async with running_executor(settings, queue="mail"):
        assert await max_ack_pending(nc, settings, "mail") == -1

    code, out, _ = await tep(settings, "queue", "show")
    assert code == 0
    assert [line.split()[:3] for line in out.splitlines()[1:]] == [
        ["http", "3", "3"],
        ["mail", "unlimited", "unlimited"],
    ]
    code, _, err = await tep(settings, "queue", "set", "http", "--concurrency", "0")
    assert code == 2 and err == 'tep: queue "http": concurrency must be at least 1\n'
    assert await max_ack_pending(nc, settings) == 3
