"""The range of every number a plan sets: timeouts, retries, backoffs, concurrency. Pure.

Each bound keeps a value inside what the roles can act on: a delay the broker can schedule, a
deadline a timer can hold, a retry count that ends.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

__all__ = [
    "ACTION_TIMEOUT_S",
    "BACKOFF_FACTOR",
    "BACKOFF_MS",
    "CONCURRENCY_LIMIT",
    "MAX_ATTEMPTS",
    "PLAN_TIMEOUT_S",
    "Bound",
    "bound_problems",
]

_DAY_S = 86_400


class Bound(NamedTuple):
    """The range of one numeric field.

    Attributes:
        low: the smallest value allowed (excluded when ``exclusive_low``).
        high: the largest value allowed.
        below: the problem when the value is below ``low`` (or NaN); ``{value}`` is replaced.
        above: how the problem names ``high``, e.g. ``86400 seconds (1 day)``.
        exclusive_low: ``low`` itself is not allowed.
    """

    low: float
    high: float
    below: str
    above: str
    exclusive_low: bool = False


_POSITIVE_SECONDS = "must be a positive number of seconds (got {value})"

ACTION_TIMEOUT_S = Bound(0, _DAY_S, _POSITIVE_SECONDS, "86400 seconds (1 day)", True)
"""``timeout_s`` of an action and of its request: one attempt."""
PLAN_TIMEOUT_S = Bound(0, 366 * _DAY_S, _POSITIVE_SECONDS, "31622400 seconds (366 days)", True)
"""``timeout_s`` of a plan: the whole execution."""
MAX_ATTEMPTS = Bound(1, 100, "must be at least 1 (got {value})", "100")
"""``retry.max_attempts``."""
BACKOFF_FACTOR = Bound(1, 10, "must be at least 1 (1 = constant delay; got {value})", "10")
"""``retry.backoff_factor``."""
BACKOFF_MS = Bound(0, _DAY_S * 1000, "must not be negative (got {value})", "86400000 ms (1 day)")
"""``retry.min_backoff_ms`` and ``retry.max_backoff_ms``."""
CONCURRENCY_LIMIT = Bound(1, 10_000, "must be at least 1", "10000")
"""``queues.<name>.concurrency_limit``."""


def bound_problems(label: str, field: str, value: float | None, bound: Bound) -> Iterable[str]:
    """The problem of ``value`` (when set) outside ``bound``, e.g.

    ``action "a": retry.max_attempts must be at most 100 (got 1000)``.
    """
    if value is None:
        return
    low_ok = value > bound.low if bound.exclusive_low else value >= bound.low
    if not low_ok:  # NaN fails here too
        yield f"{label}: {field} {bound.below.format(value=value)}"
    elif value > bound.high:
        yield f"{label}: {field} must be at most {bound.above} (got {value})"
