"""Retries over random DAGs with random failures and routes: every run ends, and ends once.

An execution runs to its end with a simulated executor (random outcomes in random order), is
retried (from random actions, only what failed, or the default) and runs again, up to three
runs. Per run, ``decide`` terminates, each reset action ends in exactly one final status under
its run's key, nothing is dispatched twice, and each run has exactly one end.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from test_routes_properties import FINAL, route_plans

from eventstore.action_keys import action_key, parse_action_key
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
    ExecutionRetried,
    PlanSubmitted,
)
from eventstore.fold import apply_event
from eventstore.plan import Plan
from eventstore.state import ExecutionState
from orchestrator.decide import decide
from projections.errors import RetryRefusedError
from projections.retry import reset_for

ENDS = (ExecutionCompleted, ExecutionFailed, ExecutionCancelled)


def _feed(state: ExecutionState | None, event: Event, log: list[Event]) -> ExecutionState | None:
    state = apply_event(state, event)
    log.append(event)
    for decision in decide(state, event):
        state = apply_event(state, decision)
        log.append(decision)
    return state


def _outcome(key: str, succeeded: bool) -> Event:
    if succeeded:
        return ActionCompleted(execution_id="e1", action_id=key, attempt=1, output={"k": key})
    error = ErrorInfo(message=f"{key} broke", code="http_5xx")
    return ActionFailed(execution_id="e1", action_id=key, attempt=1, error=error)


def _run_to_end(state: ExecutionState, plan: Plan, data: Any, log: list[Event]) -> ExecutionState:
    cancel_at = data.draw(st.one_of(st.none(), st.integers(min_value=0, max_value=8)))
    steps = 0
    while not state.terminal:
        assert steps <= len(plan.actions), "decide did not terminate"
        in_flight = [
            action_key(a.action_id, a.run)
            for a in state.actions.values()
            if a.dispatched_at is not None and not a.finished
        ]
        assert in_flight, f"stuck: nothing in flight and not terminal ({state.actions})"
        if steps == cancel_at:
            cancelled = _feed(state, ExecutionCancelRequested(execution_id="e1"), log)
            assert cancelled is not None
            state = cancelled
            continue
        key = data.draw(st.sampled_from(in_flight))
        next_state = _feed(state, _outcome(key, data.draw(st.booleans())), log)
        assert next_state is not None
        state = next_state
        steps += 1
    return state


def _retry(state: ExecutionState, plan: Plan, data: Any) -> ExecutionRetried | None:
    mode = data.draw(st.sampled_from(["from", "only_failed", "default"]))
    start = [data.draw(st.sampled_from([a.id for a in plan.actions]))] if mode == "from" else []
    try:
        reset = reset_for(state, start, only_failed=mode == "only_failed")
    except RetryRefusedError:
        return None
    return ExecutionRetried(
        execution_id="e1",
        run=state.run + 1,
        reset=reset,
        from_actions=start,
        only_failed=mode == "only_failed",
    )


@given(route_plans(), st.data())
@settings(max_examples=300, deadline=None)
def test_every_run_of_a_retried_execution_ends_once(plan: Plan, data: Any) -> None:
    log: list[Event] = []
    first = _feed(None, PlanSubmitted(execution_id="e1", plan=plan), log)
    assert first is not None
    state = _run_to_end(first, plan, data, log)
    expected: Counter[str] = Counter(a.id for a in plan.actions)
    runs = 1
    while runs < 3:
        retried = _retry(state, plan, data)
        if retried is None:
            break
        runs += 1
        expected.update(action_key(a, retried.run) for a in retried.reset)
        fed = _feed(state, retried, log)
        assert fed is not None and fed.run == runs
        state = _run_to_end(fed, plan, data, log)

    # Every action ends once per run it took part in, under that run's key.
    finals = Counter(e.action_id for e in log if isinstance(e, FINAL))
    assert finals == expected
    dispatched = Counter(e.action_id for e in log if isinstance(e, ActionExecuteRequested))
    assert set(dispatched.values()) <= {1}
    for key in dispatched:
        parsed = parse_action_key(key)
        assert parsed is not None and parsed.item is None and 1 <= parsed.run <= runs
    # One end per run, the last event of the log the last end; event ids never repeat.
    ends = [e for e in log if isinstance(e, ENDS)]
    assert len(ends) == runs and log[-1] is ends[-1]
    decided_ids = [e.event_id for e in log if e.causation_id is not None]
    assert len(decided_ids) == len(set(decided_ids))
    # The state holds the latest run of each action and the earlier ones it took part in,
    # latest first.
    took_part: dict[str, list[int]] = {}
    for key in finals:
        parsed = parse_action_key(key)
        assert parsed is not None
        took_part.setdefault(parsed.action_id, []).append(parsed.run)
    for action in state.actions.values():
        runs_seen = sorted(took_part[action.action_id], reverse=True)
        assert [action.run, *(r.run for r in action.runs)] == runs_seen
        assert action.finished
