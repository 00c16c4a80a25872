"""How events become state: the one definition, shared by orchestrator and projector. Pure.

``apply`` mutates and returns the state it is given (copying a 1,000-action state per event
would make a fan-out quadratic); callers that need the old state keep a copy.

The fold believes only what the orchestrator's rules allow, whoever stored the event: a second
``plan.submitted`` changes nothing, and an execution ends only as it can (completed once every
action finished and nothing blocking failed; failed once every action finished and one that
blocks failed, or for an invalid plan before anything ran; cancelled after a cancel request).
Any other end, and any second end of a run, is refused and noted in ``state.inconsistent``.
An ended execution re-opens with ``execution.retried`` (see :mod:`eventstore.runs`); its next
run then ends by the same rules.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from eventstore.action_keys import parse_action_key
from eventstore.error_codes import ErrorCode
from eventstore.events import (
    ActionAttemptFailed,
    ActionCancelled,
    ActionCompleted,
    ActionEvent,
    ActionExecuteRequested,
    ActionFailed,
    ActionItemsStarted,
    ActionResumeRequested,
    ActionSkipped,
    ActionStarted,
    ActionTimerFired,
    ActionWaiting,
    Event,
    ExecutionCancelled,
    ExecutionCancelRequested,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionRetried,
    PlanSubmitted,
)
from eventstore.items import (
    apply_item_event,
    items_output,
    items_started_problem,
    start_items,
)
from eventstore.records import RecordedEvent
from eventstore.routes import note_route, routes_by_source, unhandled_failures, with_routes
from eventstore.runs import apply_retried
from eventstore.state import ActionState, ActionStatus, Counts, ExecutionState, Inconsistency
from eventstore.waits import apply_resume, apply_timer, apply_waiting

__all__ = [
    "apply",
    "apply_event",
    "blocking_failures",
    "end_problem",
    "fold",
    "new_state",
    "ready_actions",
    "refused_end_sequence",
]

# Events on the execution's version filter (see eventstore.subjects.action_version_filter).
_VERSIONED = (
    ActionStarted,
    ActionCompleted,
    ActionFailed,
    ActionSkipped,
    ActionCancelled,
    ActionWaiting,
)
_ENDS = (ExecutionCompleted, ExecutionFailed, ExecutionCancelled)
# What shares the terminal filter with the ends (see eventstore.subjects.terminal_filter).
_END_TYPES = frozenset(str(t.__struct_config__.tag) for t in (*_ENDS, ExecutionRetried))
_MAX_INCONSISTENCIES = 20
_LISTED_ACTIONS = 5


def new_state(event: PlanSubmitted) -> ExecutionState:
    """The state right after a plan was submitted: every action pending.

    ``state.plan`` is the plan with its error routes as graph edges
    (:func:`eventstore.routes.with_routes`): the graph everyone decides on.
    """
    plan = with_routes(event.plan)
    actions = {a.id: ActionState(action_id=a.id, queue=a.queue_name) for a in plan.actions}
    return ExecutionState(
        execution_id=event.execution_id,
        plan_id=plan.id,
        submitted_at=event.occurred_at,
        input=dict(plan.input),
        actions=actions,
        counts=Counts(total=len(actions), pending=len(actions)),
        parent=event.parent,
        routes=routes_by_source(plan),
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
    state = _apply(state, record.event, record.sequence)
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
    return _apply(state, event, 0)


def _listed(action_ids: list[str]) -> str:
    shown = ", ".join(action_ids[:_LISTED_ACTIONS])
    more = len(action_ids) - _LISTED_ACTIONS
    return f"{shown} and {more} more" if more > 0 else shown


def end_problem(state: ExecutionState, event: Event) -> str | None:
    """Why ``event``, an end of the execution, cannot be true of ``state``; ``None`` if it can."""
    if state.terminal:
        return f"the execution already {state.status}"
    unfinished = [a.action_id for a in state.actions.values() if not a.finished]
    match event:
        case ExecutionCancelled():
            # The cancellation itself ends what still runs (see apply_event).
            return None if state.cancel_requested else "no cancellation was requested"
        case ExecutionFailed(error=error):
            nothing_ran = all(
                a.status == "pending" and a.dispatched_at is None for a in state.actions.values()
            )
            if error.code == ErrorCode.INVALID_PLAN and nothing_ran and state.run == 1:
                return None
            if unfinished:
                return f"actions not finished: {_listed(unfinished)}"
            if state.plan is None:  # a view's state: whether a failure was allowed is unknown
                blocked = bool(state.counts.failed or state.counts.cancelled)
            else:
                blocked = bool(blocking_failures(state))
            return None if blocked else "no action failed that fails it"
        case ExecutionCompleted():
            if unfinished:
                return f"actions not finished: {_listed(unfinished)}"
            if state.plan is None:
                blocking = [a.action_id for a in state.actions.values() if a.status == "cancelled"]
            else:
                blocking = blocking_failures(state)
            return f"actions failed: {_listed(blocking)}" if blocking else None
    return None


def refused_end_sequence(state: ExecutionState | None) -> int:
    """The sequence the execution's end must directly follow on its terminal filter (0: none).

    The newest of: an end (or ``execution.retried``) the fold refused, and the retry that
    started the current run. The execution's true end must be stored after it: a guard on
    "no end exists yet" would never hold again.
    """
    if state is None:
        return 0
    refused = (i.sequence for i in state.inconsistent if i.event_type in _END_TYPES)
    return max([state.retried_sequence, *refused])


def _refuse(state: ExecutionState, event: Event, sequence: int, reason: str) -> None:
    tag = str(event.__struct_config__.tag)
    noted = Inconsistency(sequence=sequence, event_type=tag, reason=reason)
    state.inconsistent = [*state.inconsistent[-(_MAX_INCONSISTENCIES - 1) :], noted]


def _apply(state: ExecutionState | None, event: Event, sequence: int) -> ExecutionState | None:
    if isinstance(event, PlanSubmitted):
        if state is None:
            return new_state(event)
        _refuse(state, event, sequence, "a second plan.submitted for the execution")
        return state
    if state is None:
        return None  # events of an execution whose plan.submitted we have not seen
    if isinstance(event, ActionEvent):
        action = state.actions.get(event.action_id)
        if action is not None and action.run == 1:
            _apply_action_event(state, action, event, sequence)
            note_route(state.routes, state.actions, action.action_id)
            return state
        key = parse_action_key(event.action_id)
        if key is None or (action := state.actions.get(key.action_id)) is None:
            return state
        if key.run != action.run:
            return state  # a late event of an earlier run: in the log, not in this run
        if key.item is not None:
            apply_item_event(state, action, key.item, event, sequence)
        else:
            _apply_action_event(state, action, event, sequence)
        note_route(state.routes, state.actions, action.action_id)
        return state
    if isinstance(event, ExecutionRetried):
        if (problem := apply_retried(state, event, sequence)) is not None:
            _refuse(state, event, sequence, problem)
        return state
    if isinstance(event, _ENDS) and (problem := end_problem(state, event)) is not None:
        _refuse(state, event, sequence, problem)
        return state
    match event:
        case ExecutionCompleted():
            state.status = "completed"
            state.completed_at = event.occurred_at
        case ExecutionFailed(error=error):
            state.status = "failed"
            state.error = error
            state.completed_at = event.occurred_at
        case ExecutionCancelRequested(reason=reason):
            if not state.cancel_requested:
                state.cancel_requested = True
                state.cancel_reason = reason
        case ExecutionCancelled(reason=reason):
            state.status = "cancelled"
            state.cancel_reason = reason or state.cancel_reason
            state.completed_at = event.occurred_at
            for action in state.actions.values():
                if not action.finished:
                    _set_status(state, action, "cancelled")
    return state


def _apply_action_event(
    state: ExecutionState, action: ActionState, event: ActionEvent, sequence: int
) -> None:
    # Commonest first: the cases are disjoint classes, so the order only saves tests.
    match event:
        case ActionStarted(attempt=attempt, child_execution_id=child):
            if action.finished:
                return
            if child is not None:  # a sub-plan action started its child: no request before
                action.child_execution_id = child
                action.dispatched_at = action.dispatched_at or event.occurred_at
                if state.status == "pending":
                    state.status = "running"
                    state.started_at = event.occurred_at
            action.attempts = max(action.attempts, attempt)
            action.started_at = action.started_at or event.occurred_at
            _set_status(state, action, "running")
        case ActionCompleted(attempt=attempt, output=output, duration_ms=duration):
            if action.finished:
                return  # a late result after cancellation: recorded in the log, ignored here
            action.attempts = max(action.attempts, attempt)
            action.output = output if action.items is None else items_output(action, output)
            action.error = None
            action.completed_at = event.occurred_at
            action.duration_ms = (
                duration
                if duration is not None
                else _elapsed_ms(action.started_at, event.occurred_at)
            )
            _set_status(state, action, "completed")
        case ActionExecuteRequested(queue=queue):
            action.dispatched_at = action.dispatched_at or event.occurred_at
            action.queue = queue
            if state.status == "pending":
                state.status = "running"
                state.started_at = event.occurred_at
        case ActionWaiting():
            if apply_waiting(action, event, sequence):
                if state.status == "pending":
                    state.status = "running"
                    state.started_at = event.occurred_at
                _set_status(state, action, "waiting")
        case ActionResumeRequested():
            apply_resume(action, event)
        case ActionTimerFired():
            apply_timer(action, event)
        case ActionItemsStarted():
            if (problem := items_started_problem(event)) is not None:
                _refuse(state, event, sequence, problem)
            elif start_items(action, event):
                if state.status == "pending":
                    state.status = "running"
                    state.started_at = event.occurred_at
                _set_status(state, action, "running")
        case ActionAttemptFailed(attempt=attempt, error=error):
            if action.finished:
                return
            action.attempts = max(action.attempts, attempt)
            action.error = error
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

    A cancelled action, or a failed one without ``continue_on_error`` that no error route
    handled or will handle (see :mod:`eventstore.routes`). While any exists, nothing new starts
    (except routes: actions with ``run_if`` ``failed`` or ``always``) and the execution fails
    once nothing is running. The orchestrator's ``decide`` and the StateManager's available
    actions both ask this one function.
    """
    counts = state.counts
    if state.plan is None or (not counts.failed and not counts.cancelled):
        return []
    return unhandled_failures(state.plan, state.actions)
