"""A plan's ``timeout_s`` as a JetStream message schedule that requests cancellation.

When the first actions of an execution are dispatched, the orchestrator stores a schedule
message on ``plan.deadline.<execution>``. At the deadline the server itself writes its payload,
an ``execution.cancel.requested`` with reason ``deadline exceeded``, onto
``execution.cancel.requested.<execution>``; the schedule message is then removed. Nothing has
to stay alive in between: the deadline survives restarts of every process. When the execution
ends first, the schedule is left to fire: a late cancel request for an ended execution is
recorded and decides nothing. (Removing it would take a purge of the log, which NATS cannot
narrow to one subject by permission; no role but the admin may purge.)

The holder lives under ``plan.`` on purpose: ``execution.*.<execution>`` is the filter that
guards an execution's single end event and must match nothing else. Readers of the whole log
skip holders by their ``Nats-Schedule`` header (as :class:`eventstore.jetstream.log.EventLog` does).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nats.js import JetStreamContext

from eventstore.events import ExecutionCancelRequested
from eventstore.subjects import deadline_subject
from orchestrator import ids
from orchestrator.timers import schedule_message

__all__ = [
    "DEADLINE_REASON",
    "deadline_at",
    "deadline_message",
    "schedule_deadline",
]

DEADLINE_REASON = "deadline exceeded"


def deadline_at(submitted_at: datetime, timeout_s: float) -> datetime:
    """The deadline of a plan stored at ``submitted_at`` (the log's own timestamp)."""
    return submitted_at.astimezone(UTC) + timedelta(seconds=timeout_s)


def deadline_message(execution_id: str, at: datetime) -> tuple[str, bytes, dict[str, str]]:
    """Subject, payload and headers of the schedule that cancels ``execution_id`` at ``at``."""
    request = ExecutionCancelRequested(
        execution_id=execution_id,
        event_id=ids.deadline_id(execution_id),
        correlation_id=execution_id,
        reason=DEADLINE_REASON,
    )
    return schedule_message(
        deadline_subject(execution_id), request, at, ids.deadline_id(execution_id)
    )


async def schedule_deadline(js: JetStreamContext, execution_id: str, at: datetime) -> None:
    """Store the schedule (idempotent within the duplicate window: same message id)."""
    subject, payload, headers = deadline_message(execution_id, at)
    await js.publish(subject, payload, headers=headers)
