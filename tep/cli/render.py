"""Text views of an execution for the terminal: timeline, live progress, summary. Pure.

Nothing here does I/O; the commands decide where the lines go (and whether to redraw them).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

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
    ErrorInfo,
    Event,
    ExecutionCancelled,
    ExecutionCancelRequested,
    ExecutionFailed,
    ExecutionRetried,
    PlanSubmitted,
)
from eventstore.items import describe_items
from eventstore.payloads import format_size, payload_ref
from eventstore.records import RecordedEvent
from eventstore.state import ActionState, ExecutionState

__all__ = [
    "ActionSnapshot",
    "describe_event",
    "finished_count",
    "format_duration",
    "format_offset",
    "format_table",
    "live_view",
    "progress_bar",
    "snapshot",
    "state_table",
    "summary",
    "timeline",
    "transitions",
    "wait_note",
]

ActionSnapshot = dict[str, tuple[str, int]]
"""Per action id: (status, attempts). What the plain-line watch compares between events."""

_SYMBOLS = {
    "pending": " ",
    "running": ">",
    "waiting": "~",
    "completed": "+",
    "failed": "x",
    "skipped": "-",
    "cancelled": "!",
}


def _parse(timestamp: str | None) -> datetime | None:
    if not timestamp:
        return None
    try:
        return datetime.fromisoformat(timestamp)
    except ValueError:
        return None


def _seconds_between(start: str | None, end: str | None) -> float | None:
    first, last = _parse(start), _parse(end)
    if first is None or last is None:
        return None
    return (last - first).total_seconds()


def format_duration(seconds: float | None) -> str:
    """``0.123`` -> ``123ms``, ``4.5`` -> ``4.50s``, ``75`` -> ``1m15s``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_offset(seconds: float) -> str:
    """A time relative to the first event: ``+0.000s``, ``+12.345s``, ``+2m03.4s``."""
    if seconds < 60:
        return f"+{seconds:.3f}s"
    minutes, rest = divmod(seconds, 60)
    return f"+{int(minutes)}m{rest:04.1f}s"


def format_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """Left-aligned columns separated by two spaces; trailing blanks removed."""
    materialized = [list(headers), *[list(row) for row in rows]]
    widths = [max(len(row[i]) for row in materialized) for i in range(len(headers))]
    lines = []
    for row in materialized:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return lines


def _error_text(error: ErrorInfo | None) -> str:
    if error is None:
        return ""
    status = f" HTTP {error.status_code}" if error.status_code is not None else ""
    return f"{error.code}{status}: {error.message}"


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
            return f"{_error_text(error)}; retry in {retry_in_ms}ms"
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
            return _error_text(error)
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
            return _error_text(error) + suffix
        case ExecutionCancelRequested(reason=reason) | ExecutionCancelled(reason=reason):
            return reason or ""
        case ExecutionRetried(run=run, reset=reset, requested_by=by, reason=reason):
            who = f" by {by}" if by else ""
            why = f": {reason}" if reason else ""
            return f"run {run}{who}{why}; again: {', '.join(reset)}"
    return ""


def timeline(records: Sequence[RecordedEvent]) -> list[str]:
    """The history as an aligned table: offset, sequence, type, action, attempt, detail."""
    origin = _parse(records[0].event.occurred_at) if records else None
    rows = []
    for record in records:
        event = record.event
        moment = _parse(event.occurred_at)
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


def _action_duration(action: ActionState, now: datetime | None) -> float | None:
    if action.duration_ms is not None:
        return action.duration_ms / 1000
    if action.status in ("running", "waiting") and now is not None:
        started = _parse(action.started_at)
        return (now - started).total_seconds() if started is not None else None
    return _seconds_between(action.started_at, action.completed_at)


def wait_note(execution_id: str, action: ActionState) -> str:
    """What a waiting action waits for and until when, and the last refused resume.

    ``waitpoint until 2030-01-31T09:00:00Z (resume: tep resume EXEC approve --data JSON)``,
    ``sleeping until ...``; empty when the action does not wait.
    """
    wait = action.wait
    if wait is None or action.status != "waiting":
        return ""
    if wait.resume is not None:
        verb = "rejected" if wait.resume.reject is not None else "resumed"
        who = f" by {wait.resume.requested_by}" if wait.resume.requested_by else ""
        note = f"{verb}{who}; outcome pending"
    elif wait.timer is not None:
        note = f"{'woke' if wait.timer == 'wake' else 'timed out'}; outcome pending"
    elif wait.reason == "sleep":
        note = f"sleeping until {wait.until}"
    else:
        until = f"until {wait.until}" if wait.until else "no timeout"
        command = f"tep resume {execution_id} {action.action_id} --data JSON"
        note = f"waitpoint {until} (resume: {command})"
    if wait.refused:
        note += f"; last resume refused: {wait.refused}"
    return note


