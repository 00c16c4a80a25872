"""``decide`` with error routes: who runs after a failure, and when the execution completes."""

from __future__ import annotations

from typing import Any

from test_decide import Run, http, requested, skipped

from eventstore.events import (
    ActionCancelled,
    ActionCompleted,
    ActionExecuteRequested,
    ActionFailed,
    ErrorInfo,
    Event,
    ExecutionCompleted,
    ExecutionFailed,
    PlanSubmitted,
)
from eventstore.fold import apply_event, fold
from eventstore.plan import Condition, Plan, RequestSpec
from eventstore.records import RecordedEvent
from eventstore.state import ExecutionState
from projections.availability import available_actions

NOTIFY = RequestSpec(
    method="POST",
    url="http://ops/notify",
    json={
        "code": "{{actions.charge.error.code}}",
        "message": "{{actions.charge.error.message}}",
        "status": "{{actions.charge.error.status_code}}",
    },
)


def route_plan(**notify: Any) -> Plan:
    return Plan(
        id="routes",
        actions=[
            http("charge", on_error=["notify-ops"]),
            http("receipt", "charge"),
            http("notify-ops", **{"request": NOTIFY, **notify}),
        ],
    )


def _request(events: list[Event], action_id: str) -> ActionExecuteRequested:
    [request] = [
        e for e in events if isinstance(e, ActionExecuteRequested) and e.action_id == action_id
    ]
    return request


def test_the_route_runs_with_the_error_and_the_execution_completes_handled() -> None:
    run = Run(route_plan())
    assert requested(run.first) == ["charge"]

    decisions = run.fail("charge")

    assert requested(decisions) == ["notify-ops"]
    assert skipped(decisions) == {"receipt": "dependency_failed"}
    request = _request(decisions, "notify-ops").request
    assert request is not None
    assert request.json == {"code": "http_5xx", "message": "boom", "status": 500}
    assert run.status == "running"
    assert isinstance(run.complete("notify-ops")[-1], ExecutionCompleted)
    assert run.state is not None
    assert run.state.actions["charge"].handled_by == "notify-ops"
    assert run.state.actions["charge"].status == "failed"


def test_the_route_is_skipped_when_the_action_succeeds() -> None:
    run = Run(route_plan())
    decisions = run.complete("charge")

    assert requested(decisions) == ["receipt"]
    assert skipped(decisions) == {"notify-ops": "no_failure"}
    assert isinstance(run.complete("receipt")[-1], ExecutionCompleted)


def test_a_route_skipped_by_its_condition_leaves_the_failure_unhandled() -> None:
    never = Condition(path="actions.charge.error.code", equals="http_4xx")
    run = Run(route_plan(when=never))

    decisions = run.fail("charge")

    assert skipped(decisions) == {"receipt": "dependency_failed", "notify-ops": "condition_false"}
    end = decisions[-1]
    assert isinstance(end, ExecutionFailed) and end.failed_actions == ["charge"]
    assert run.state is not None and run.state.actions["charge"].handled_by is None


def test_the_routes_own_failure_fails_the_execution() -> None:
    run = Run(route_plan())
    run.fail("charge")

    decisions = run.fail("notify-ops")

    end = decisions[-1]
    assert isinstance(end, ExecutionFailed) and end.failed_actions == ["notify-ops"]
    assert run.state is not None and run.state.actions["charge"].handled_by == "notify-ops"


def test_a_route_whose_request_cannot_be_built_still_handled_the_failure() -> None:
    broken = RequestSpec(url="http://ops/{{actions.charge.output.nothing}}")
    run = Run(route_plan(request=broken))

    decisions = run.fail("charge")

    failed = [e for e in decisions if isinstance(e, ActionFailed)]
    assert [(e.action_id, e.error.code) for e in failed] == [("notify-ops", "invalid_request")]
    end = decisions[-1]
    assert isinstance(end, ExecutionFailed) and end.failed_actions == ["notify-ops"]


def test_run_if_always_runs_after_success_and_handles_a_failure() -> None:
    plan = Plan(id="p", actions=[http("a"), http("cleanup", "a", run_if="always")])

    ok = Run(plan)
    assert requested(ok.complete("a")) == ["cleanup"]
    assert isinstance(ok.complete("cleanup")[-1], ExecutionCompleted)

    failing = Run(plan)
    assert requested(failing.fail("a")) == ["cleanup"]
    assert isinstance(failing.complete("cleanup")[-1], ExecutionCompleted)
    assert failing.state is not None
    assert failing.state.actions["a"].handled_by == "cleanup"


