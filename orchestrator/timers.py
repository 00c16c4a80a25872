"""Timers as JetStream message schedules: the server writes an event when it is due.

A schedule is one message on a holder subject under ``plan.`` with ``Nats-Schedule: @at
<time>`` and ``Nats-Schedule-Target: <subject>``; at that time the server stores its payload, an
event, on the target subject, and removes the holder. Nothing has to stay alive in between, so
a timer survives restarts of every process, including the server. The message id makes storing
the same timer twice (a retried or a racing decision) a no-op within the dedupe window.

Used for a plan's deadline (:mod:`orchestrator.deadline`) and for the wake-up of a sleep and the
timeout of a waitpoint (``action.timer.fired``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nats.js import JetStreamContext

from eventstore import headers as h
from eventstore.codec import encode_event
from eventstore.events import ActionTimerFired, ActionWaiting, Event
from eventstore.subjects import subject_for, timer_subject
from orchestrator import ids

__all__ = ["schedule_message", "schedule_wait_timer", "wait_timer_message"]

_ROUND_UP = timedelta(microseconds=999)


def schedule_message(
    holder: str, event: Event, at: datetime, message_id: str
) -> tuple[str, bytes, dict[str, str]]:
    """Subject, payload and headers of the schedule that stores ``event`` at ``at``."""
    # Rounded up to the millisecond: a timer never fires before ``at``.
    stamp = (at.astimezone(UTC) + _ROUND_UP).isoformat(timespec="milliseconds")
    stamp = stamp.replace("+00:00", "Z")
    headers = {
        h.SCHEDULE: f"@at {stamp}",
        h.SCHEDULE_TARGET: subject_for(event),
        h.MSG_ID: message_id,
    }
    return holder, encode_event(event), headers


def wait_timer_message(waiting: ActionWaiting) -> tuple[str, bytes, dict[str, str]] | None:
    """The schedule ending ``waiting`` at its ``until`` (``None`` for a wait without end)."""
    if waiting.until is None:
        return None
    execution, action = waiting.execution_id, waiting.action_id
    fired = ActionTimerFired(
        execution_id=execution,
        action_id=action,
        event_id=ids.timer_fired_id(execution, action),
        causation_id=waiting.event_id,
        correlation_id=execution,
        kind="wake" if waiting.reason == "sleep" else "timeout",
        due_at=waiting.until,
    )
    at = datetime.fromisoformat(waiting.until.replace("Z", "+00:00"))
    return schedule_message(
        timer_subject(execution, action), fired, at, ids.timer_id(execution, action)
    )


async def schedule_wait_timer(js: JetStreamContext, waiting: ActionWaiting) -> None:
    """Store the timer of ``waiting`` (idempotent: the same message id)."""
    message = wait_timer_message(waiting)
    if message is not None:
        subject, payload, headers = message
        await js.publish(subject, payload, headers=headers)
