"""Waitpoints and sleeps in the fold: when a resume request or a timer counts. Pure.

A ``wait`` or ``sleep`` action is paused by ``action.waiting``. What may end the wait is folded
here, in log order, the first valid one winning:

- ``action.resume.requested`` on a waitpoint: accepted if the action is still waiting, nothing
  was accepted before, its token matches (when the request came with one) and its data matches
  the waitpoint's schema (unless it rejects; data stored by reference was checked by the client
  that stored it). A refused request changes nothing but
  ``wait.refused``, which says why;
- ``action.timer.fired``: a sleep's wake-up or a waitpoint's timeout. A timer that fires before
  its ``action.waiting`` is stored (a race of the server's clock with the append) is kept in
  ``early_timer`` and counts once the action waits.

The orchestrator then appends the one outcome (``action.completed`` or ``action.failed``); see
:mod:`orchestrator.waits`.
"""

from __future__ import annotations

import hmac

from eventstore.events import ActionResumeRequested, ActionTimerFired, ActionWaiting
from eventstore.json_schema import schema_problems
from eventstore.payloads import is_payload_ref
from eventstore.state import ActionState, Resume, WaitState

__all__ = [
    "apply_resume",
    "apply_timer",
    "apply_waiting",
    "resume_refusal",
]


def apply_waiting(action: ActionState, event: ActionWaiting, sequence: int) -> bool:
    """Fold ``action.waiting``; ``True`` if the action now waits."""
    if action.finished or action.wait is not None:
        return False
    action.wait = WaitState(
        reason=event.reason,
        since=event.occurred_at,
        until=event.until,
        schema=event.schema,
        token=event.token,
        sequence=sequence,
        timer=action.early_timer,
    )
    action.dispatched_at = action.dispatched_at or event.occurred_at
    action.started_at = action.started_at or event.occurred_at
    return True


def resume_refusal(action: ActionState, event: ActionResumeRequested) -> str | None:
    """Why this resume request cannot end the wait, or ``None`` if it can."""
    wait = action.wait
    if action.finished:
        why = f" ({action.error.code})" if action.error is not None else ""
        return f"action {action.action_id} already {action.status}{why}"
    if wait is None:
        return f"action {action.action_id} is not waiting (it is {action.status})"
    if wait.reason != "waitpoint":
        return f"action {action.action_id} is a sleep; only waitpoints are resumed"
    if wait.resume is not None or wait.timer is not None:
        return f"action {action.action_id} {'was already resumed' if wait.resume else 'timed out'}"
    if event.token is not None and (
        wait.token is None or not hmac.compare_digest(event.token, wait.token)
    ):
        return "the token does not match this waitpoint"
    # Data stored by reference was checked by the client that stored it (StateManager, tep
    # resume); the fold, pure, cannot look inside: the orchestrator checks it again before the
    # wait's outcome (orchestrator.waits), so a forged reference cannot slip past the schema.
    if event.reject is None and wait.schema is not None and not is_payload_ref(event.data):
        problems = schema_problems(wait.schema, event.data)
        if problems:
            return "the data does not match the waitpoint's schema: " + "; ".join(problems)
    return None


def apply_resume(action: ActionState, event: ActionResumeRequested) -> bool:
    """Fold a resume request; ``True`` if it was accepted."""
    refusal = resume_refusal(action, event)
    if refusal is not None:
        if action.wait is not None and not action.finished:
            action.wait.refused = refusal
        return False
    assert action.wait is not None
    action.wait.resume = Resume(
        request_id=event.event_id,
        data=event.data,
        reject=event.reject,
        requested_by=event.requested_by,
        at=event.occurred_at,
    )
    action.wait.refused = None
    return True


def apply_timer(action: ActionState, event: ActionTimerFired) -> bool:
    """Fold a fired timer; ``True`` if it ends the wait."""
    if action.finished:
        return False
    wait = action.wait
    if wait is None:
        action.early_timer = action.early_timer or event.kind
        return False
    expected = "wake" if wait.reason == "sleep" else "timeout"
    if event.kind != expected or wait.resume is not None or wait.timer is not None:
        return False
    wait.timer = event.kind
    return True
