"""Status changes requested through the StateManager: which event, and which are refused."""

from __future__ import annotations

import pytest

from eventstore.events import (
    ActionCancelled,
    ActionCompleted,
    ActionFailed,
    ActionSkipped,
    ActionStarted,
    ErrorInfo,
    PlanSubmitted,
)
from eventstore.fold import apply_event, new_state
from eventstore.plan import Action, Plan
from eventstore.state import ExecutionState
from projections import ActionNotFoundError, ActionResult, InvalidTransitionError
from projections.transitions import output_document, result_event, status_event

PLAN = Plan(id="p", actions=[Action(id="a", type="noop"), Action(id="b", type="noop")])


def _pending() -> ExecutionState:
    return new_state(PlanSubmitted(execution_id="e1", plan=PLAN))


def _after(*events: object) -> ExecutionState:
    state: ExecutionState | None = _pending()
    for event in events:
        state = apply_event(state, event)  # type: ignore[arg-type]
    assert state is not None
    return state


def test_running_starts_the_next_attempt() -> None:
    event = status_event(_pending(), "a", "running")

    assert isinstance(event, ActionStarted) and event.attempt == 1
    retry = status_event(
        _after(ActionStarted(execution_id="e1", action_id="a", attempt=1)), "a", "completed"
    )
    assert isinstance(retry, ActionCompleted) and retry.attempt == 1


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        ("completed", ActionCompleted),
        ("failed", ActionFailed),
        ("skipped", ActionSkipped),
        ("cancelled", ActionCancelled),
    ],
)
def test_each_status_maps_to_its_event(status: str, kind: type) -> None:
    assert isinstance(status_event(_pending(), "a", status, reason="why"), kind)


def test_finished_actions_cannot_move() -> None:
    done = _after(ActionCompleted(execution_id="e1", action_id="a", attempt=1, output={}))

    with pytest.raises(InvalidTransitionError, match=r"completed to running.*finished"):
        status_event(done, "a", "running")
    with pytest.raises(InvalidTransitionError):
        result_event(done, "a", {"again": True})


def test_nothing_goes_back_to_pending_or_runs_twice() -> None:
    running = _after(ActionStarted(execution_id="e1", action_id="a", attempt=1))

    with pytest.raises(InvalidTransitionError):
        status_event(running, "a", "pending")
    with pytest.raises(InvalidTransitionError, match="running to running"):
        status_event(running, "a", "running")
    with pytest.raises(InvalidTransitionError, match="running to skipped"):
        status_event(running, "a", "skipped")


def test_nothing_changes_once_the_execution_ended() -> None:
    from eventstore.events import ExecutionCancelled, ExecutionCancelRequested

    ended = _after(
        ExecutionCancelRequested(execution_id="e1"), ExecutionCancelled(execution_id="e1")
    )

    with pytest.raises(InvalidTransitionError, match="is cancelled"):
        status_event(ended, "b", "running")


def test_unknown_actions_and_statuses_are_named() -> None:
    with pytest.raises(ActionNotFoundError, match="'zz'"):
        status_event(_pending(), "zz", "running")
    with pytest.raises(ValueError, match="unknown action status 'done'"):
        status_event(_pending(), "a", "done")


def test_results_become_completed_or_failed() -> None:
    completed = result_event(_pending(), "a", ActionResult(output={"x": 1}, duration_ms=5))
    failed = result_event(_pending(), "a", ActionResult(error="boom"))
    coded = result_event(
        _pending(), "a", ActionResult(error=ErrorInfo(message="nope", code="http_4xx"))
    )

    assert isinstance(completed, ActionCompleted) and completed.output == {"x": 1}
    assert completed.duration_ms == 5
    assert isinstance(failed, ActionFailed) and failed.error.message == "boom"
    assert failed.error.code == "failed"
    assert isinstance(coded, ActionFailed) and coded.error.code == "http_4xx"


def test_any_other_result_is_the_output() -> None:
    assert output_document({"a": 1}) == {"a": 1}
    assert output_document(None) == {}
    assert output_document([1, 2]) == {"value": [1, 2]}
    assert output_document("text") == {"value": "text"}
    event = result_event(_pending(), "a", 42)
    assert isinstance(event, ActionCompleted) and event.output == {"value": 42}
