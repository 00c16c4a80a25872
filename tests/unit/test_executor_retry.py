"""Retry policy: which statuses retry, the backoff curve, jitter bounds, Retry-After."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from eventstore.plan import RetryPolicy
from executor.retry import backoff_ms, is_retryable_status, parse_retry_after, retry_delay_ms

NO_JITTER = RetryPolicy(
    max_attempts=10, min_backoff_ms=200, backoff_factor=2, max_backoff_ms=1_000, jitter=False
)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 599])
def test_timeouts_throttling_and_server_errors_are_retryable(status: int) -> None:
    assert is_retryable_status(status)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 410, 422])
def test_other_client_errors_are_not_retryable(status: int) -> None:
    assert not is_retryable_status(status)


def test_backoff_grows_by_the_factor_until_the_cap() -> None:
    delays = [backoff_ms(NO_JITTER, attempt) for attempt in range(1, 6)]

    assert delays == [200, 400, 800, 1_000, 1_000]


def test_jitter_adds_at_most_twenty_percent() -> None:
    policy = RetryPolicy(min_backoff_ms=1_000, backoff_factor=1, max_backoff_ms=1_000, jitter=True)
    rng = random.Random(7)

    delays = {backoff_ms(policy, 1, rng=rng) for _ in range(500)}

    assert min(delays) >= 1_000
    assert max(delays) <= 1_200
    assert len(delays) > 50  # it does vary


def test_huge_attempt_numbers_stay_at_the_cap() -> None:
    assert backoff_ms(NO_JITTER, 10_000) == 1_000


def test_retry_after_replaces_a_shorter_backoff_but_not_beyond_the_cap() -> None:
    assert retry_delay_ms(NO_JITTER, 1, retry_after_s=0.5) == 500
    assert retry_delay_ms(NO_JITTER, 1, retry_after_s=0.1) == 200
    assert retry_delay_ms(NO_JITTER, 1, retry_after_s=3_600) == 1_000


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)

    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(later, now=now) == 30.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