def test_a_dependent_with_run_if_failed_is_an_error_route_too() -> None:
    plan = Plan(id="p", actions=[http("a"), http("b"), http("alert", "a", "b", run_if="failed")])

    run = Run(plan)
    run.complete("a")
    assert requested(run.fail("b")) == ["alert"]
    assert isinstance(run.complete("alert")[-1], ExecutionCompleted)
    assert run.state is not None and run.state.actions["b"].handled_by == "alert"

    quiet = Run(plan)
    quiet.complete("a")
    decisions = quiet.complete("b")
    assert skipped(decisions) == {"alert": "no_failure"}
    assert isinstance(decisions[-1], ExecutionCompleted)


def test_continue_on_error_completes_without_a_route() -> None:
    plan = Plan(id="p", actions=[http("a", continue_on_error=True), http("b", "a"), http("c")])
    run = Run(plan)

    assert skipped(run.fail("a")) == {"b": "dependency_failed"}
    assert isinstance(run.complete("c")[-1], ExecutionCompleted)
    assert run.state is not None and run.state.actions["a"].handled_by is None


def test_an_undecided_route_keeps_the_failure_from_blocking() -> None:
    plan = Plan(
        id="p",
        actions=[
            http("charge", on_error=["notify-ops"]),
            http("lookup"),
            http("later", "lookup"),
            http("notify-ops", "lookup"),
        ],
    )
    run = Run(plan)

    assert requested(run.fail("charge")) == []  # notify-ops waits for lookup
    # Not failing: an independent action still starts, then the route runs.
    assert requested(run.complete("lookup")) == ["later", "notify-ops"]
    run.complete("later")
    assert isinstance(run.complete("notify-ops")[-1], ExecutionCompleted)


def test_a_failing_execution_names_the_failures_whose_routes_never_ran() -> None:
    plan = Plan(
        id="p",
        actions=[
            http("charge", on_error=["notify-ops"]),
            http("lookup"),
            http("enrich", "lookup"),
            http("notify-ops", "enrich"),
            http("z"),
        ],
    )
    run = Run(plan)
    run.fail("charge")
    run.fail("z")  # nothing handles z: nothing new starts, enrich never does

    decisions = run.complete("lookup")

    cancelled = {e.action_id for e in decisions if isinstance(e, ActionCancelled)}
    assert cancelled == {"enrich", "notify-ops"}
    end = decisions[-1]
    assert isinstance(end, ExecutionFailed) and end.failed_actions == ["charge", "z"]
    assert run.state is not None and run.state.status == "failed"
    assert run.state.inconsistent == []


def test_the_first_route_that_runs_handles_the_failure() -> None:
    never = Condition(path="input.page", equals=True)
    plan = Plan(
        id="p",
        actions=[
            http("charge", on_error=["page", "ticket"]),
            http("page", when=never),
            http("ticket"),
        ],
    )
    run = Run(plan)

    decisions = run.fail("charge")

    assert skipped(decisions) == {"page": "condition_false"}
    assert requested(decisions) == ["ticket"]
    assert isinstance(run.complete("ticket")[-1], ExecutionCompleted)
    assert run.state is not None and run.state.actions["charge"].handled_by == "ticket"


def test_a_state_rebuilt_from_the_log_agrees() -> None:
    run = Run(route_plan())
    run.fail("charge")
    run.complete("notify-ops")
    records = [RecordedEvent(n + 1, "s", e) for n, e in enumerate(run.history)]

    rebuilt = fold(records)

    assert rebuilt is not None and rebuilt.status == "completed"
    assert rebuilt.actions["charge"].handled_by == "notify-ops"
    assert rebuilt.inconsistent == []


def _folded(plan: Plan, *events: Event) -> ExecutionState:
    state = apply_event(None, PlanSubmitted(execution_id="e1", plan=plan))
    for event in events:
        state = apply_event(state, event)
    assert state is not None
    return state


def test_available_actions_follow_run_if_on_the_plan_as_submitted() -> None:
    plan = route_plan()
    error = ErrorInfo(message="boom", code="http_5xx")
    failed = _folded(
        plan, ActionFailed(execution_id="e1", action_id="charge", attempt=1, error=error)
    )
    done = _folded(
        plan, ActionCompleted(execution_id="e1", action_id="charge", attempt=1, output={})
    )

    assert available_actions(_folded(plan)) == ["charge"]
    assert available_actions(failed) == ["notify-ops"]
    assert available_actions(done) == ["receipt"]
    # The StateManager sets the plan as submitted (from the log): the routes are found alike.
    failed.plan = plan
    assert available_actions(failed) == ["notify-ops"]
