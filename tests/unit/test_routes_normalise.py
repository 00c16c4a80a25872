"""Error routes as graph edges: ``with_routes``, and the state the fold builds from it."""

from __future__ import annotations

from typing import Any

from eventstore.events import (
    ActionCompleted,
    ActionExecuteRequested,
    ActionFailed,
    ActionSkipped,
    ErrorInfo,
    Event,
    PlanSubmitted,
)
from eventstore.fold import apply_event, blocking_failures
from eventstore.plan import Action, Plan
from eventstore.routes import route_sources, routes_by_source, skip_for, with_routes
from eventstore.state import ActionState, ActionStatus, ExecutionState

ERROR = ErrorInfo(message="HTTP 500", code="http_5xx", status_code=500)


def noop(action_id: str, *deps: str, **fields: Any) -> Action:
    return Action(id=action_id, type="noop", depends_on=list(deps), **fields)


PLAN = Plan(
    id="p",
    actions=[
        noop("charge", on_error=["notify-ops", "refund"]),
        noop("ship", "charge"),
        noop("notify-ops"),
        noop("refund", "ship", run_if="failed"),
    ],
)


def test_a_listed_route_depends_on_the_action_and_runs_if_it_failed() -> None:
    plan = with_routes(PLAN)

    assert plan.action("notify-ops").depends_on == ["charge"]
    assert plan.action("notify-ops").run_if == "failed"
    assert plan.action("refund").depends_on == ["ship", "charge"]
    assert plan.action("refund").run_if == "failed"
    assert plan.action("ship") is PLAN.action("ship")  # untouched actions stay as they are


def test_normalising_is_idempotent_and_a_plan_without_routes_is_returned_as_is() -> None:
    once = with_routes(PLAN)
    plain = Plan(id="p", actions=[noop("a"), noop("b", "a", run_if="always")])

    assert with_routes(once) is once
    assert with_routes(plain) is plain


def test_a_route_listed_twice_depends_on_both_actions_once() -> None:
    plan = with_routes(
        Plan(
            id="p",
            actions=[
                noop("a", on_error=["alert", "alert"]),
                noop("b", on_error=["alert"]),
                noop("alert", "a"),
            ],
        )
    )

    assert plan.action("alert").depends_on == ["a", "b"]


def test_unknown_and_self_listings_are_left_to_validation() -> None:
    actions = [noop("a", on_error=["a", "ghost", "b"]), noop("b")]

    assert route_sources(actions) == {"b": ["a"]}
    assert with_routes(Plan(id="p", actions=actions)).action("a").depends_on == []


def test_the_fold_keeps_the_normalised_plan_and_the_routes_of_the_view() -> None:
    state = apply_event(None, PlanSubmitted(execution_id="e1", plan=PLAN))

    assert state is not None and state.plan is not None
    assert state.plan == with_routes(PLAN)
    assert state.routes == {"notify-ops": ["charge"], "refund": ["ship", "charge"]}
    assert routes_by_source(state.plan) == state.routes


def _fold(plan: Plan, *events: Event, keep_plan: bool = True) -> ExecutionState:
    state = apply_event(None, PlanSubmitted(execution_id="e1", plan=plan))
    assert state is not None
    if not keep_plan:
        state.plan = None  # what the projector holds between batches: the view has no plan
    for event in events:
        state = apply_event(state, event)
        assert state is not None
    return state


def _requested(action_id: str) -> ActionExecuteRequested:
    return ActionExecuteRequested(
        execution_id="e1", action_id=action_id, action_type="noop", queue="noop"
    )


def test_handled_by_is_set_when_a_route_runs_even_without_the_plan() -> None:
    events = [
        _requested("charge"),
        ActionFailed(execution_id="e1", action_id="charge", attempt=1, error=ERROR),
        _requested("notify-ops"),
    ]
    for keep_plan in (True, False):
        state = _fold(PLAN, *events, keep_plan=keep_plan)
        assert state.actions["charge"].handled_by == "notify-ops"


def test_handled_by_names_the_first_route_in_plan_order_that_ran() -> None:
    failed = ActionFailed(execution_id="e1", action_id="charge", attempt=1, error=ERROR)
    skipped = ActionSkipped(execution_id="e1", action_id="ship", reason="dependency_failed")
    refund = _requested("refund")
    notify_skipped = ActionSkipped(
        execution_id="e1", action_id="notify-ops", reason="condition_false"
    )

    state = _fold(PLAN, failed, skipped, refund)
    assert state.actions["charge"].handled_by == "refund"
    assert blocking_failures(state) == []

    state = _fold(PLAN, failed, skipped, refund, _requested("notify-ops"))
    assert state.actions["charge"].handled_by == "notify-ops"

    state = _fold(PLAN, failed, skipped, notify_skipped)
    assert state.actions["charge"].handled_by is None
    assert blocking_failures(state) == []  # refund is still undecided: it will decide


def test_a_failure_whose_routes_all_skipped_blocks() -> None:
    state = _fold(
        PLAN,
        ActionFailed(execution_id="e1", action_id="charge", attempt=1, error=ERROR),
        ActionSkipped(execution_id="e1", action_id="ship", reason="dependency_failed"),
        ActionSkipped(execution_id="e1", action_id="notify-ops", reason="condition_false"),
        ActionSkipped(execution_id="e1", action_id="refund", reason="condition_false"),
    )

    assert state.actions["charge"].handled_by is None
    assert blocking_failures(state) == ["charge"]


def test_continue_on_error_does_not_block_without_a_route() -> None:
    plan = Plan(id="p", actions=[noop("a", continue_on_error=True), noop("b", "a")])
    state = _fold(plan, ActionFailed(execution_id="e1", action_id="a", attempt=1, error=ERROR))

    assert blocking_failures(state) == []
    assert state.actions["a"].handled_by is None


def _ended(status: ActionStatus) -> ActionState:
    return ActionState(action_id=status, status=status)


def test_skip_for_says_how_the_dependencies_allow_each_run_if() -> None:
    done, failed, skipped = _ended("completed"), _ended("failed"), _ended("skipped")
    cancelled = _ended("cancelled")

    assert skip_for(noop("x"), [done, done]) is None
    assert skip_for(noop("x"), [done, skipped]) == (
        "dependency_skipped",
        "dependency skipped skipped",
    )
    assert skip_for(noop("x"), [skipped, failed]) == (
        "dependency_failed",
        "dependency failed failed",
    )
    assert skip_for(noop("x", run_if="failed"), [done, failed]) is None
    assert skip_for(noop("x", run_if="failed"), [cancelled]) is None
    reason = skip_for(noop("x", run_if="failed"), [done, skipped])
    assert reason is not None and reason[0] == "no_failure"
    assert skip_for(noop("x", run_if="always"), [failed, skipped, done]) is None


def test_a_completed_run_after_the_failure_does_not_change_who_handled_it() -> None:
    state = _fold(
        PLAN,
        ActionFailed(execution_id="e1", action_id="charge", attempt=1, error=ERROR),
        _requested("notify-ops"),
        ActionCompleted(execution_id="e1", action_id="notify-ops", attempt=1, output={}),
    )

    assert state.actions["charge"].handled_by == "notify-ops"
    assert state.actions["charge"].status == "failed"
