"""The terminal views of an execution: pure functions of events and state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from eventstore.events import (
    ActionAttemptFailed,
    ActionCompleted,
    ActionExecuteRequested,
    ActionStarted,
    ErrorInfo,
    PlanSubmitted,
)
from eventstore.fold import fold
from eventstore.plan import Action, Plan, RequestSpec
from eventstore.records import RecordedEvent
from eventstore.state import ExecutionState
from tep.cli.event_lines import snapshot, timeline, transitions
from tep.cli.execution_views import live_view, summary
from tep.cli.text_format import format_duration, format_offset, progress_bar

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(ms: float) -> str:
    return (T0 + timedelta(milliseconds=ms)).isoformat().replace("+00:00", "Z")


def plan(width: int) -> Plan:
    return Plan(
        id="p",
        actions=[Action(id=f"a{i}", request=RequestSpec(url="http://t/x")) for i in range(width)],
    )


def records(width: int = 2) -> list[RecordedEvent]:
    events = [
        PlanSubmitted(execution_id="e", plan=plan(width), occurred_at=at(0)),
        ActionExecuteRequested(
            execution_id="e",
            action_id="a0",
            action_type="http",
            queue="http",
            request=RequestSpec(url="http://t/x"),
            occurred_at=at(1),
        ),
        ActionStarted(execution_id="e", action_id="a0", attempt=1, occurred_at=at(2)),
        ActionAttemptFailed(
            execution_id="e",
            action_id="a0",
            attempt=1,
            retry_in_ms=250,
            occurred_at=at(30),
            error=ErrorInfo(message="boom", code="http_5xx", status_code=503, retryable=True),
        ),
        ActionStarted(execution_id="e", action_id="a0", attempt=2, occurred_at=at(300)),
        ActionCompleted(
            execution_id="e",
            action_id="a0",
            attempt=2,
            output={},
            duration_ms=40,
            status_code=200,
            occurred_at=at(1_500),
        ),
    ]
    return [RecordedEvent(i + 1, f"s.{i}", event) for i, event in enumerate(events)]


def state_of(recs: list[RecordedEvent]) -> ExecutionState:
    state = fold(recs)
    assert state is not None
    return state


def test_durations_and_offsets_are_short_and_readable() -> None:
    assert [format_duration(s) for s in (None, 0.0123, 4.5, 75, 7_300)] == [
        "-",
        "12ms",
        "4.50s",
        "1m15s",
        "2h01m",
    ]
    assert format_offset(1.5) == "+1.500s" and format_offset(125.25) == "+2m05.2s"


def test_progress_bar_fills_in_proportion() -> None:
    assert progress_bar(5, 10, width=10) == "[#####.....]  5/10  50%"
    assert progress_bar(0, 0, width=4) == "[####] 0/0 100%"


def test_timeline_has_relative_times_and_details() -> None:
    lines = timeline(records())

    assert lines[0].split() == ["TIME", "SEQ", "EVENT", "ACTION", "ATTEMPT", "DETAIL"]
    assert lines[1].startswith("+0.000s") and "plan p, 2 actions" in lines[1]
    assert "queue http GET http://t/x" in lines[2]
    assert lines[4].startswith("+0.030s") and "http_5xx HTTP 503: boom; retry in 250ms" in lines[4]
    assert lines[6].startswith("+1.500s") and "HTTP 200, 40ms" in lines[6]


def test_transitions_report_status_changes_and_failed_attempts_once() -> None:
    recs = records()
    state = None
    lines: list[str] = []
    status = "pending"
    for record in recs:
        before = snapshot(state)
        state = fold([record], state)
        assert state is not None
        lines += transitions(before, state, record, status)
        status = state.status

    assert lines == [
        "[0/2] execution running",
        "[0/2] a0 running (attempt 1)",
        "[0/2] a0 attempt 1 failed: http_5xx HTTP 503: boom; retry in 250ms",
        "[0/2] a0 running (attempt 2)",
        "[1/2] a0 completed (attempt 2, 40ms)",
    ]


def test_summary_counts_retries_and_names_failures() -> None:
    state = state_of(records())
    state.status = "failed"
    state.completed_at = at(2_000)
    state.actions["a1"].status = "failed"
    state.actions["a1"].error = ErrorInfo(message="not found", code="http_4xx", status_code=404)

    lines = summary(state)

    assert lines[0].startswith("e failed in 2.00s: 2 actions")
    assert "1 retries" in lines[0]
    assert lines[-1] == "  a1: http_4xx HTTP 404: not found"


def test_live_view_fits_the_terminal_and_shows_running_actions_first() -> None:
    recs = records(width=50)
    state = state_of(recs[:3])  # a0 running, 49 pending

    lines = live_view(state, T0 + timedelta(seconds=2), width=60, height=12)

    assert len(lines) <= 12 and all(len(line) <= 60 for line in lines)
    assert lines[0].startswith("e  plan p  running  2.00s")
    assert "0/50" in lines[1]
    assert lines[4].split()[:3] == [">", "a0", "running"]  # the running one made the cut
    assert "2.00s" in lines[4]  # its duration ticks with the clock
    assert lines[-1] == "  ... and 44 more"
