"""What the executor reads and writes in the log for one action.

Appends ride out short outages (a few retries with backoff); a redelivered request looks up
whether its action already has an outcome and which attempt was started last.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import anyio

from eventstore.codec import decode_event
from eventstore.errors import EventTooLargeError
from eventstore.events import (
    ActionCompleted,
    ActionExecuteRequested,
    ActionFailed,
    ActionStarted,
    Event,
)
from eventstore.jetstream.log import EventLog
from eventstore.records import RawRecord
from eventstore.subjects import action_subject

__all__ = ["ActionHistory", "action_history", "append_retrying"]

_APPEND_TRIES = 6
_FIRST_RETRY_S = 0.05
_MAX_RETRY_S = 2.0

_log = logging.getLogger("tep.executor")


async def append_retrying(log: EventLog, event: Event) -> None:
    """Append ``event``, retrying transient failures (about 1.5 s in all).

    Raises:
        EventTooLargeError: at once; no retry makes it fit.
        Exception: the last failure, when every try failed.
    """
    delay = _FIRST_RETRY_S
    for tries in range(1, _APPEND_TRIES + 1):
        try:
            await log.append(event)
            return
        except EventTooLargeError:
            raise
        except Exception as exc:
            if tries == _APPEND_TRIES:
                raise
            _log.warning(
                "append of %s failed (%s), retrying",
                type(event).__name__,
                exc,
                extra={"execution_id": event.execution_id},
            )
            await anyio.sleep(delay)
            delay = min(delay * 2, _MAX_RETRY_S)


class ActionHistory(NamedTuple):
    """What a redelivery finds of its action in the log.

    Attributes:
        finished: the action has an outcome (``action.completed`` or ``action.failed``).
        last_started: the last attempt recorded as started (0: none).
    """

    finished: bool
    last_started: int


async def action_history(log: EventLog, request: ActionExecuteRequested) -> ActionHistory:
    """Read the action's outcome and last start (three last-message reads, concurrently)."""
    e, a = request.execution_id, request.action_id
    subjects = {
        "completed": action_subject(ActionCompleted, e, a),
        "failed": action_subject(ActionFailed, e, a),
        "started": action_subject(ActionStarted, e, a),
    }
    found: dict[str, RawRecord | None] = {}

    async def read(kind: str, subject: str) -> None:
        found[kind] = await log.last_on(subject)

    async with anyio.create_task_group() as group:
        for kind, subject in subjects.items():
            group.start_soon(read, kind, subject)
    last_started = 0
    started = found["started"]
    if started is not None:
        event = decode_event(started.data)
        if isinstance(event, ActionStarted):
            last_started = event.attempt
    finished = found["completed"] is not None or found["failed"] is not None
    return ActionHistory(finished, last_started)
