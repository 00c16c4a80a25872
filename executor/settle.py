"""Ending deliveries that get no call: the interruption budget spent, poison, and acks or naks
that must not hold anything up."""

from __future__ import annotations

import logging
from collections.abc import Awaitable

import anyio
from nats.aio.msg import Msg

from eventstore.error_codes import ErrorCode
from eventstore.events import ActionExecuteRequested
from eventstore.jetstream.deadletter import dead_letter
from eventstore.jetstream.log import EventLog
from executor.action_log import append_outcome, guard_after
from executor.outcome import interrupted_event
from executor.position import GiveUp

__all__ = ["fail_interrupted", "reject", "settle"]

_SETTLE_TIMEOUT_S = 2.0

_log = logging.getLogger("tep.executor")


async def settle(action: Awaitable[None]) -> None:
    """Ack/nak without letting a broken connection, a slow server or a stop hold us up."""
    with anyio.move_on_after(_SETTLE_TIMEOUT_S, shield=True):
        try:
            await action
        except Exception as exc:
            _log.debug("could not settle a message: %s", exc)


async def fail_interrupted(
    log: EventLog, msg: Msg, request: ActionExecuteRequested, step: GiveUp, *, patience_s: float
) -> None:
    """The attempt was cut off too often: ``action.failed`` (code ``interrupted``), guarded on
    the action's position, then the request goes to the dead-letter stream.

    Raises:
        ConcurrencyError: the action moved on meanwhile; nothing was recorded.
    """
    failed = interrupted_event(request, step.attempt, step.interruptions)
    await append_outcome(log, failed, guard_after(failed, step.after), patience_s=patience_s)
    ids = {"execution_id": request.execution_id, "action_id": request.action_id}
    _log.warning(
        "attempt %d interrupted %d times: action failed",
        step.attempt,
        step.interruptions,
        extra={**ids, "code": ErrorCode.INTERRUPTED},
    )
    try:
        await dead_letter(
            log.js,
            msg,
            role="executor",
            stream=log.stream,
            reason=failed.error.message,
            reason_code=ErrorCode.INTERRUPTED,
        )
    except Exception as exc:
        _log.error("dead-letter publish failed: %s", exc, extra=ids)
        await settle(msg.ack())


async def reject(log: EventLog, msg: Msg, reason: str) -> None:
    """A message that can never be processed: keep it in the dead-letter stream, stop it."""
    try:
        await dead_letter(log.js, msg, role="executor", stream=log.stream, reason=reason)
    except Exception as exc:
        # Left unacked: it comes back after the ack wait, and we try again.
        _log.error("dead-letter publish failed: %s", exc)
