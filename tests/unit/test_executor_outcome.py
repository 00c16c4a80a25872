"""Which event an attempt's result calls for, with deterministic ids."""

from __future__ import annotations

import random

from eventstore.events import ActionAttemptFailed, ActionExecuteRequested, ActionFailed
from eventstore.plan import RequestSpec, RetryPolicy
from executor.errors import NonRetryableError, RetryableError
from executor.outcome import (
    MAX_ERROR_CHARS,
    attempt_timeout_s,
    completed_event,
    failure_event,
    started_event,
)

POLICY = RetryPolicy(max_attempts=3, min_backoff_ms=100, backoff_factor=3, jitter=False)


def request(**changes: object) -> ActionExecuteRequested:
    fields: dict[str, object] = {
        "execution_id": "e1",
        "action_id": "fetch",
        "event_id": "req-1",
        "action_type": "http",
        "queue": "http",
        "request": RequestSpec(url="http://t/x"),
        "retry": POLICY,
    }
    fields.update(changes)
    return ActionExecuteRequested(**fields)  # type: ignore[arg-type]


def test_a_retryable_failure_with_attempts_left_schedules_the_next_attempt() -> None:
    event = failure_event(request(), 2, RetryableError("busy", code="http_5xx", status_code=503))

    assert isinstance(event, ActionAttemptFailed)
    assert event.event_id == "e1.fetch.attempt.2.failed"
    assert event.retry_in_ms == 300  # 100 * 3 ** (2 - 1)
    assert event.error.code == "http_5xx" and event.error.status_code == 503
    assert event.causation_id == "req-1"


def test_the_last_attempt_fails_the_action() -> None:
    event = failure_event(request(), 3, RetryableError("busy", code="http_5xx"))

    assert isinstance(event, ActionFailed)
    assert event.event_id == "e1.fetch.failed" and event.attempt == 3
    assert event.error.retryable


def test_a_non_retryable_failure_fails_at_once() -> None:
    event = failure_event(request(), 1, NonRetryableError("gone", code="http_4xx"))

    assert isinstance(event, ActionFailed)
    assert event.error.code == "http_4xx" and not event.error.retryable


def test_the_default_policy_allows_one_attempt() -> None:
    event = failure_event(request(retry=RetryPolicy()), 1, RetryableError("x", code="timeout"))

    assert isinstance(event, ActionFailed)


def test_retry_after_stretches_the_delay() -> None:
    event = failure_event(
        request(),
        1,
        RetryableError("slow down", code="http_4xx", retry_after_s=2),
        rng=random.Random(1),
    )

    assert isinstance(event, ActionAttemptFailed) and event.retry_in_ms == 2_000


def test_long_error_messages_are_truncated() -> None:
    event = failure_event(request(), 3, RetryableError("x" * 10_000, code="handler_error"))

    assert len(event.error.message) <= MAX_ERROR_CHARS + 3


def test_outcome_ids_are_deterministic_and_every_start_is_its_own_claim() -> None:
    started = started_event(request(), 2, "exec-1", interruption=1)
    again = started_event(request(), 2, "exec-1", interruption=1)
    completed = completed_event(request(), 2, {"ok": True}, duration_ms=1.23456, status_code=200)

    assert started.event_id.startswith("e1.fetch.started.2.1.") and started.executor_id == "exec-1"
    assert started.interruption == 1 and again.event_id != started.event_id
    assert completed.event_id == "e1.fetch.completed"
    assert completed.duration_ms == 1.235 and completed.status_code == 200


def test_the_attempt_timeout_is_the_smaller_of_action_and_request() -> None:
    assert attempt_timeout_s(request()) == 30.0
    assert attempt_timeout_s(request(timeout_s=5.0)) == 5.0
    spec = RequestSpec(url="http://t/x", timeout_s=2.0)
    assert attempt_timeout_s(request(timeout_s=5.0, request=spec)) == 2.0
    assert attempt_timeout_s(request(request=None), default=9.0) == 9.0
