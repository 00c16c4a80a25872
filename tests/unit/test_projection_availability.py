"""``get_available_actions``: the frontier narrowed to what would run. Pure."""

from __future__ import annotations

from eventstore.events import (
    ActionCompleted,
    ActionExecuteRequested,
    ActionFailed,
    ActionSkipped,
    ErrorInfo,
    Event,
    PlanSubmitted,
)
from eventstore.fold import apply_event
from eventstore.plan import Action, Condition, Plan
from eventstore.state import ExecutionState
from projections.availability import available_actions

ERROR = ErrorInfo(message="boom", code="http_5xx")


def _state(plan: Plan, *events: Event) -> ExecutionState:
    state = apply_event(None, PlanSubmitted(execution_id="e1", plan=plan))
    for event in events:
        state = apply_event(state, event)
    assert state is not None
    return state


def _done(action_id: str, output: dict[str, object] | None = None) -> Event:
    return ActionCompleted(execution_id="e1", action_id=action_id, attempt=1, output=output or {})


def _failed(action_id: str) -> Event:
    return ActionFailed(execution_id="e1", action_id=action_id, attempt=1, error=ERROR)


CHAIN = Plan(
    id="p",
    actions=[
        Action(id="a", type="noop"),
        Action(id="b", type="noop", depends_on=["a"]),
        Action(id="fallback", type="noop", depends_on=["a"], run_if="always"),
    ],
)


def test_roots_first_then_dependents_of_completed_actions() -> None:
    assert available_actions(_state(CHAIN)) == ["a"]
    assert available_actions(_state(CHAIN, _done("a"))) == ["b", "fallback"]


def test_dispatched_actions_are_no_longer_available() -> None:
    dispatched = ActionExecuteRequested(
        execution_id="e1", action_id="a", action_type="noop", queue="noop"
    )
    assert available_actions(_state(CHAIN, dispatched)) == []


def test_a_failed_dependency_leaves_only_fallbacks() -> None:
    assert available_actions(_state(CHAIN, _failed("a"))) == ["fallback"]


def test_a_skipped_dependency_holds_back_ordinary_dependents() -> None:
    skipped = ActionSkipped(execution_id="e1", action_id="a", reason="condition_false")
    assert available_actions(_state(CHAIN, skipped)) == ["fallback"]


def test_a_failing_execution_starts_nothing_new_unless_failure_is_allowed() -> None:
    plan = Plan(
        id="p",
        actions=[
            Action(id="x", type="noop"),
            Action(id="y", type="noop"),
            Action(id="z", type="noop", depends_on=["y"]),
        ],
    )
    tolerant = Plan(
        id="p",
        actions=[
            Action(id="x", type="noop", continue_on_error=True),
            Action(id="y", type="noop"),
            Action(id="z", type="noop", depends_on=["y"]),
        ],
    )

    assert available_actions(_state(plan, _failed("x"), _done("y"))) == []
    assert available_actions(_state(tolerant, _failed("x"), _done("y"))) == ["z"]


def test_when_conditions_must_hold() -> None:
    plan = Plan(
        id="p",
        actions=[
            Action(id="fetch", type="noop"),
            Action(
                id="premium",
                type="noop",
                depends_on=["fetch"],
                when=Condition(path="actions.fetch.output.tier", equals="gold"),
            ),
            Action(
                id="basic",
                type="noop",
                depends_on=["fetch"],
                when=Condition(path="actions.fetch.output.tier", not_equals="gold"),
            ),
        ],
    )

    assert available_actions(_state(plan, _done("fetch", {"tier": "gold"}))) == ["premium"]
    assert available_actions(_state(plan, _done("fetch", {"tier": "free"}))) == ["basic"]
