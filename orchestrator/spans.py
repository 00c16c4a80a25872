"""What the orchestrator observes of a message it handled: metrics and, with export, spans.

An action's span (dispatch to outcome) is recorded when its outcome is folded in, an
execution's (submit to end) when its end is stored; both are children of the span of the
event being handled (:func:`eventstore.tracing.current_trace`). Without OpenTelemetry export
(:mod:`eventstore.otel`) the span functions return after one check.
"""

from __future__ import annotations

import time
from datetime import datetime

from eventstore import otel
from eventstore.events import ActionCompleted, ActionFailed, Event
from eventstore.runs import current_action
from eventstore.state import ExecutionState
from eventstore.tracing import current_trace
from orchestrator.metrics import DECISION_LATENCY, DECISION_PROCESSING, DECISIONS

__all__ = ["decided", "execution_ended", "outcome_folded"]


def decided(count: int, stored_at: datetime, began: float) -> None:
    """``count`` decisions on an event the log stored at ``stored_at`` were appended; the work
    on it began at ``began`` (``time.perf_counter()``)."""
    DECISIONS.inc(count)
    DECISION_LATENCY.observe(max(time.time() - stored_at.timestamp(), 0.0))
    DECISION_PROCESSING.observe(time.perf_counter() - began)


def outcome_folded(state: ExecutionState | None, event: Event) -> None:
    """Record the span of the action whose outcome ``event`` is (nothing for other events)."""
    if not otel.enabled() or state is None or not isinstance(event, ActionCompleted | ActionFailed):
        return
    action_id = current_action(state, event.action_id)
    action = state.actions.get(action_id) if action_id is not None else None
    if action is None:
        return
    otel.record_span(
        f"action {action.action_id}",
        current_trace(),
        action.dispatched_at or action.started_at,
        action.completed_at,
        {
            "tep.execution_id": state.execution_id,
            "tep.action_id": event.action_id,
            "tep.status": action.status,
            "tep.attempts": action.attempts,
        },
        error=action.error.message if isinstance(event, ActionFailed) and action.error else None,
    )


def execution_ended(state: ExecutionState) -> None:
    """Record the span of an execution whose end was just stored."""
    if not otel.enabled():
        return
    otel.record_span(
        f"execution {state.plan_id}",
        current_trace(),
        state.submitted_at,
        state.completed_at,
        {
            "tep.execution_id": state.execution_id,
            "tep.plan_id": state.plan_id,
            "tep.status": state.status,
            "tep.run": state.run,
        },
        error=state.error.message if state.status == "failed" and state.error else None,
    )
