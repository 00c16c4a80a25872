"""Text views of an execution's state for the terminal: the action table, the summary, the
live screen of ``tep watch``. Pure.

Nothing here does I/O; the commands decide where the lines go (and whether to redraw them).
"""

from __future__ import annotations

from datetime import datetime

from eventstore.items import describe_items
from eventstore.payloads import format_size, payload_ref
from eventstore.state import ActionState, ExecutionState
from tep.cli.text_format import (
    error_text,
    format_duration,
    format_table,
    parse_timestamp,
    progress_bar,
)

__all__ = [
    "action_duration",
    "action_note",
    "finished_count",
    "live_view",
    "state_table",
    "summary",
    "wait_note",
]

_SYMBOLS = {
    "pending": " ",
    "running": ">",
    "waiting": "~",
    "completed": "+",
    "failed": "x",
    "skipped": "-",
    "cancelled": "!",
}


def _seconds_between(start: str | None, end: str | None) -> float | None:
    first, last = parse_timestamp(start), parse_timestamp(end)
    if first is None or last is None:
        return None
    return (last - first).total_seconds()


def action_duration(action: ActionState, now: datetime | None) -> float | None:
    """How long the action ran, in seconds; a running or waiting one until ``now``."""
    if action.duration_ms is not None:
        return action.duration_ms / 1000
    if action.status in ("running", "waiting") and now is not None:
        started = parse_timestamp(action.started_at)
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


def action_note(execution_id: str, action: ActionState) -> str:
    """The note of an action's row: why it was skipped, what it waits for, its error, its
    child execution or its output stored by reference."""
    if action.status == "skipped":
        return action.skip_reason or ""
    if action.status == "waiting":
        return wait_note(execution_id, action)
    child_id = action.child_execution_id
    child = f"child {child_id}" if child_id else ""
    if action.error is not None:
        error = error_text(action.error)
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
        format_duration(action_duration(action, now)) if action.status != "pending" else "",
        _with_items(action, action_note(execution_id, action)),
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


def _elapsed(state: ExecutionState, now: datetime | None) -> float | None:
    end = parse_timestamp(state.completed_at) or now
    start = parse_timestamp(state.submitted_at)
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
        lines.append(f"  error: {error_text(state.error)}")
    if state.status == "cancelled" and state.cancel_reason:
        lines.append(f"  reason: {state.cancel_reason}")
    for action in state.actions.values():
        if action.status == "failed":
            lines.append(f"  {action.action_id}: {error_text(action.error)}")
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
