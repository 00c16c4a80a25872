"""Time travel: an execution's state as of a stream sequence or a moment. Pure.

The state as of sequence ``n`` folds the execution's events at or below ``n``. The state as of
a time ``t`` folds its history up to (not including) the first event that occurred after ``t``
(by the event's ``occurred_at``, the writer's clock).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from eventstore.fold import apply
from eventstore.records import RecordedEvent
from eventstore.state import ExecutionState

__all__ = ["At", "fold_as_of", "parse_at"]

At = int | datetime | str
"""A point in an execution's history: a stream sequence, a datetime or an ISO-8601 string."""


def parse_at(value: At) -> int | datetime:
    """Normalise ``at``: digits are a sequence, other strings ISO-8601 times (naive = UTC).

    Raises:
        ValueError: neither a sequence nor a readable time.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a sequence or a time: {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a sequence cannot be negative: {value}")
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return int(text)
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"not a stream sequence or an ISO-8601 time: {text!r} "
                "(e.g. 42 or 2025-01-31T12:00:00Z)"
            ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _occurred(record: RecordedEvent) -> datetime | None:
    try:
        moment = datetime.fromisoformat(record.event.occurred_at)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def fold_as_of(records: Iterable[RecordedEvent], at: At) -> ExecutionState | None:
    """Fold one execution's history (in log order) as of ``at``; ``None`` if it did not exist."""
    point = parse_at(at)
    state: ExecutionState | None = None
    for record in records:
        if isinstance(point, int):
            if record.sequence > point:
                break
        else:
            moment = _occurred(record)
            if moment is not None and moment > point:
                break
        state = apply(state, record)
    return state
