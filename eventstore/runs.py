"""What an ``execution.retried`` does to an execution's state: its runs. Pure.

A retry re-opens an ended execution without rewriting its history. Each action it resets
keeps how its earlier run ended (an :class:`~eventstore.state.ActionRun`, the latest first in
``runs``) and is pending again as run ``event.run``: its events from then on carry the key
``<id>~<run>`` (see :mod:`eventstore.action_keys`), so late events of the earlier run stay in
the log without touching the new one. Actions not reset keep their results (their outputs feed
the reset ones). The execution is running again, as run ``event.run``.

The fold believes a retry only of an ended execution, as the next run, resetting actions of
its plan; anything else is refused with the reason (:func:`retry_problem`).
"""

from __future__ import annotations

from eventstore.action_keys import parse_action_key
from eventstore.events import ExecutionRetried
from eventstore.state import ActionRun, ActionState, Counts, ExecutionState

__all__ = [
    "apply_retried",
    "current_action",
    "earlier_run",
    "recount",
    "reset_action",
    "retry_problem",
]

_LISTED = 5


def current_action(state: ExecutionState, key: str) -> str | None:
    """The plan's action id ``key`` names if it is of that action's current run, else ``None``
    (an earlier run's key, or no action of the plan). An item's key names its action."""
    parsed = parse_action_key(key)
    action = None if parsed is None else state.actions.get(parsed.action_id)
    if action is None or parsed is None or parsed.run != action.run:
        return None
    return action.action_id


def retry_problem(state: ExecutionState, event: ExecutionRetried) -> str | None:
    """Why ``event`` cannot re-open ``state``; ``None`` if it can."""
    if not state.terminal:
        return f"the execution is {state.status}: only an ended execution is retried"
    if event.run != state.run + 1:
        return f"run {event.run} does not follow run {state.run}"
    if not event.reset:
        return "it resets no action"
    unknown = [a for a in event.reset if a not in state.actions]
    if unknown:
        shown = ", ".join(unknown[:_LISTED])
        more = f" and {len(unknown) - _LISTED} more" if len(unknown) > _LISTED else ""
        return f"it resets actions the plan does not have: {shown}{more}"
    return None


def apply_retried(state: ExecutionState, event: ExecutionRetried, sequence: int) -> str | None:
    """Re-open ``state`` as ``event`` says; the reason it cannot instead (state unchanged).

    ``sequence`` is where the log stored ``event`` (the guard of the new run's end).
    """
    problem = retry_problem(state, event)
    if problem is not None:
        return problem
    for action_id in dict.fromkeys(event.reset):
        reset_action(state.actions[action_id], event.run)
    state.counts = recount(state)
    state.status = "running"
    state.completed_at = None
    state.error = None
    state.cancel_requested = False
    state.cancel_reason = None
    state.run = event.run
    state.retried_sequence = sequence
    return None


def earlier_run(action: ActionState) -> ActionRun:
    """How the action's current run ended, as it is kept in ``runs``."""
    return ActionRun(
        run=action.run,
        status=action.status,
        attempts=action.attempts,
        output=action.output,
        error=action.error,
        skip_reason=action.skip_reason,
        started_at=action.started_at,
        completed_at=action.completed_at,
        duration_ms=action.duration_ms,
        child_execution_id=action.child_execution_id,
    )


def reset_action(action: ActionState, run: int) -> None:
    """Keep the action's current run in ``runs`` and make it pending as ``run``."""
    action.runs = [earlier_run(action), *action.runs]
    action.run = run
    action.status = "pending"
    action.attempts = 0
    action.output = None
    action.error = None
    action.skip_reason = None
    action.dispatched_at = None
    action.started_at = None
    action.completed_at = None
    action.duration_ms = None
    action.wait = None
    action.early_timer = None
    action.handled_by = None
    action.items = None
    action.child_execution_id = None


def recount(state: ExecutionState) -> Counts:
    """The execution's counts from its actions' statuses."""
    counts = Counts(total=len(state.actions))
    for action in state.actions.values():
        setattr(counts, action.status, getattr(counts, action.status) + 1)
    return counts
