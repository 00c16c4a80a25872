"""When an outcome sends the orchestrator back to the log: only for a dispatch it never saw."""

from __future__ import annotations

from eventstore.events import (
    ActionCompleted,
    ActionExecuteRequested,
    ActionStarted,
    PlanSubmitted,
)
from eventstore.fold import fold
from eventstore.plan import Action, Plan, RequestSpec
from eventstore.records import RecordedEvent
from eventstore.state import ExecutionState
from eventstore.subjects import subject_for
from orchestrator.processor import outcome_of_unseen_dispatch

E = "e1"


def _state(*events: object) -> ExecutionState:
    plan = Plan(
        id="p",
        actions=[
            Action(id="a", request=RequestSpec(url="http://h/a")),
            Action(id="b", request=RequestSpec(url="http://h/b"), depends_on=["a"]),
        ],
    )
    history = [PlanSubmitted(execution_id=E, plan=plan), *events]
    records = [RecordedEvent(n, subject_for(e), e) for n, e in enumerate(history, 1)]  # type: ignore[arg-type]
    state = fold(records)
    assert state is not None
    return state


def _done(action_id: str) -> ActionCompleted:
    return ActionCompleted(execution_id=E, action_id=action_id, attempt=1, output={})


def _requested(action_id: str) -> ActionExecuteRequested:
    return ActionExecuteRequested(
        execution_id=E, action_id=action_id, action_type="http", queue="http"
    )


def test_the_outcome_of_a_dispatch_the_state_holds_needs_no_reload() -> None:
    # The orchestrator does not consume action.started: a dispatched action stays pending.
    state = _state(_requested("a"))
    assert state.actions["a"].status == "pending"
    assert not outcome_of_unseen_dispatch(state, _done("a"))
    assert not outcome_of_unseen_dispatch(
        _state(_requested("a"), ActionStarted(execution_id=E, action_id="a", attempt=1)), _done("a")
    )


def test_the_outcome_of_a_dispatch_the_state_never_saw_reloads() -> None:
    state = _state(_requested("a"))
    assert outcome_of_unseen_dispatch(state, _done("b"))  # another process dispatched b


def test_only_outcomes_count() -> None:
    assert not outcome_of_unseen_dispatch(_state(), _requested("a"))
