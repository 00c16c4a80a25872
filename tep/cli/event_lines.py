"""Text views of an execution's events for the terminal: one event in a few words, the
timeline of ``tep events``, the plain progress lines of ``tep watch``. Pure.

Nothing here does I/O; the commands decide where the lines go.
"""

from __future__ import annotations

from collections.abc import Sequence

from eventstore.events import (
    ActionAttemptFailed,
    ActionCancelled,
    ActionCompleted,
    ActionEvent,
    ActionExecuteRequested,
    ActionFailed,
    ActionResumeRequested,
    ActionSkipped,
    ActionStarted,
    ActionTimerFired,
    ActionWaiting,
    Event,
    ExecutionCancelled,
    ExecutionCancelRequested,
    ExecutionFailed,
    ExecutionRetried,
    PlanSubmitted,
)
from eventstore.payloads import format_size, payload_ref
from eventstore.records import RecordedEvent
from eventstore.state import ActionState, ExecutionState
from tep.cli.execution_views import action_duration, action_note, finished_count
from tep.cli.text_format import (
    error_text,
    format_duration,
    format_offset,
    format_table,
    parse_timestamp,
)

__all__ = [
    "ActionSnapshot",
    "describe_event",
    "snapshot",
    "timeline",
    "transitions",
]

ActionSnapshot = dict[str, tuple[str, int]]
"""Per action id: (status, attempts). What the plain-line watch compares between events."""


def describe_event(event: Event) -> str:
    """The interesting detail of one event, in a few words."""
    match event:
        case PlanSubmitted(plan=plan, parent=parent):
            child = f", child of {parent.execution_id} {parent.action_id}" if parent else ""
            return f"plan {plan.id}, {len(plan.actions)} actions{child}"
        case ActionExecuteRequested(queue=queue, request=request):
            target = f" {request.method} {request.url}" if request is not None else ""
            return f"queue {queue}{target}"
        case ActionStarted(executor_id=executor_id, child_execution_id=child):
            if child is not None:
                return f"child execution {child}"
            return f"executor {executor_id}" if executor_id else ""
        case ActionAttemptFailed(error=error, retry_in_ms=retry_in_ms):
            return f"{error_text(error)}; retry in {retry_in_ms}ms"
        case ActionCompleted(status_code=status_code, duration_ms=duration_ms, output=output):
            parts = []
            if status_code is not None:
                parts.append(f"HTTP {status_code}")
            if duration_ms is not None:
                parts.append(format_duration(duration_ms / 1000))
            if (ref := payload_ref(output)) is not None:
                parts.append(f"output {format_size(ref.size)} by reference")
            return ", ".join(parts)
        case ActionFailed(error=error):
            return error_text(error)
        case ActionSkipped(reason=reason, detail=detail):
            return f"{reason}: {detail}" if detail else reason
        case ActionCancelled(reason=reason):
            return reason or ""
        case ActionWaiting(reason=reason, until=until):
            return f"{reason} until {until}" if until else f"{reason}, no timeout"
        case ActionResumeRequested(reject=reject, requested_by=by, token=token):
            what = f"reject: {reject}" if reject is not None else "resume with data"
            who = f" by {by}" if by else ""
            return what + who + (" (with the token)" if token else "")
        case ActionTimerFired(kind=kind, due_at=due_at):
            return f"{kind} due {due_at}"
        case ExecutionFailed(error=error, failed_actions=failed):
            suffix = f" (actions: {', '.join(failed)})" if failed else ""
            return error_text(error) + suffix
        case ExecutionCancelRequested(reason=reason) | ExecutionCancelled(reason=reason):
            return reason or ""
        case ExecutionRetried(run=run, reset=reset, requested_by=by, reason=reason):
            who = f" by {by}" if by else ""
            why = f": {reason}" if reason else ""
            return f"run {run}{who}{why}; again: {', '.join(reset)}"
    return ""


def timeline(records: Sequence[RecordedEvent]) -> list[str]:
    """The history as an aligned table: offset, sequence, type, action, attempt, detail."""
    origin = parse_timestamp(records[0].event.occurred_at) if records else None
    rows = []
    for record in records:
        event = record.event
        moment = parse_timestamp(event.occurred_at)
        offset = (
            format_offset(max((moment - origin).total_seconds(), 0.0))
            if moment is not None and origin is not None
            else "?"
        )
        action = event.action_id if isinstance(event, ActionEvent) else ""
        attempt = getattr(event, "attempt", None)
        rows.append(
            [
                offset,
                str(record.sequence),
                str(event.__struct_config__.tag),
                action,
                "" if attempt is None else str(attempt),
                describe_event(event),
            ]
        )
    return format_table(["TIME", "SEQ", "EVENT", "ACTION", "ATTEMPT", "DETAIL"], rows)


def snapshot(state: ExecutionState | None) -> ActionSnapshot:
    """What :func:`transitions` compares: each action's status and attempts."""
    if state is None:
        return {}
    return {a.action_id: (a.status, a.attempts) for a in state.actions.values()}


def transitions(
    before: ActionSnapshot, state: ExecutionState, record: RecordedEvent, previous_status: str
) -> list[str]:
    """Plain progress lines for what one event changed (``tep watch`` off a terminal)."""
    event = record.event
    done = finished_count(state)
    total = state.counts.total
    prefix = f"[{done:>{len(str(total))}}/{total}]"
    lines = []
    if isinstance(event, ActionEvent):
        action = state.actions.get(event.action_id)
        if action is not None:
            old = before.get(action.action_id)
            new = (action.status, action.attempts)
            if isinstance(event, ActionAttemptFailed):
                lines.append(
                    f"{prefix} {action.action_id} attempt {event.attempt} failed: "
                    f"{describe_event(event)}"
                )
            elif isinstance(event, ActionResumeRequested):
                lines.append(f"{prefix} {action.action_id} {_resume_fate(action, event)}")
            elif old != new:
                detail = []
                if action.attempts:
                    detail.append(f"attempt {action.attempts}")
                if action.finished and action.status not in ("skipped", "cancelled"):
                    detail.append(format_duration(action_duration(action, None)))
                note = action_note(state.execution_id, action)
                if note and action.status != "running":
                    detail.append(note)
                suffix = f" ({', '.join(detail)})" if detail else ""
                lines.append(f"{prefix} {action.action_id} {action.status}{suffix}")
    if state.status != previous_status:
        lines.append(f"{prefix} execution {state.status}")
    return lines


def _resume_fate(action: ActionState, event: ActionResumeRequested) -> str:
    """What became of a resume request, as the fold decided."""
    wait = action.wait
    if wait is not None and wait.resume is not None and wait.resume.request_id == event.event_id:
        return "resume accepted" + (f" by {event.requested_by}" if event.requested_by else "")
    if wait is not None and wait.refused and not action.finished:
        return f"resume refused: {wait.refused}"
    return f"resume request ignored (the action is {action.status})"
