"""The executor against a real nats-server and a real HTTP target, in process."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest
from support.executors import http_request, running_executor, wait_for_outcome
from support.http_target import HttpTarget

from eventstore.config import TepSettings
from eventstore.events import (
    ActionAttemptFailed,
    ActionCompleted,
    ActionExecuteRequested,
    ActionFailed,
    ActionStarted,
)
from eventstore.jetstream.connection import NatsClient
from eventstore.jetstream.log import EventLog
from eventstore.jetstream.queues import consumer_name, ensure_queue_consumer, set_queue_limit
from eventstore.plan import RetryPolicy
from eventstore.subjects import executor_probe_subject
from executor.errors import NonRetryableError, RetryableError
from executor.handlers import HandlerRegistry, current_attempt
from executor.probe import answer_probes, probe_holder

pytestmark = pytest.mark.anyio

FAST_RETRY = RetryPolicy(max_attempts=3, min_backoff_ms=50, backoff_factor=2, jitter=False)


async def history(log: EventLog, execution_id: str) -> list[Any]:
    return [record.event for record in await log.read_execution(execution_id)]


async def test_a_successful_call_records_started_then_completed_with_the_output(
    settings: TepSettings, event_log: EventLog, http_target: HttpTarget
) -> None:
    await event_log.append(http_request("e1", "fetch", http_target.url("/echo/users/1?x=1")))

    async with running_executor(settings, executor_id="ex-1"):
        outcome = await wait_for_outcome(event_log, "e1", "fetch")

    assert isinstance(outcome, ActionCompleted)
    assert outcome.attempt == 1 and outcome.status_code == 200
    assert outcome.output["path"] == "/echo/users/1" and outcome.output["query"] == {"x": "1"}
    assert outcome.headers["content-type"].startswith("application/json")
    assert outcome.duration_ms is not None and outcome.duration_ms > 0
    events = await history(event_log, "e1")
    assert [type(e) for e in events] == [ActionExecuteRequested, ActionStarted, ActionCompleted]
    assert events[1].executor_id == "ex-1"
    [hit] = http_target.hits
    assert hit.idempotency_key == "e1:fetch"


async def test_a_target_failing_twice_succeeds_on_the_third_attempt_with_one_key(
    settings: TepSettings, event_log: EventLog, http_target: HttpTarget
) -> None:
    await event_log.append(
        http_request("e1", "pay", http_target.url("/flaky/2/pay"), retry=FAST_RETRY)
    )

    async with running_executor(settings):
        outcome = await wait_for_outcome(event_log, "e1", "pay")

    assert isinstance(outcome, ActionCompleted) and outcome.attempt == 3
    assert outcome.output == {"attempt": 3, "key": "e1:pay"}
    events = await history(event_log, "e1")
    failures = [e for e in events if isinstance(e, ActionAttemptFailed)]
    assert [(f.attempt, f.error.code, f.retry_in_ms) for f in failures] == [
        (1, "http_5xx", 50),
        (2, "http_5xx", 100),
    ]
    assert [e.attempt for e in events if isinstance(e, ActionStarted)] == [1, 2, 3]
    assert [hit.idempotency_key for hit in http_target.hits] == ["e1:pay"] * 3


async def test_a_404_fails_at_once(
    settings: TepSettings, event_log: EventLog, http_target: HttpTarget
) -> None:
    await event_log.append(
        http_request("e1", "user", http_target.url("/status/404/user"), retry=FAST_RETRY)
    )

    async with running_executor(settings):
        outcome = await wait_for_outcome(event_log, "e1", "user")

    assert isinstance(outcome, ActionFailed)
    assert outcome.attempt == 1
    assert outcome.error.code == "http_4xx" and outcome.error.status_code == 404
    assert len(http_target.hits) == 1


async def test_a_slow_target_times_out(
    settings: TepSettings, event_log: EventLog, http_target: HttpTarget
) -> None:
    await event_log.append(
        http_request("e1", "slow", http_target.url("/slow/x?delay=5"), timeout_s=0.3)
    )

    async with running_executor(settings):
        outcome = await wait_for_outcome(event_log, "e1", "slow")

    # Given up on, not answered: the target would have answered after 5 s.
    assert isinstance(outcome, ActionFailed) and outcome.error.code == "timeout"
    assert outcome.error.retryable


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_body_over_the_output_limit_fails_with_output_too_large(
    settings: TepSettings, event_log: EventLog, http_target: HttpTarget, chunked: bool
) -> None:
    url = http_target.url(f"/big/200000/x?chunked={int(chunked)}")
    await event_log.append(http_request("e1", "big", url, retry=FAST_RETRY))

    async with running_executor(settings, max_output_bytes=100_000):
        outcome = await wait_for_outcome(event_log, "e1", "big")

    assert isinstance(outcome, ActionFailed)
    assert outcome.error.code == "output_too_large" and outcome.attempt == 1
    assert "100000" in outcome.error.message


async def test_an_output_just_under_the_limit_is_kept(
    settings: TepSettings, event_log: EventLog, http_target: HttpTarget
) -> None:
    await event_log.append(http_request("e1", "big", http_target.url("/big/90000/x")))

    async with running_executor(settings, max_output_bytes=100_000):
        outcome = await wait_for_outcome(event_log, "e1", "big")

    assert isinstance(outcome, ActionCompleted)
    assert len(outcome.output["value"]) == 90_000 - 2


async def test_secrets_reach_the_target_but_never_the_log(
    settings: TepSettings, event_log: EventLog, http_target: HttpTarget
) -> None:
    secret = "s3cr3t-Tok3n/+="
    await event_log.append(
        http_request(
            "e1",
            "call",
            http_target.url("/echo/secure"),
            method="POST",
            query={"token": "{{secrets.API_TOKEN}}"},
            headers={"Authorization": "Bearer {{secrets.API_TOKEN}}"},
            json={"key": "{{secrets.API_TOKEN}}"},
        )
    )
    await event_log.append(
        http_request("e1", "fail", http_target.url("/status/401/{{secrets.API_TOKEN}}"))
    )

    env = {"TEP_SECRET_API_TOKEN": secret, "TEP_SECRET_API_TOKEN_HOSTS": "127.0.0.1"}
    async with running_executor(settings, env=env):
        completed = await wait_for_outcome(event_log, "e1", "call")
        failed = await wait_for_outcome(event_log, "e1", "fail")

    [hit] = http_target.hits_for("/echo/secure")
    assert hit.headers["authorization"] == f"Bearer {secret}"
    assert hit.query["token"] == secret
    assert secret in hit.body.decode()
    assert isinstance(completed, ActionCompleted)
    assert completed.output["headers"]["Authorization"] == "Bearer [redacted]"
    assert isinstance(failed, ActionFailed) and "[redacted]" in failed.error.message
    raw = [r.data for r in await event_log.read_execution_raw("e1")]
    assert len(raw) == 6
    for data in raw:
        assert b"s3cr3t" not in data


async def test_a_missing_secret_fails_without_calling_the_target(
    settings: TepSettings, event_log: EventLog, http_target: HttpTarget
) -> None:
    url = http_target.url("/echo/x")
    await event_log.append(
        http_request("e1", "call", url, headers={"X-Key": "{{secrets.NOT_SET}}"}, retry=FAST_RETRY)
    )

    async with running_executor(settings, env={}):
        outcome = await wait_for_outcome(event_log, "e1", "call")

    assert isinstance(outcome, ActionFailed) and outcome.error.code == "missing_secret"
    assert "NOT_SET" in outcome.error.message
    assert http_target.hits == []


async def test_a_redelivered_request_with_an_outcome_is_acked_without_a_call(
    nc: NatsClient, settings: TepSettings, event_log: EventLog, http_target: HttpTarget
) -> None:
    await ensure_queue_consumer(nc.jetstream(), settings, "http")
    await event_log.append(http_request("e1", "done", http_target.url("/echo/done")))
    # A first executor took the request and recorded the outcome, then died before acking.
    queue = await nc.jetstream().pull_subscribe_bind(
        durable=consumer_name("http"), stream=settings.stream
    )
    [msg] = await queue.fetch(1, timeout=5)
    await event_log.append(
        ActionCompleted(
            execution_id="e1", action_id="done", event_id="e1.done.completed", attempt=1, output={}
        )
    )
    await msg.nak()

    async with running_executor(settings) as executor:
        await wait_for(lambda: executor.stats["duplicate"] == 1)

    info = await nc.jetstream().consumer_info(settings.stream, consumer_name("http"))
    assert info.num_ack_pending == 0 and info.num_pending == 0
    assert http_target.hits == []


async def test_a_delivery_that_never_started_does_not_use_up_an_attempt(
    nc: NatsClient, settings: TepSettings, event_log: EventLog, http_target: HttpTarget
) -> None:
    await ensure_queue_consumer(nc.jetstream(), settings, "http")
    await event_log.append(http_request("e1", "once", http_target.url("/echo/once")))
    queue = await nc.jetstream().pull_subscribe_bind(
        durable=consumer_name("http"), stream=settings.stream
    )
    [msg] = await queue.fetch(1, timeout=5)
    await msg.nak()  # delivered, never started: e.g. lost with a crashed process

    async with running_executor(settings):
        outcome = await wait_for_outcome(event_log, "e1", "once")

    assert isinstance(outcome, ActionCompleted) and outcome.attempt == 1
    assert len(http_target.hits) == 1


async def interrupted_start(
    nc: NatsClient, settings: TepSettings, event_log: EventLog, url: str, interruption: int
) -> None:
    """A request whose attempt 1 started (after ``interruption`` earlier cut-offs), then its
    executor died mid-call."""
    await ensure_queue_consumer(nc.jetstream(), settings, "http")
    await event_log.append(http_request("e1", "once", url))
    queue = await nc.jetstream().pull_subscribe_bind(
        durable=consumer_name("http"), stream=settings.stream
    )
    [msg] = await queue.fetch(1, timeout=5)
    await event_log.append(
        ActionStarted(
            execution_id="e1",
            action_id="once",
            event_id="e1.once.started.1.x",
            attempt=1,
            interruption=interruption,
        )
    )
    await msg.nak()


async def test_an_interrupted_attempt_starts_again_without_using_up_the_attempts(
    nc: NatsClient, settings: TepSettings, event_log: EventLog, http_target: HttpTarget
) -> None:
    # max_attempts is 1: an executor crash must still not fail the action.
    await interrupted_start(nc, settings, event_log, http_target.url("/echo/once"), 0)

    async with running_executor(settings):
        outcome = await wait_for_outcome(event_log, "e1", "once")

    assert isinstance(outcome, ActionCompleted) and outcome.attempt == 1
    starts = [e for e in await history(event_log, "e1") if isinstance(e, ActionStarted)]
    assert [(s.attempt, s.interruption) for s in starts] == [(1, 0), (1, 1)]
    assert len(http_target.hits) == 1


async def test_an_attempt_interrupted_past_the_budget_fails_and_is_dead_lettered(
    nc: NatsClient, settings: TepSettings, event_log: EventLog, http_target: HttpTarget
) -> None:
    await interrupted_start(nc, settings, event_log, http_target.url("/echo/once"), 2)

    async with running_executor(settings, max_interruptions=2):
        outcome = await wait_for_outcome(event_log, "e1", "once")

    assert isinstance(outcome, ActionFailed) and outcome.error.code == "interrupted"
    assert "interrupted 3 times" in outcome.error.message
    assert http_target.hits == []
    js = nc.jetstream()
    dead = await js.get_last_msg(
        settings.deadletter_stream, "tep.deadletter.executor.action.execute.requested.http.e1.once"
    )
    assert dead.headers is not None and dead.headers["Tep-Reason-Code"] == "interrupted"
    info = await js.consumer_info(settings.stream, consumer_name("http"))
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_heartbeats_keep_a_call_longer_than_the_ack_wait_from_being_redelivered(
    nc: NatsClient, settings: TepSettings, event_log: EventLog, http_target: HttpTarget
) -> None:
    # Without heartbeats the request would come back after 0.6 s, long before the call ends.
    await event_log.append(
        http_request("e1", "long", http_target.url("/slow/long?delay=1.8"), timeout_s=10)
    )

    async with running_executor(settings, ack_wait_s=0.6):
        info = await nc.jetstream().consumer_info(settings.stream, consumer_name("http"))
        outcome = await wait_for_outcome(event_log, "e1", "long")

    assert info.config.ack_wait == 0.6
    assert isinstance(outcome, ActionCompleted) and outcome.attempt == 1
    assert len(http_target.hits) == 1
    starts = [e for e in await history(event_log, "e1") if isinstance(e, ActionStarted)]
    assert len(starts) == 1


async def test_an_unknown_action_type_fails_with_its_code(
    settings: TepSettings, event_log: EventLog
) -> None:
    await event_log.append(
        http_request("e1", "x", "", action_type="teleport", queue="http", retry=FAST_RETRY)
    )

    async with running_executor(settings):
        outcome = await wait_for_outcome(event_log, "e1", "x")

    assert isinstance(outcome, ActionFailed)
    assert outcome.error.code == "unknown_action_type" and "teleport" in outcome.error.message


async def test_python_handlers_get_retries_errors_and_attempt_info(
    settings: TepSettings, event_log: EventLog
) -> None:
    registry = HandlerRegistry()
    calls: list[tuple[str, int]] = []

    @registry.handler("thumbnail")
    async def thumbnail(request: ActionExecuteRequested) -> dict[str, Any]:
        attempt = current_attempt()
        calls.append((attempt.idempotency_key, attempt.attempt))
        if request.input["mode"] == "flaky" and attempt.attempt < 2:
            raise RetryableError("busy")
        if request.input["mode"] == "broken":
            raise NonRetryableError("not an image", code="bad_image")
        if request.input["mode"] == "crash":
            raise ZeroDivisionError("division by zero")
        return {"ok": request.input["mode"]}

    for mode in ("flaky", "broken", "crash"):
        await event_log.append(
            http_request(
                "e1",
                mode,
                "",
                action_type="thumbnail",
                queue="media",
                input={"mode": mode},
                retry=RetryPolicy(max_attempts=2, min_backoff_ms=20, jitter=False),
            )
        )

    async with running_executor(settings, queue="media", registry=registry):
        flaky = await wait_for_outcome(event_log, "e1", "flaky")
        broken = await wait_for_outcome(event_log, "e1", "broken")
        crash = await wait_for_outcome(event_log, "e1", "crash")

    assert isinstance(flaky, ActionCompleted) and flaky.output == {"ok": "flaky"}
    assert flaky.attempt == 2
    assert isinstance(broken, ActionFailed) and broken.error.code == "bad_image"
    assert broken.attempt == 1
    assert isinstance(crash, ActionFailed) and crash.error.code == "handler_error"
    assert crash.attempt == 2 and "ZeroDivisionError" in crash.error.message
    assert ("e1:flaky", 1) in calls and ("e1:flaky", 2) in calls


async def test_a_queue_concurrency_limit_holds_across_executors(
    nc: NatsClient, settings: TepSettings, event_log: EventLog, http_target: HttpTarget
) -> None:
    await set_queue_limit(nc.jetstream(), settings, "http", 3)
    for n in range(15):
        await event_log.append(
            http_request("e1", f"a{n}", http_target.url(f"/slow/{n}?delay=0.15"))
        )

    async with (
        running_executor(settings, concurrency=4),
        running_executor(settings, concurrency=4),
        running_executor(settings, concurrency=4),
    ):
        for n in range(15):
            outcome = await wait_for_outcome(event_log, "e1", f"a{n}", timeout=20)
            assert isinstance(outcome, ActionCompleted)

    assert len(http_target.hits) == 15
    assert http_target.max_in_flight == 3


async def test_a_request_that_is_not_an_event_goes_to_the_dead_letter_stream(
    nc: NatsClient, settings: TepSettings
) -> None:
    js = nc.jetstream()
    await js.publish("action.execute.requested.http.e1.a", b"not json")

    async with running_executor(settings) as executor:
        await wait_for(lambda: executor.stats["poison"] == 1)

    dead = await js.get_last_msg(
        settings.deadletter_stream, "tep.deadletter.executor.action.execute.requested.http.e1.a"
    )
    assert dead.data == b"not json"
    assert dead.headers is not None and dead.headers["Tep-Original-Subject"].endswith("e1.a")
    info = await js.consumer_info(settings.stream, consumer_name("http"))
    assert info.num_ack_pending == 0


async def test_stopping_hands_unfinished_work_to_another_executor(
    settings: TepSettings, event_log: EventLog, http_target: HttpTarget
) -> None:
    retry = RetryPolicy(max_attempts=2, min_backoff_ms=10, jitter=False)
    await event_log.append(
        http_request("e1", "long", http_target.url("/slow/long?delay=1.5"), retry=retry)
    )

    async with running_executor(settings, shutdown_grace_s=0.1) as first:
        await wait_for(lambda: first.in_flight == 1)
    async with running_executor(settings):
        outcome = await wait_for_outcome(event_log, "e1", "long")

    # The stop interrupted attempt 1: it runs again, and no retry was spent on it.
    assert isinstance(outcome, ActionCompleted) and outcome.attempt == 1
    starts = [e for e in await history(event_log, "e1") if isinstance(e, ActionStarted)]
    assert [(s.attempt, s.interruption) for s in starts] == [(1, 0), (1, 1)]
    assert len(http_target.hits) == 2


async def test_an_executor_recovers_when_its_queue_consumer_is_deleted(
    nc: NatsClient, settings: TepSettings, event_log: EventLog, http_target: HttpTarget
) -> None:
    async with running_executor(settings):
        await nc.jetstream().delete_consumer(settings.stream, consumer_name("http"))
        await event_log.append(http_request("e1", "after", http_target.url("/echo/after")))
        outcome = await wait_for_outcome(event_log, "e1", "after")

    assert isinstance(outcome, ActionCompleted)


async def wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await anyio.sleep(0.02)


async def test_a_request_back_after_the_executor_stalled_is_left_to_the_running_attempt(
    settings: TepSettings, event_log: EventLog
) -> None:
    registry = HandlerRegistry()
    calls: list[int] = []

    @registry.handler("stall")
    async def stall(request: ActionExecuteRequested) -> dict[str, Any]:
        calls.append(current_attempt().attempt)
        # The whole process stalls, past the ack wait: the request comes back.
        time.sleep(1.5)  # noqa: ASYNC251
        await anyio.sleep(1.0)  # ... and reaches this executor while the attempt still runs
        return {"ok": True}

    await event_log.append(http_request("e1", "s", "", action_type="stall", queue="stall"))

    async with running_executor(
        settings, queue="stall", registry=registry, ack_wait_s=0.5, pull_expires_s=5.0
    ) as executor:
        outcome = await wait_for_outcome(event_log, "e1", "s")
        await wait_for(lambda: executor.in_flight == 0)

    assert isinstance(outcome, ActionCompleted) and calls == [1]
    assert executor.stats["lost"] >= 1 and executor.stats["completed"] == 1
    assert len([e for e in await history(event_log, "e1") if isinstance(e, ActionStarted)]) == 1


async def test_a_probe_tells_a_running_attempt_from_a_gone_or_silent_executor(
    nc: NatsClient,
) -> None:
    def started(executor_id: str | None, action_id: str = "a") -> ActionStarted:
        return ActionStarted(
            execution_id="e1", action_id=action_id, attempt=1, executor_id=executor_id
        )

    async with anyio.create_task_group() as group:
        await group.start(answer_probes, nc, "ex-alive", lambda e, a: (e, a) == ("e1", "a"))
        # Subscribed, never answering: a paused or stalled process.
        silent = await nc.subscribe(executor_probe_subject("ex-paused"))
        try:
            assert await probe_holder(nc, started("ex-alive"), timeout_s=1) == "running"
            assert await probe_holder(nc, started("ex-alive", "b"), timeout_s=1) == "idle"
            assert await probe_holder(nc, started("ex-dead"), timeout_s=1) == "gone"
            assert await probe_holder(nc, started(None), timeout_s=1) == "gone"
            assert await probe_holder(nc, started("ex-paused"), timeout_s=0.3) == "silent"
        finally:
            await silent.unsubscribe()
            group.cancel_scope.cancel()
