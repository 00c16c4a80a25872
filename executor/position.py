"""Where an action stands, and what one delivery of its request does about it. Pure.

Every delivery, first or redelivered, starts from the last event on the action's filter
(:func:`eventstore.subjects.action_filter`: its ``started``, ``completed``, ``failed``,
``skipped`` and ``cancelled`` events) and, when that is a start, the attempt number of the
action's last ``action.attempt.failed``:

* an end (completed, failed, skipped, cancelled): nothing to do; the request is acked and
  the target is not called;
* nothing yet: attempt 1;
* attempt ``n`` started and its failure recorded: attempt ``n + 1``, the retry that failure
  scheduled;
* attempt ``n`` started and nothing after it: attempt ``n`` was interrupted (its executor
  crashed, was paused past the ack wait, or lost its connection). It starts again with one
  more interruption, while the budget lasts; then the action fails with ``interrupted``.

The sequence of that last event is the guard of whatever the delivery appends next, so two
deliveries that read the same position cannot both act on it.
"""

from __future__ import annotations

from typing import NamedTuple

from eventstore.events import (
    ActionCancelled,
    ActionCompleted,
    ActionFailed,
    ActionSkipped,
    ActionStarted,
    Event,
)

__all__ = ["END_EVENTS", "ActionPosition", "GiveUp", "Settled", "Start", "Step", "next_step"]

END_EVENTS = (ActionCompleted, ActionFailed, ActionSkipped, ActionCancelled)
"""The events after which an action never runs again."""


class ActionPosition(NamedTuple):
    """What the log says of one action.

    Attributes:
        sequence: the sequence of the last event on the action's filter (0: none).
        last: that event (``None``: none, or one that cannot be decoded).
        failed_attempt: the attempt of the action's last ``action.attempt.failed`` (0: none;
            only read when ``last`` is a start).
    """

    sequence: int
    last: Event | None
    failed_attempt: int = 0


class Settled(NamedTuple):
    """The action already ended with ``event``: ack, call nothing."""

    event: Event


class Start(NamedTuple):
    """Start ``attempt`` (after ``interruption`` cut-offs of it), guarded on ``after``."""

    attempt: int
    interruption: int
    after: int


class GiveUp(NamedTuple):
    """``attempt`` was cut off ``interruptions`` times: fail the action, guarded on ``after``."""

    attempt: int
    interruptions: int
    after: int


Step = Settled | Start | GiveUp


def next_step(position: ActionPosition, *, max_interruptions: int) -> Step:
    """What a delivery of the action's request does, from where the action stands.

    Example:
        >>> next_step(ActionPosition(0, None), max_interruptions=5)
        Start(attempt=1, interruption=0, after=0)
    """
    last = position.last
    if isinstance(last, END_EVENTS):
        return Settled(last)
    if not isinstance(last, ActionStarted):
        return Start(1, 0, position.sequence)
    if position.failed_attempt >= last.attempt:
        return Start(last.attempt + 1, 0, position.sequence)
    interruptions = last.interruption + 1
    if interruptions > max_interruptions:
        return GiveUp(last.attempt, interruptions, position.sequence)
    return Start(last.attempt, interruptions, position.sequence)
