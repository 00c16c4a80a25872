"""Error routes over random DAGs with random failures: ``decide`` always ends, and ends right.

The plans mix ``run_if`` (success, failed, always), ``on_error`` listings, ``continue_on_error``
and queue caps; the executor is simulated with random outcomes in random order. The oracle
below says what "handled" means without asking :mod:`eventstore.routes`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from eventstore.events import (
    ActionCancelled,
    ActionCompleted,
    ActionExecuteRequested,
    ActionFailed,
    ActionSkipped,
    ErrorInfo,
    Event,
    ExecutionCancelled,
    ExecutionCancelRequested,
    ExecutionCompleted,
    ExecutionFailed,
    PlanSubmitted,
)
from eventstore.fold import apply_event
from eventstore.plan import Action, Condition, Plan, QueueConfig, RunIf
from eventstore.state import ExecutionState
from orchestrator.decide import decide

QUEUES = ("noop", "other")
FINAL = (ActionCompleted, ActionFailed, ActionSkipped, ActionCancelled)
ENDS = (ExecutionCompleted, ExecutionFailed, ExecutionCancelled)
RUN_IFS: list[RunIf] = ["success", "failed", "always"]


# ------------------------------------------------------------------------------ oracle


def routes_of(plan: Plan) -> dict[str, list[str]]:
    """Action id -> its routes, in plan order: the dependents with ``run_if`` failed or
    always, and the actions it lists in ``on_error``."""
    routes: dict[str, list[str]] = {a.id: [] for a in plan.actions}
    for route in plan.actions:
        sources = [a.id for a in plan.actions if route.id in a.on_error and a.id != route.id]
        if route.run_if == "success" and not sources:
            continue
        for dependency in dict.fromkeys([*route.depends_on, *sources]):
            routes[dependency].append(route.id)
    return routes


def dependencies_of(plan: Plan) -> dict[str, list[str]]:
    """Action id -> what it waits for: ``depends_on`` and the actions listing it."""
    return {
        a.id: list(
            dict.fromkeys([*a.depends_on, *(x.id for x in plan.actions if a.id in x.on_error)])
        )
        for a in plan.actions
    }


def unhandled(plan: Plan, log: list[Event]) -> list[str]:
    """The failures of ``log`` that fail the execution, in plan order: cancelled actions, and
    failed ones without ``continue_on_error`` whose routes all ended without being dispatched."""
    routes = routes_of(plan)
    dispatched = {e.action_id for e in log if isinstance(e, ActionExecuteRequested)}
    ended = {e.action_id for e in log if isinstance(e, FINAL)}
    failed = {e.action_id for e in log if isinstance(e, ActionFailed)}
    cancelled = {e.action_id for e in log if isinstance(e, ActionCancelled)}
    blocking = []
    for spec in plan.actions:
        mine = routes[spec.id]
        if spec.id in cancelled or (
            spec.id in failed
            and not spec.continue_on_error
            and all(r in ended and r not in dispatched for r in mine)
        ):
            blocking.append(spec.id)
    return blocking


def assert_only_routes_start_once_failing(plan: Plan, log: list[Event]) -> None:
    """Once a failure blocks (the oracle), only actions with ``run_if`` failed or always (or
    listed in an ``on_error``) are dispatched."""
    listed = {route for a in plan.actions for route in a.on_error}
    routes = {a.id for a in plan.actions if a.run_if != "success" or a.id in listed}
    for position, event in enumerate(log):
        if isinstance(event, ActionExecuteRequested) and unhandled(plan, log[:position]):
            assert event.action_id in routes, (event.action_id, log[:position])


# ------------------------------------------------------------------------------ plans


@st.composite
def route_plans(draw: st.DrawFn) -> Plan:
    size = draw(st.integers(min_value=1, max_value=8))
    drafts: list[dict[str, Any]] = []
    for i in range(size):
        deps = draw(st.lists(st.sampled_from(range(i)), unique=True, max_size=3)) if i else []
        later = list(range(i + 1, size))
        on_error = draw(st.lists(st.sampled_from(later), unique=True, max_size=2)) if later else []
        conditions: list[Condition | None] = [None, Condition(path="input.flag", equals=True)]
        if deps:
            conditions.append(Condition(path=f"actions.a{deps[0]}.status", equals="failed"))
        drafts.append(
            {
                "id": f"a{i}",
                "type": "noop",
                "depends_on": [f"a{d}" for d in deps],
                "on_error": [f"a{j}" for j in on_error],
                "run_if": draw(st.sampled_from(RUN_IFS)),
                "continue_on_error": draw(st.booleans()),
                "when": draw(st.sampled_from(conditions)),
                "queue": draw(st.sampled_from(QUEUES)),
            }
        )
    listed = {route for draft in drafts for route in draft["on_error"]}
    for draft in drafts:
        if draft["id"] in listed and draft["run_if"] == "always":
            draft["run_if"] = "failed"  # "always" on a listed route is a validation error
    limits = draw(st.dictionaries(st.sampled_from(QUEUES), st.integers(min_value=1, max_value=3)))
    return Plan(
        id="routes",
        input={"flag": draw(st.booleans())},
        actions=[Action(**draft) for draft in drafts],
        queues={q: QueueConfig(concurrency_limit=n) for q, n in limits.items()},
    )


def _feed(state: ExecutionState | None, event: Event, log: list[Event]) -> ExecutionState | None:
    state = apply_event(state, event)
    log.append(event)
    for decision in decide(state, event):
        state = apply_event(state, decision)
        log.append(decision)
    assert decide(state, event) == [], "deciding again on the same event must add nothing"
    return state


def _outcome(action_id: str, succeeded: bool) -> Event:
    if succeeded:
        return ActionCompleted(execution_id="e1", action_id=action_id, attempt=1, output={})
    error = ErrorInfo(message=f"{action_id} broke", code="http_5xx")
    return ActionFailed(execution_id="e1", action_id=action_id, attempt=1, error=error)


# ------------------------------------------------------------------------------ property


@given(route_plans(), st.data())
@settings(max_examples=400, deadline=None)
def test_routes_end_every_execution_right(plan: Plan, data: Any) -> None:
    log: list[Event] = []
    state = _feed(None, PlanSubmitted(execution_id="e1", plan=plan), log)
    cancel_at = data.draw(st.one_of(st.none(), st.integers(min_value=0, max_value=8)))
    steps = 0
    while state is not None and not state.terminal:
        assert steps <= len(plan.actions), "decide did not terminate"
        in_flight = [
            a.action_id
            for a in state.actions.values()
            if a.dispatched_at is not None and not a.finished
        ]
        assert in_flight, f"stuck: nothing in flight and not terminal ({state.actions})"
        if steps == cancel_at:
            state = _feed(state, ExecutionCancelRequested(execution_id="e1", reason="r"), log)
            continue
        action_id = data.draw(st.sampled_from(in_flight))
        state = _feed(state, _outcome(action_id, data.draw(st.booleans())), log)
        steps += 1

    assert state is not None
    # Every action ends in exactly one final status, each dispatched at most once.
    finals = Counter(e.action_id for e in log if isinstance(e, FINAL))
    assert finals == Counter(a.id for a in plan.actions)
    assert all(a.finished for a in state.actions.values())
    dispatched = Counter(e.action_id for e in log if isinstance(e, ActionExecuteRequested))
    assert set(dispatched.values()) <= {1}
    ends = [e for e in log if isinstance(e, ENDS)]
    assert len(ends) == 1 and log[-1] is ends[0]

    # The execution completes exactly when no failure is unhandled.
    blocking = unhandled(plan, log)
    end = ends[0]
    if isinstance(end, ExecutionCancelled):
        assert cancel_at is not None
    elif blocking:
        assert isinstance(end, ExecutionFailed)
        assert end.failed_actions == [a for a in blocking if state.actions[a].status == "failed"]
    else:
        assert isinstance(end, ExecutionCompleted)
    assert_only_routes_start_once_failing(plan, log)

    # handled_by names the first route (plan order) that ran for a failure.
    routes = routes_of(plan)
    for action in state.actions.values():
        ran = [r for r in routes[action.action_id] if r in dispatched]
        expected = ran[0] if action.status == "failed" and ran else None
        assert action.handled_by == expected, (action.action_id, ran)

    # An error route runs exactly when a dependency failed; otherwise it is skipped.
    dependencies = dependencies_of(plan)
    for spec in state.plan.actions if state.plan else []:
        if spec.run_if != "failed":
            continue
        failed = [
            d for d in dependencies[spec.id] if state.actions[d].status in ("failed", "cancelled")
        ]
        action = state.actions[spec.id]
        if spec.id in dispatched:
            assert failed, spec.id
        if action.skip_reason == "no_failure":
            assert not failed and all(state.actions[d].finished for d in dependencies[spec.id])