def _action_note(execution_id: str, action: ActionState) -> str:
    if action.status == "skipped":
        return action.skip_reason or ""
    if action.status == "waiting":
        return wait_note(execution_id, action)
    child_id = action.child_execution_id
    child = f"child {child_id}" if child_id else ""
    if action.error is not None:
        error = _error_text(action.error)
        if action.handled_by is not None:
            error = f"handled by {action.handled_by}: {error}"
        return f"{child}: {error}" if child_id and child_id not in error else error
    if (ref := payload_ref(action.output)) is not None:
        stored = f"output {format_size(ref.size)} by reference"
        return f"{child}, {stored}" if child else stored
    return child


def _action_row(execution_id: str, action: ActionState, now: datetime | None) -> list[str]:
    return [
        f"{_SYMBOLS.get(action.status, '?')} {action.action_id}",
        action.status,
        str(action.attempts) if action.attempts else "",
        format_duration(_action_duration(action, now)) if action.status != "pending" else "",
        _with_items(action, _action_note(execution_id, action)),
    ]


def _with_items(action: ActionState, note: str) -> str:
    """A for-each action's item progress before its note."""
    if action.items is None:
        return note
    progress = describe_items(action.items)
    return f"{progress}; {note}" if note else progress


_ACTION_HEADERS = ("ACTION", "STATUS", "ATTEMPTS", "DURATION", "NOTE")


def state_table(state: ExecutionState) -> list[str]:
    """Every action of a finished (or any) execution as a table, in plan order."""
    e = state.execution_id
    return format_table(_ACTION_HEADERS, (_action_row(e, a, None) for a in state.actions.values()))


def finished_count(state: ExecutionState) -> int:
    """Actions that will not change any more."""
    return sum(1 for a in state.actions.values() if a.finished)


def progress_bar(done: int, total: int, width: int = 30) -> str:
    """``[##########..........]  10/20  50%``."""
    fraction = done / total if total else 1.0
    filled = round(fraction * width)
    bar = "#" * filled + "." * (width - filled)
    return f"[{bar}] {done:>{len(str(total))}}/{total} {fraction:4.0%}"


def _elapsed(state: ExecutionState, now: datetime | None) -> float | None:
    end = _parse(state.completed_at) or now
    start = _parse(state.submitted_at)
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)


def _retries(state: ExecutionState) -> int:
    return sum(max(a.attempts - 1, 0) for a in state.actions.values())


def summary(state: ExecutionState) -> list[str]:
    """One line with the outcome and counts, then one line per failed action."""
    counts = state.counts
    elapsed = format_duration(_elapsed(state, None))
    parts = [
        f"{counts.total} actions",
        f"{counts.completed} completed",
        f"{counts.failed} failed",
        f"{counts.skipped} skipped",
    ]
    if counts.cancelled:
        parts.append(f"{counts.cancelled} cancelled")
    retries = _retries(state)
    if retries:
        parts.append(f"{retries} retries")
    lines = [f"{state.execution_id} {state.status} in {elapsed}: {', '.join(parts)}"]
    if state.error is not None and state.status == "failed":
        lines.append(f"  error: {_error_text(state.error)}")
    if state.status == "cancelled" and state.cancel_reason:
        lines.append(f"  reason: {state.cancel_reason}")
    for action in state.actions.values():
        if action.status == "failed":
            lines.append(f"  {action.action_id}: {_error_text(action.error)}")
    return lines


def live_view(state: ExecutionState, now: datetime, *, width: int, height: int) -> list[str]:
    """The screen of ``tep watch`` on a terminal: header, progress bar, action rows.

    Rows beyond ``height`` are summarised; running and failed actions are shown first when not
    every action fits. Every line is cut to ``width`` so redrawing in place stays exact.
    """
    header = (
        f"{state.execution_id}  plan {state.plan_id}  {state.status}"
        f"  {format_duration(_elapsed(state, now))}"
    )
    bar = progress_bar(
        finished_count(state), state.counts.total, width=max(10, min(40, width - 20))
    )
    actions = list(state.actions.values())
    room = max(height - 5, 3)
    if len(actions) > room:
        rank = {"running": 0, "waiting": 0, "failed": 1}
        ordered = sorted(
            enumerate(actions), key=lambda item: (rank.get(item[1].status, 2), item[0])
        )
        shown = sorted(ordered[: room - 1], key=lambda item: item[0])
        hidden = len(actions) - len(shown)
        rows = [_action_row(state.execution_id, a, now) for _, a in shown]
        table = format_table(_ACTION_HEADERS, rows)
        table.append(f"  ... and {hidden} more")
    else:
        rows = [_action_row(state.execution_id, a, now) for a in actions]
        table = format_table(_ACTION_HEADERS, rows)
    return [line[:width] for line in (header, bar, "", *table)]


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
                    detail.append(format_duration(_action_duration(action, None)))
                note = _action_note(state.execution_id, action)
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
