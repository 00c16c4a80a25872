"""When to retry and how long to wait. Pure.

Retryable: network errors, timeouts, HTTP 408, 429 and 5xx. Other 4xx fail at once. The delay
before attempt ``n + 1`` is ``min_backoff_ms * backoff_factor ** (n - 1)`` capped at
``max_backoff_ms``, plus 0-20 % jitter when the policy asks for it. A ``Retry-After`` sent with
429 or 503 replaces a shorter computed delay, still capped at ``max_backoff_ms``.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from eventstore.plan import RetryPolicy

__all__ = [
    "JITTER_FRACTION",
    "RETRY_AFTER_STATUSES",
    "backoff_ms",
    "is_retryable_status",
    "parse_retry_after",
    "retry_delay_ms",
]

JITTER_FRACTION = 0.2
RETRY_AFTER_STATUSES = frozenset({429, 503})


def is_retryable_status(status: int) -> bool:
    """Whether an HTTP error status may succeed on another attempt (408, 429, 5xx)."""
    return status in (408, 429) or 500 <= status <= 599


def backoff_ms(policy: RetryPolicy, attempt: int, *, rng: random.Random | None = None) -> int:
    """The delay after failed attempt ``attempt`` (1-based) before the next one.

    Example:
        >>> backoff_ms(RetryPolicy(min_backoff_ms=200, backoff_factor=2, jitter=False), 3)
        800
    """
    exponent = max(attempt - 1, 0)
    try:
        raw = policy.min_backoff_ms * policy.backoff_factor**exponent
    except OverflowError:
        raw = float(policy.max_backoff_ms)
    delay = min(raw, float(policy.max_backoff_ms))
    if policy.jitter:
        delay += delay * JITTER_FRACTION * (rng or random).random()
    return max(int(delay), 0)


def retry_delay_ms(
    policy: RetryPolicy,
    attempt: int,
    *,
    retry_after_s: float | None = None,
    rng: random.Random | None = None,
) -> int:
    """The delay before the next attempt, honouring a target's ``Retry-After`` up to the cap."""
    delay = backoff_ms(policy, attempt, rng=rng)
    if retry_after_s is not None and retry_after_s > 0:
        asked = min(int(retry_after_s * 1000), policy.max_backoff_ms)
        delay = max(delay, asked)
    return delay


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date).

    Returns ``None`` for an absent or unreadable value.

    Example:
        >>> parse_retry_after("3")
        3.0
    """
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)
