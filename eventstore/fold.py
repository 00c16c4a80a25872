"""How events become state: the one definition, shared by orchestrator and projector. Pure.

``apply`` mutates and returns the state it is given (copying a 1,000-action state per event
would make a fan-out quadratic); callers that need the old state keep a copy.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from eventstore.events import (
    ActionAttemptFailed,
    ActionCancelled,
    ActionCompleted,
    ActionEvent,
    ActionExecuteRequested,
    ActionFailed,
    ActionSkipped,
    ActionStarted,
    Event,
    ExecutionCancelled,
    ExecutionCancelRequested,
    ExecutionCompleted,
    ExecutionFailed,
    PlanSubmitted,
)
from eventstore.records import RecordedEvent
from eventstore.state import ActionState, ActionStatus, Counts, ExecutionState

__all__ = ["apply", "apply_event", "blocking_failures", "fold", "new_state", "ready_actions"]

# Events on the execution's version filter (see eventstore.subjects.action_version_filter).
_VERSIONED = (ActionStarted, ActionCompleted, ActionFailed, ActionSkipped, ActionCancelled)


def new_state(event: PlanSubmitted) -> ExecutionState:
    """The state right after a plan was submitted: every action pending."""
    plan = event.plan
    actions = {a.id: ActionState(action_id=a.id, queue=a.queue_name) for a in plan.actions}
    return ExecutionState(
        execution_id=event.execution_id,
        plan_id=plan.id,
        submitted_at=event.occurred_at,
        input=dict(plan.input),
        actions=actions,
        counts=Counts(total=len(actions), pending=len(actions)),
        plan=plan,
    )


def fold(
    records: Iterable[RecordedEvent], state: ExecutionState | None = None
) -> ExecutionState | None:
    """Fold a history (in log order) onto ``state``; ``None`` until a ``plan.submitted``."""
    for record in records:
        state = apply(state, record)
    return state


def apply(state: ExecutionState | None, record: RecordedEvent) -> ExecutionState | None:
    """Apply one recorded event. Events at or below ``state.last_sequence`` change nothing."""
    if state is not None and record.sequence <= state.last_sequence:
        return state
    state = apply_event(state, record.event)
    if state is not None:
        state.last_sequence = record.sequence
        state.event_count += 1
        if isinstance(record.event, _VERSIONED):
            state.version = record.sequence
    return state


def _set_status(state: ExecutionState, action: ActionState, status: ActionStatus) -> None:
    if action.status == status:
        return
    counts = state.counts
    setattr(counts, action.status, getattr(counts, action.status) - 1)
    setattr(counts, status, getattr(counts, status) + 1)
    action.status = status


def _elapsed_ms(start: str | None, end: str) -> float | None:
    if start is None:
        return None
    try:
        delta = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    except ValueError:
        return None
    return round(delta.total_seconds() * 1000, 3)


def apply_event(state: ExecutionState | None, event: Event) -> ExecutionState | None:
    """Apply one event without sequence bookkeeping (for tests and what-if folds)."""
    if isinstance(event, PlanSubmitted):
        return state if state is not None else new_state(event)
    if state is None:
        return None  # events of an execution whose plan.submitted we have not seen
    if isinstance(event, ActionEvent):
        action = state.actions.get(event.action_id)
        if action is None:
            return state
        _apply_action_event(state, action, event)
        return state
    match event:
        case ExecutionCompleted():
            if not state.terminal:
                state.status = "completed"
                state.completed_at = event.occurred_at
        case ExecutionFailed(error=error):
            if not state.terminal:
                state.status = "failed"
                state.error = error
                state.completed_at = event.occurred_at
        case ExecutionCancelRequested(reason=reason):
            if not state.cancel_requested:
                state.cancel_requested = True
                state.cancel_reason = reason
        case ExecutionCancelled(reason=reason):
            if not state.terminal:
                state.status = "cancelled"
                state.cancel_reason = reason or state.cancel_reason
                state.completed_at = event.occurred_at
                for action in state.actions.values():
                    if not action.finished:
                        _set_status(state, action, "cancelled")
    return state


def _apply_action_event(state: ExecutionState, action: ActionState, event: ActionEvent) -> None:
    match event:
        case ActionExecuteRequested(queue=queue):
            action.dispatched_at = action.dispatched_at or event.occurred_at
            action.queue = queue
            if state.status == "pending":
                state.status = "running"
                state.started_at = event.occurred_at
        case ActionStarted(attempt=attempt):
            if action.finished:
                return
            action.attempts = max(action.attempts, attempt)
            action.started_at = action.started_at or event.occurred_at
            _set_status(state, action, "running")
        case ActionAttemptFailed(attempt=attempt, error=error):
            if action.finished:
                return
            action.attempts = max(action.attempts, attempt)
            action.error = error
        case ActionCompleted(attempt=attempt, output=output, duration_ms=duration):
            if action.finished:
                return  # a late result after cancellation: recorded in the log, ignored here
            action.attempts = max(action.attempts, attempt)
            action.output = output
            action.error = None
            action.completed_at = event.occurred_at
            action.duration_ms = (
                duration
                if duration is not None
                else _elapsed_ms(action.started_at, event.occurred_at)
            )
            _set_status(state, action, "completed")
        case ActionFailed(attempt=attempt, error=error):
            if action.finished:
                return
            action.attempts = max(action.attempts, attempt)
            action.error = error
            action.completed_at = event.occurred_at
            action.duration_ms = _elapsed_ms(action.started_at, event.occurred_at)
            _set_status(state, action, "failed")
        case ActionSkipped(reason=reason):
            if action.finished:
                return
            action.skip_reason = reason
            action.completed_at = event.occurred_at
            _set_status(state, action, "skipped")
        case ActionCancelled():
            if not action.finished:
                action.completed_at = event.occurred_at
                _set_status(state, action, "cancelled")


def ready_actions(state: ExecutionState) -> list[str]:
    """Pending, not yet dispatched actions whose dependencies have all finished.

    Whether such an action runs or is skipped (condition, failed dependency) is the
    orchestrator's decision; this is only the DAG frontier, in plan order.
    """
    if state.plan is None or state.terminal:
        return []
    ready = []
    for spec in state.plan.actions:
        action = state.actions[spec.id]
        if action.status != "pending" or action.dispatched_at is not None:
            continue
        if all(state.actions[dep].finished for dep in spec.depends_on):
            ready.append(spec.id)
    return ready


def blocking_failures(state: ExecutionState) -> list[str]:
    """Actions whose end fails the execution, in plan order.

    A cancelled action, or a failed one without ``allow_failure``. While any exists, nothing new
    starts (except actions with ``run_on_dependency_failure``) and the execution fails once
    nothing is running. The orchestrator's ``decide`` and the StateManager's available actions
    both ask this one function.
    """
    counts = state.counts
    if state.plan is None or (not counts.failed and not counts.cancelled):
        return []
    return [
        spec.id
        for spec in state.plan.actions
        if (status := state.actions[spec.id].status) == "cancelled"
        or (status == "failed" and not spec.allow_failure)
    ]
