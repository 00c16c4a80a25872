"""Circular dependencies in raw or parsed plans; timing metrics of a folded execution."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from eventstore.analysis import LevelTiming, execution_metrics, find_circular_dependencies
from eventstore.events import (
    ActionAttemptFailed,
    ActionCompleted,
    ActionExecuteRequested,
    ActionStarted,
    ErrorInfo,
    Event,
    ExecutionCompleted,
    PlanSubmitted,
)
from eventstore.fold import apply_event
from eventstore.plan import Action, Plan
from eventstore.state import Counts, ExecutionState

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
DIAMOND = Plan(
    id="diamond",
    actions=[
        Action(id="a", type="noop"),
        Action(id="b", type="noop", depends_on=["a"]),
        Action(id="c", type="noop", depends_on=["a"]),
        Action(id="d", type="noop", depends_on=["b", "c"]),
    ],
)


def at(ms: int) -> str:
    return (
        (T0 + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def run(action_id: str, start: int, end: int, attempt: int = 1) -> list[Event]:
    common = {"execution_id": "e1", "action_id": action_id}
    return [
        ActionExecuteRequested(
            action_type="noop", queue="noop", occurred_at=at(start - 5), **common
        ),
        ActionStarted(attempt=attempt, occurred_at=at(start), **common),
        ActionCompleted(
            attempt=attempt,
            output={},
            duration_ms=float(end - start),
            occurred_at=at(end),
            **common,
        ),
    ]


def folded(events: list[Event]) -> ExecutionState:
    state: ExecutionState | None = None
    for event in events:
        state = apply_event(state, event)
    assert state is not None
    return state


def diamond_execution() -> ExecutionState:
    retry = ActionAttemptFailed(
        execution_id="e1",
        action_id="b",
        attempt=1,
        error=ErrorInfo(message="503", code="http_5xx", retryable=True),
        retry_in_ms=10,
        occurred_at=at(350),
    )
    return folded(
        [
            PlanSubmitted(execution_id="e1", plan=DIAMOND, occurred_at=at(0)),
            *run("a", 100, 300),
            *run("c", 300, 400),
            ActionStarted(execution_id="e1", action_id="b", attempt=1, occurred_at=at(300)),
            retry,
            *run("b", 360, 800, attempt=2),
            *run("d", 800, 900),
            ExecutionCompleted(execution_id="e1", occurred_at=at(1000)),
        ]
    )


# --- circular dependencies --------------------------------------------------------------------


def test_acyclic_plan_has_no_circular_dependencies() -> None:
    assert find_circular_dependencies(DIAMOND) == []


def test_cycles_in_a_raw_document_with_aliases_and_junk() -> None:
    document = {
        "id": "bad",
        "actions": [
            {"id": "a", "dependsOn": ["b"]},
            {"id": "b", "depends_on": ["c", 7]},
            {"id": "c", "depends_on": ["a"]},
            {"id": "solo", "depends_on": ["solo"]},
            "not an action",
            {"depends_on": ["a"]},
            {"id": "x", "depends_on": "a"},
        ],
    }

    assert find_circular_dependencies(document) == [["a", "b", "c", "a"], ["solo", "solo"]]


def test_document_without_actions_has_no_cycles() -> None:
    assert find_circular_dependencies({"id": "empty"}) == []


# --- execution metrics ------------------------------------------------------------------------


def test_critical_path_follows_the_longest_chain_of_durations() -> None:
    metrics = execution_metrics(diamond_execution())

    assert metrics.critical_path == ["a", "b", "d"]
    assert metrics.critical_path_ms == 200 + 440 + 100


def test_total_duration_runs_from_submission_to_the_end() -> None:
    metrics = execution_metrics(diamond_execution())

    assert metrics.status == "completed"
    assert metrics.total_duration_ms == 1000.0


def test_levels_report_wall_time_and_busy_time() -> None:
    metrics = execution_metrics(diamond_execution())

    assert metrics.levels == [
        LevelTiming(
            level=0,
            action_ids=["a"],
            started_at=at(100),
            completed_at=at(300),
            duration_ms=200.0,
            busy_ms=200.0,
        ),
        LevelTiming(
            level=1,
            action_ids=["b", "c"],
            started_at=at(300),
            completed_at=at(800),
            duration_ms=500.0,
            busy_ms=540.0,
        ),
        LevelTiming(
            level=2,
            action_ids=["d"],
            started_at=at(800),
            completed_at=at(900),
            duration_ms=100.0,
            busy_ms=100.0,
        ),
    ]


def test_counts_attempts_and_retries() -> None:
    metrics = execution_metrics(diamond_execution())

    assert metrics.counts == Counts(total=4, completed=4)
    assert metrics.attempts == 5
    assert metrics.retries == 1


def test_running_execution_has_no_total_and_partial_levels() -> None:
    state = folded(
        [PlanSubmitted(execution_id="e1", plan=DIAMOND, occurred_at=at(0)), *run("a", 100, 300)]
    )

    metrics = execution_metrics(state)

    assert metrics.status == "running"
    assert metrics.total_duration_ms is None
    assert metrics.levels[1] == LevelTiming(level=1, action_ids=["b", "c"])
    assert metrics.critical_path_ms == 200.0


def test_metrics_counts_are_a_copy() -> None:
    state = diamond_execution()

    metrics = execution_metrics(state)
    state.counts.completed = 0

    assert metrics.counts.completed == 4
