"""The shared fold (``eventstore.fold``): idempotent, always consistent, per-execution."""

from __future__ import annotations

import random
from collections.abc import Iterable

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from eventstore.events import (
    ActionAttemptFailed,
    ActionCancelled,
    ActionCompleted,
    ActionExecuteRequested,
    ActionFailed,
    ActionSkipped,
    ActionStarted,
    ErrorInfo,
    Event,
    ExecutionCancelled,
    ExecutionCancelRequested,
    ExecutionCompleted,
    ExecutionFailed,
    PlanSubmitted,
)
from eventstore.fold import apply, fold, ready_actions
from eventstore.plan import Action, Plan, RequestSpec
from eventstore.records import RecordedEvent
from eventstore.state import ACTION_STATUSES, ExecutionState
from eventstore.subjects import subject_for

ACTION_IDS = ["a", "b", "c", "d"]
ERROR = ErrorInfo(message="boom", code="http_5xx")


def _plan() -> Plan:
    request = RequestSpec(url="http://127.0.0.1:9/x")
    return Plan(
        id="p",
        actions=[
            Action(id="a", request=request),
            Action(id="b", depends_on=["a"], request=request),
            Action(id="c", depends_on=["a"], request=request),
            Action(id="d", depends_on=["b", "c"], request=request),
        ],
    )


def _event(execution_id: str, kind: str, action_id: str, attempt: int) -> Event:
    e, a = execution_id, action_id
    match kind:
        case "requested":
            return ActionExecuteRequested(
                execution_id=e, action_id=a, action_type="http", queue="http"
            )
        case "started":
            return ActionStarted(execution_id=e, action_id=a, attempt=attempt)
        case "attempt_failed":
            return ActionAttemptFailed(
                execution_id=e, action_id=a, attempt=attempt, error=ERROR, retry_in_ms=10
            )
        case "completed":
            return ActionCompleted(
                execution_id=e, action_id=a, attempt=attempt, output={"n": attempt}
            )
        case "failed":
            return ActionFailed(execution_id=e, action_id=a, attempt=attempt, error=ERROR)
        case "skipped":
            return ActionSkipped(execution_id=e, action_id=a, reason="condition_false")
        case "cancelled":
            return ActionCancelled(execution_id=e, action_id=a)
        case "cancel_requested":
            return ExecutionCancelRequested(execution_id=e, reason="stop")
        case "exec_completed":
            return ExecutionCompleted(execution_id=e)
        case "exec_failed":
            return ExecutionFailed(execution_id=e, error=ERROR)
        case _:
            return ExecutionCancelled(execution_id=e)


KINDS = [
    "requested",
    "started",
    "attempt_failed",
    "completed",
    "failed",
    "skipped",
    "cancelled",
    "cancel_requested",
    "exec_completed",
    "exec_failed",
    "exec_cancelled",
]


def histories(execution_id: str) -> st.SearchStrategy[list[Event]]:
    """The plan, then arbitrary events in any order: repeats, late results, out-of-order
    outcomes and action ids the plan does not know."""
    step = st.builds(
        lambda kind, action, attempt: _event(execution_id, kind, action, attempt),
        st.sampled_from(KINDS),
        st.sampled_from([*ACTION_IDS, "unknown"]),
        st.integers(min_value=1, max_value=3),
    )
    submitted = PlanSubmitted(execution_id=execution_id, plan=_plan())
    return st.lists(step, max_size=30).map(lambda steps: [submitted, *steps])


def _records(events: Iterable[Event], start: int = 1) -> list[RecordedEvent]:
    return [RecordedEvent(start + i, subject_for(e), e) for i, e in enumerate(events)]


def _copy(state: ExecutionState) -> ExecutionState:
    return msgspec.json.decode(msgspec.json.encode(state), type=ExecutionState)


def _assert_consistent(state: ExecutionState) -> None:
    counts = state.counts
    assert counts.total == len(state.actions) == len(_plan().actions)
    for status in ACTION_STATUSES:
        actual = sum(1 for a in state.actions.values() if a.status == status)
        assert getattr(counts, status) == actual, status
    if state.status in ("completed", "failed"):
        assert state.completed_at is not None
    if state.status == "cancelled":
        assert counts.pending == counts.running == 0
    for action_id in ready_actions(state):
        assert state.actions[action_id].status == "pending"


@given(histories("e1"))
@settings(max_examples=200, deadline=None)
def test_folding_a_history_twice_equals_folding_it_once(events: list[Event]) -> None:
    records = _records(events)
    once = fold(records)
    assert once is not None

    twice = fold(records, _copy(once))

    assert twice == once


@given(histories("e1"))
@settings(max_examples=200, deadline=None)
def test_every_prefix_folds_to_a_consistent_state(events: list[Event]) -> None:
    state: ExecutionState | None = None
    for record in _records(events):
        state = apply(state, record)
        assert state is not None
        _assert_consistent(state)
        assert state.last_sequence == record.sequence


@given(histories("e1"), histories("e2"), st.randoms(use_true_random=False))
@settings(max_examples=100, deadline=None)
def test_interleaving_of_unrelated_executions_does_not_matter(
    first: list[Event], second: list[Event], rng: random.Random
) -> None:
    lanes = [list(first), list(second)]
    merged: list[Event] = []
    while any(lanes):
        lane = rng.choice([lane for lane in lanes if lane])
        merged.append(lane.pop(0))

    states: dict[str, ExecutionState | None] = {}
    for record in _records(merged):
        eid = record.event.execution_id
        states[eid] = apply(states.get(eid), record)

    for events in (first, second):
        alone = fold(_records(events))
        together = states[events[0].execution_id]
        assert alone is not None and together is not None
        ignored = {"last_sequence", "version", "inconsistent"}
        assert {k: v for k, v in msgspec.structs.asdict(alone).items() if k not in ignored} == {
            k: v for k, v in msgspec.structs.asdict(together).items() if k not in ignored
        }
        # Refused events are noted with their (interleaving-dependent) sequence.
        assert [(i.event_type, i.reason) for i in alone.inconsistent] == [
            (i.event_type, i.reason) for i in together.inconsistent
        ]


def test_events_before_the_plan_are_ignored() -> None:
    early = ActionCompleted(execution_id="e1", action_id="a", attempt=1, output={})
    assert fold(_records([early])) is None


def test_late_result_after_cancellation_changes_nothing() -> None:
    events: list[Event] = [
        PlanSubmitted(execution_id="e1", plan=_plan()),
        ActionStarted(execution_id="e1", action_id="a", attempt=1),
        ExecutionCancelRequested(execution_id="e1", reason="stop"),
        ExecutionCancelled(execution_id="e1", reason="stop"),
        ActionCompleted(execution_id="e1", action_id="a", attempt=1, output={"late": True}),
    ]
    state = fold(_records(events))
    assert state is not None
    assert state.status == "cancelled"
    assert state.actions["a"].status == "cancelled" and state.actions["a"].output is None
    assert state.counts.cancelled == 4
