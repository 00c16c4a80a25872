"""What became of a delivery (:data:`Disposition`), and the endings that settle its message so.

Each ending acks, naks or leaves the message as its disposition says, logs why, and returns the
disposition; :class:`executor.attempt.AttemptRunner` decides which one applies.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Literal

from nats.aio.msg import Msg

from eventstore.events import (
    ActionAttemptFailed,
    ActionCancelled,
    ActionExecuteRequested,
    ActionFailed,
    ActionSkipped,
)
from eventstore.jetstream.log import EventLog
from executor.action_log import read_position
from executor.handler_call import Outcome
from executor.holders import Holder
from executor.position import END_EVENTS, ActionPosition, Settled
from executor.settle import settle

__all__ = [
    "Disposition",
    "aborted",
    "action_ids",
    "already_settled",
    "leader_position",
    "leave_to_holder",
    "lost",
    "settle_outcome",
]

Disposition = Literal[
    "completed",
    "failed",
    "retry",
    "duplicate",
    "cancelled",
    "lost",
    "deferred",
    "poison",
    "abandoned",
]
"""What became of a delivery. ``duplicate``: the action had already ended (acked, no call);
``cancelled``: the action was cancelled before or during the call (acked); ``lost``: another
delivery holds the action (dropped unsettled); ``deferred``: the executor of the interrupted
attempt does not answer, and its time limit has not passed (handed back with a delay);
``abandoned``: the log could not be written (handed back for a retry soon)."""

_log = logging.getLogger("tep.executor")


def action_ids(request: ActionExecuteRequested) -> dict[str, str]:
    """The request's execution and action ids, as the ``extra`` of a log record."""
    return {"execution_id": request.execution_id, "action_id": request.action_id}


async def already_settled(msg: Msg, request: ActionExecuteRequested, step: Settled) -> Disposition:
    """The action has ended already: ack the request without a call."""
    await msg.ack()
    ended = isinstance(step.event, ActionCancelled | ActionSkipped)
    _log.info(
        "request of an action that already %s: acked, not run",
        "was cancelled or skipped" if ended else "has its outcome",
        extra=action_ids(request),
    )
    return "cancelled" if ended else "duplicate"


async def leave_to_holder(
    msg: Msg, request: ActionExecuteRequested, wait_s: float, *, ack_wait_s: float
) -> Disposition:
    """The executor that started the attempt may still be at it: not ours to run."""
    if math.isinf(wait_s):
        _log.info("the attempt's executor still runs it: left to it", extra=action_ids(request))
        return "lost"
    # Paused, stalled or cut off: look again once it answers or its time limit is past.
    await settle(msg.nak(delay=min(wait_s, ack_wait_s)))
    _log.info("the attempt's executor does not answer: waiting", extra=action_ids(request))
    return "deferred"


async def settle_outcome(
    msg: Msg, request: ActionExecuteRequested, outcome: Outcome, *, on_retry: Callable[[], None]
) -> Disposition:
    """The outcome is in the log: ack its end, or nak a failed attempt with its backoff as the
    delay (``on_retry`` is called first)."""
    extra = {**action_ids(request), "attempt": outcome.attempt}
    if isinstance(outcome, ActionAttemptFailed):
        on_retry()
        await msg.nak(delay=outcome.retry_in_ms / 1000)
        _log.warning(
            "attempt failed, retry in %d ms: %s",
            outcome.retry_in_ms,
            outcome.error.message,
            extra={**extra, "code": outcome.error.code},
        )
        return "retry"
    await msg.ack()
    if isinstance(outcome, ActionFailed):
        _log.warning(
            "action failed: %s",
            outcome.error.message,
            extra={**extra, "code": outcome.error.code},
        )
        return "failed"
    return "completed"


async def aborted(msg: Msg, request: ActionExecuteRequested, holder: Holder) -> Disposition:
    """The call was aborted: ack if the action was cancelled, else leave it to the newer
    delivery that started the action again."""
    if holder.reason == "cancelled":
        await settle(msg.ack())
        _log.info("call aborted: the action was cancelled", extra=action_ids(request))
        return "cancelled"
    _log.info("call aborted: a newer delivery started the action again", extra=action_ids(request))
    return "lost"


async def leader_position(log: EventLog, request: ActionExecuteRequested) -> ActionPosition | None:
    """Where the action stands as the stream's leader has it; ``None`` if unreadable."""
    try:
        return await read_position(log, request.execution_id, request.action_id, leader=True)
    except Exception as exc:
        _log.warning("could not read the action (%s)", exc, extra=action_ids(request))
        return None


async def lost(
    log: EventLog,
    msg: Msg,
    request: ActionExecuteRequested,
    position: ActionPosition | None = None,
) -> Disposition:
    """Our guard failed: someone else moved the action on. Ack only if it has ended.

    Otherwise the delivery is left unsettled: an ack or a nak would act on the delivery
    of the executor that holds the action now.
    """
    if position is None:
        position = await leader_position(log, request)
    if position is not None and isinstance(position.last, END_EVENTS):
        return await already_settled(msg, request, Settled(position.last))
    _log.info(
        "another executor holds the action: this delivery records nothing",
        extra=action_ids(request),
    )
    return "lost"
