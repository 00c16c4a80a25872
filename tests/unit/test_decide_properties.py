"""``decide`` over random DAGs and random outcome orders: it always ends, and ends right.

Actions go to two queues, each optionally capped by the plan (``concurrency_limit``): the cap
never lets more actions of a queue be in flight, and never leaves the execution stuck.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from test_routes_properties import assert_only_routes_start_once_failing, unhandled

from eventstore.events import (
    ActionCompleted,
    ActionExecuteRequested,
    ActionFailed,
    ErrorInfo,
    Event,
    ExecutionCancelled,
    ExecutionCancelRequested,
    ExecutionCompleted,
    ExecutionFailed,
    PlanSubmitted,
)
from eventstore.fold import apply_event
from eventstore.plan import Action, Condition, Plan, QueueConfig
from eventstore.state import ExecutionState
from orchestrator.decide import decide

TERMINAL = (ExecutionCompleted, ExecutionFailed, ExecutionCancelled)
QUEUES = ("noop", "other")


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    size = draw(st.integers(min_value=1, max_value=8))
    actions = []
    for i in range(size):
        deps = draw(st.lists(st.sampled_from(range(i)), unique=True, max_size=3)) if i else []
        when = draw(
            st.sampled_from(
                [
                    None,
                    Condition(path="input.flag", equals=True),
                    Condition(path="input.flag", equals=False),
                    *(
                        [Condition(path=f"actions.a{deps[0]}.status", equals="failed")]
                        if deps
                        else []
                    ),
                ]
            )
        )
        actions.append(
            Action(
                id=f"a{i}",
                type="noop",
                depends_on=[f"a{d}" for d in deps],
                when=when,
                continue_on_error=draw(st.booleans()),
                run_if=draw(st.sampled_from(["success", "always"])),
                queue=draw(st.sampled_from(QUEUES)),
            )
        )
    limits = draw(st.dictionaries(st.sampled_from(QUEUES), st.integers(min_value=1, max_value=3)))
    return Plan(
        id="random",
        input={"flag": draw(st.booleans())},
        actions=actions,
        queues={q: QueueConfig(concurrency_limit=n) for q, n in limits.items()},
    )


def _assert_within_caps(plan: Plan, state: ExecutionState | None) -> None:
    if state is None:
        return
    for queue, config in plan.queues.items():
        busy = [
            a.action_id
            for a in state.actions.values()
            if a.queue == queue and a.dispatched_at is not None and not a.finished
        ]
        assert config.concurrency_limit is not None
        assert len(busy) <= config.concurrency_limit, (queue, busy)


def _feed(state: ExecutionState | None, event: Event, log: list[Event]) -> ExecutionState | None:
    state = apply_event(state, event)
    log.append(event)
    decisions = decide(state, event)
    for decision in decisions:
        state = apply_event(state, decision)
        log.append(decision)
    assert decide(state, event) == [], "deciding again on the same event must add nothing"
    return state


@given(plans(), st.data())
@settings(max_examples=300, deadline=None)
def test_every_execution_ends_and_each_action_runs_at_most_once(plan: Plan, data: Any) -> None:
    log: list[Event] = []
    state = _feed(None, PlanSubmitted(execution_id="e1", plan=plan), log)
    _assert_within_caps(plan, state)
    outcomes: dict[str, bool] = {}
    cancel_at = data.draw(st.one_of(st.none(), st.integers(min_value=0, max_value=8)))
    steps = 0
    while state is not None and not state.terminal:
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
        succeeded = data.draw(st.booleans())
        outcomes[action_id] = succeeded
        event: Event = (
            ActionCompleted(execution_id="e1", action_id=action_id, attempt=1, output={})
            if succeeded
            else ActionFailed(
                execution_id="e1",
                action_id=action_id,
                attempt=1,
                error=ErrorInfo(message="x", code="http_5xx"),
            )
        )
        state = _feed(state, event, log)
        _assert_within_caps(plan, state)
        steps += 1

    assert state is not None
    dispatched = Counter(e.action_id for e in log if isinstance(e, ActionExecuteRequested))
    assert set(dispatched.values()) <= {1}
    ends = [e for e in log if isinstance(e, TERMINAL)]
    assert len(ends) == 1 and log[-1] is ends[0]
    assert state.counts.pending == state.counts.running == 0

    # A failure blocks unless continue_on_error, or a dependent with run_if "always" ran.
    blocking = [a for a in unhandled(plan, log) if state.actions[a].status == "failed"]
    assert set(blocking) <= {a for a, ok in outcomes.items() if not ok}
    if isinstance(ends[0], ExecutionCancelled):
        assert cancel_at is not None
    elif blocking:
        assert isinstance(ends[0], ExecutionFailed)
        assert ends[0].failed_actions == blocking
    else:
        assert isinstance(ends[0], ExecutionCompleted)

    # Once a failure blocks only failure handlers are dispatched.
    assert_only_routes_start_once_failing(plan, log)
