"""What the executor reads and writes in the log for one action.

Appends ride out short outages (retries with backoff) and carry the guard of the position they
were decided on; reads say where the action stands (:mod:`executor.position`).
"""

from __future__ import annotations

import logging
import time

import anyio

from eventstore.codec import encode_event
from eventstore.errors import ConcurrencyError, EventDecodeError, EventTooLargeError
from eventstore.events import ActionAttemptFailed, ActionEvent, ActionStarted, Event
from eventstore.jetstream.log import EventLog
from eventstore.records import AppendResult, Guard, RawRecord
from eventstore.subjects import action_filter, action_subject
from executor.handler_call import Outcome
from executor.position import ActionPosition

__all__ = ["append_outcome", "append_retrying", "failed_attempt", "guard_after", "read_position"]

_FIRST_RETRY_S = 0.05
_MAX_RETRY_S = 2.0
_PATIENCE_S = 1.5
# A publish whose ack never comes (lost across a server restart) is sent again after this long,
# not after the client's 10 s: its id makes the second one store nothing new.
_TRY_TIMEOUT_S = 2.0

_log = logging.getLogger("tep.executor")


def guard_after(event: ActionEvent, sequence: int) -> Guard:
    """Store ``event`` only while the last event on its action's filter is at ``sequence``."""
    return Guard(sequence, action_filter(event.execution_id, event.action_id))


async def append_retrying(
    log: EventLog, event: Event, *, guard: Guard | None = None, patience_s: float = _PATIENCE_S
) -> AppendResult:
    """Append ``event``, retrying transient failures for about ``patience_s`` seconds.

    A retry of an append that was stored after all is recognised by the event's id and
    returns the stored event.

    Raises:
        ConcurrencyError: at once: ``guard`` did not hold (another writer got there first).
        EventTooLargeError: at once; no retry makes it fit.
        Exception: the last failure, once patience ran out.
    """
    delay = _FIRST_RETRY_S
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return await log.append(event, guard=guard, timeout=_TRY_TIMEOUT_S)
        except (ConcurrencyError, EventTooLargeError):
            raise
        except Exception as exc:
            if time.monotonic() + delay > deadline:
                raise
            _log.warning(
                "append of %s failed (%s), retrying",
                type(event).__name__,
                exc,
                extra={"execution_id": event.execution_id},
            )
            await anyio.sleep(delay)
            delay = min(delay * 2, _MAX_RETRY_S)


async def append_outcome(
    log: EventLog, outcome: Outcome, guard: Guard, *, patience_s: float
) -> None:
    """Append an attempt's outcome under ``guard`` (see :func:`append_retrying`).

    Outcome ids are the same whoever records them, so a stored duplicate is ours only if its
    bytes are: another executor's outcome of the action means we lost it.

    Raises:
        ConcurrencyError: the guard did not hold, or the outcome stored under this id is
            another executor's.
    """
    result = await append_retrying(log, outcome, guard=guard, patience_s=patience_s)
    if not result.duplicate:
        return
    stored = await log.read_at(result.sequence)
    if stored is None or stored.data != encode_event(outcome):
        raise ConcurrencyError(outcome.execution_id, guard.last_sequence, result.sequence)


def _decoded(record: RawRecord) -> Event | None:
    try:
        return record.decode().event
    except EventDecodeError as exc:
        _log.warning(
            "undecodable event on %s (sequence %d): %s", record.subject, record.sequence, exc
        )
        return None


async def read_position(
    log: EventLog, execution_id: str, action_id: str, *, leader: bool = False
) -> ActionPosition:
    """Where the action stands: one direct get of its filter, one more after a start.

    Args:
        log: the log.
        execution_id: the action's execution.
        action_id: the action.
        leader: ask the stream's leader (sees every acknowledged append) instead of any
            replica.
    """
    subject = action_filter(execution_id, action_id)
    record = await log.last_on(subject, leader=leader)
    if record is None:
        return ActionPosition(0, None)
    last = _decoded(record)
    if last is None:
        # Someone put a message that is no event of this action on its subjects: the action
        # stands where its last real event left it (the guard stays on the last message).
        last = _last_event(await log.read_subject_raw(subject))
    failed = 0
    if isinstance(last, ActionStarted):
        failed = await failed_attempt(log, execution_id, action_id)
    return ActionPosition(record.sequence, last, failed)


async def failed_attempt(log: EventLog, execution_id: str, action_id: str) -> int:
    """The attempt of the action's last ``action.attempt.failed`` (0: none), from the leader.

    From the leader: a failure recorded a moment ago decides whether an attempt ended or was
    interrupted.
    """
    subject = action_subject(ActionAttemptFailed, execution_id, action_id)
    record = await log.last_on(subject, leader=True)
    if record is None:
        return 0
    event = _decoded(record)
    return event.attempt if isinstance(event, ActionAttemptFailed) else 0


def _last_event(records: list[RawRecord]) -> Event | None:
    for record in reversed(records):
        event = _decoded(record)
        if event is not None:
            return event
    return None
