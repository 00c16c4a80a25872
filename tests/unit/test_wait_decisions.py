"""Waitpoints and sleeps in the pure core: validation, fold, decide and guards."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from eventstore import fold
from eventstore.errors import PlanValidationError
from eventstore.events import (
    ActionCompleted,
    ActionExecuteRequested,
    ActionFailed,
    ActionResumeRequested,
    ActionTimerFired,
    ActionWaiting,
    Event,
    ExecutionCancelRequested,
    ExecutionCompleted,
    ExecutionFailed,
    PlanSubmitted,
)
from eventstore.payload_reading import PayloadNeeded, PayloadReader, reading_payloads
from eventstore.payloads import encode_payload
from eventstore.plan_validation import parse_plan
from eventstore.records import RecordedEvent
from eventstore.state import ExecutionState
from orchestrator.decide import decide
from orchestrator.guards import guard_for

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
SCHEMA = {
    "type": "object",
    "required": ["approved"],
    "properties": {"approved": {"type": "boolean"}},
}


def tokens(execution: str, action: str) -> str:
    return f"{execution}.{action}.secret-token"


def plan(*actions: dict[str, Any]) -> Any:
    return parse_plan(json.dumps({"id": "p", "actions": list(actions)}).encode())


def problems(*actions: dict[str, Any]) -> list[str]:
    with pytest.raises(PlanValidationError) as caught:
        plan(*actions)
    return caught.value.problems


def start(*actions: dict[str, Any]) -> tuple[ExecutionState, list[Event]]:
    submitted = PlanSubmitted(execution_id="e", plan=plan(*actions))
    state = fold.apply_event(None, submitted)
    assert state is not None
    decisions = decide(state, submitted, now=NOW, tokens=tokens)
    for decision in decisions:
        fold.apply_event(state, decision)
    return state, decisions


def step(state: ExecutionState, event: Event) -> list[Event]:
    fold.apply_event(state, event)
    decisions = decide(state, event, now=NOW, tokens=tokens)
    for decision in decisions:
        fold.apply_event(state, decision)
    return decisions


APPROVE = {"id": "approve", "type": "wait", "timeout_s": 60, "schema": SCHEMA}


def test_wait_and_sleep_fields_are_validated() -> None:
    found = problems(
        {"id": "a", "type": "sleep"},
        {"id": "b", "type": "sleep", "duration_s": 1, "until": "2030-01-01T00:00:00Z"},
        {"id": "c", "type": "sleep", "until": "tomorrow"},
        {"id": "d", "type": "wait", "schema": {"type": 12}},
        {"id": "e", "type": "wait", "request": {"url": "http://x/"}},
        {"id": "f", "request": {"url": "http://x/"}, "duration_s": 3},
        {"id": "g", "request": {"url": "http://x/{{actions.f.token}}"}},
    )
    assert any('"a": a "sleep" action needs exactly one' in p for p in found)
    assert any('"b": a "sleep" action needs exactly one' in p for p in found)
    assert any('"c": until: "tomorrow" is not an ISO-8601 time' in p for p in found)
    assert any('"d": schema is not a valid JSON Schema' in p for p in found)
    assert any('"e": request: a "wait" action is run by the orchestrator' in p for p in found)
    assert any('"f": duration_s: only actions of type "wait" or "sleep"' in p for p in found)
    assert any('"g"' in p and 'only actions of type "wait" have a token' in p for p in found)


def test_a_token_user_must_not_run_before_its_waitpoint() -> None:
    found = problems(
        {"id": "ask", "request": {"url": "http://x/?t={{actions.approve.token}}"}},
        {"id": "approve", "type": "wait", "depends_on": ["ask"]},
    )
    assert any("runs before the waitpoint" in p for p in found)


def test_a_waitpoint_waits_and_its_token_is_handed_out_in_the_same_decision() -> None:
    state, decisions = start(
        {"id": "ask", "request": {"url": "http://x/ask?t={{actions.approve.token}}"}}, APPROVE
    )
    waiting = next(d for d in decisions if isinstance(d, ActionWaiting))
    assert waiting.until == "2030-01-01T12:01:00.000000Z" and waiting.schema == SCHEMA
    [dispatch] = [d for d in decisions if isinstance(d, ActionExecuteRequested)]
    assert dispatch.request is not None
    assert dispatch.request.url == "http://x/ask?t=e.approve.secret-token"
    assert state.actions["approve"].status == "waiting" and state.status == "running"
    assert state.counts.waiting == 1


def test_nothing_completes_while_an_action_waits() -> None:
    state, _ = start(APPROVE, {"id": "after", "request": {"url": "http://x/"}})
    done = ActionCompleted(execution_id="e", action_id="after", attempt=1, output={})
    assert not any(isinstance(d, ExecutionCompleted) for d in step(state, done))


def test_resume_data_becomes_the_output_and_the_dependents_run() -> None:
    state, _ = start(
        APPROVE,
        {
            "id": "send",
            "request": {"url": "http://x/{{actions.approve.output.approved}}"},
            "depends_on": ["approve"],
        },
    )
    resume = ActionResumeRequested(execution_id="e", action_id="approve", data={"approved": True})
    outcome, dispatch = step(state, resume)
    assert isinstance(outcome, ActionCompleted) and outcome.output == {"approved": True}
    assert outcome.causation_id == resume.event_id
    assert isinstance(dispatch, ActionExecuteRequested)
    assert dispatch.request is not None and dispatch.request.url == "http://x/true"
    # The outcome coming back through the consumer decides nothing more.
    assert step(state, outcome) == []


def test_data_that_fails_the_schema_is_refused_and_the_wait_goes_on() -> None:
    state, _ = start(APPROVE)
    bad = ActionResumeRequested(execution_id="e", action_id="approve", data={"approved": "yes"})
    assert step(state, bad) == []
    wait = state.actions["approve"].wait
    assert wait is not None and wait.refused is not None
    assert "data.approved: 'yes' is not of type 'boolean'" in wait.refused
    good = ActionResumeRequested(execution_id="e", action_id="approve", data={"approved": False})
    assert isinstance(step(state, good)[0], ActionCompleted)


def test_resume_data_stored_by_reference_is_checked_against_the_schema_once_fetched() -> None:
    good, bad = {"approved": True}, {"approved": "yes"}
    reader = PayloadReader()
    for value in (good, bad):
        reader.add(encode_payload(value).ref, value)
    for value, expected in ((good, ActionCompleted), (bad, ActionFailed)):
        state, _ = start(APPROVE)
        marker = encode_payload(value).ref.marker()
        resume = ActionResumeRequested(execution_id="e", action_id="approve", data=marker)
        fold.apply_event(state, resume)
        with pytest.raises(PayloadNeeded):  # the fold cannot look inside: the decision fetches
            decide(state, resume, now=NOW, tokens=tokens)
        with reading_payloads(reader):
            outcome = decide(state, resume, now=NOW, tokens=tokens)[0]
        assert isinstance(outcome, expected)
        if isinstance(outcome, ActionFailed):
            assert outcome.error.code == "output_invalid"
            assert "data.approved: 'yes' is not of type 'boolean'" in outcome.error.message
        else:
            assert outcome.output == marker  # the output stays the reference


def test_a_second_resume_and_a_late_timeout_change_nothing() -> None:
    state, _ = start(APPROVE)
    first = ActionResumeRequested(execution_id="e", action_id="approve", reject="no budget")
    outcome, end = step(state, first)
    assert isinstance(end, ExecutionFailed) and end.failed_actions == ["approve"]
    assert isinstance(outcome, ActionFailed) and outcome.error.code == "rejected"
    assert outcome.error.message == "no budget"
    again = ActionResumeRequested(execution_id="e", action_id="approve", data={"approved": True})
    assert step(state, again) == []
    late = ActionTimerFired(execution_id="e", action_id="approve", kind="timeout", due_at="x")
    assert step(state, late) == []
    assert state.actions["approve"].status == "failed"


def test_the_timeout_fails_the_waitpoint_and_a_racing_resume_gets_the_same_event_id() -> None:
    state, _ = start(APPROVE)
    fired = ActionTimerFired(execution_id="e", action_id="approve", kind="timeout", due_at="x")
    twin, _ = start(APPROVE)
    timeout = step(state, fired)[0]
    resume = ActionResumeRequested(execution_id="e", action_id="approve", data={"approved": True})
    resumed = step(twin, resume)[0]
    assert isinstance(timeout, ActionFailed) and timeout.error.code == "timeout"
    assert timeout.event_id == resumed.event_id  # the log's dedupe keeps only the first


def test_a_wrong_token_is_refused() -> None:
    state, _ = start(APPROVE)
    forged = ActionResumeRequested(
        execution_id="e", action_id="approve", data={"approved": True}, token="e.approve.guess"
    )
    assert step(state, forged) == []
    wait = state.actions["approve"].wait
    assert wait is not None and wait.refused == "the token does not match this waitpoint"


def test_a_sleep_wakes_on_its_timer_and_not_on_a_resume() -> None:
    state, decisions = start({"id": "nap", "type": "sleep", "duration_s": 3600})
    [waiting] = decisions
    assert isinstance(waiting, ActionWaiting) and waiting.reason == "sleep"
    assert waiting.until == "2030-01-01T13:00:00.000000Z" and waiting.token is None
    resume = ActionResumeRequested(execution_id="e", action_id="nap")
    assert step(state, resume) == []
    wrong = ActionTimerFired(execution_id="e", action_id="nap", kind="timeout", due_at="x")
    assert step(state, wrong) == []
    wake = ActionTimerFired(execution_id="e", action_id="nap", kind="wake", due_at="x")
    woke, end = step(state, wake)
    assert isinstance(woke, ActionCompleted) and isinstance(end, ExecutionCompleted)
    assert woke.output == {"slept_until": "2030-01-01T13:00:00.000000Z"}


def test_a_sleep_until_a_past_time_ends_in_the_same_decision() -> None:
    past = (NOW - timedelta(hours=1)).isoformat()
    _, decisions = start(
        {"id": "nap", "type": "sleep", "until": past},
        {"id": "after", "request": {"url": "http://x/"}, "depends_on": ["nap"]},
    )
    kinds = [type(d).__name__ for d in decisions]
    assert kinds == ["ActionWaiting", "ActionCompleted", "ActionExecuteRequested"]


def test_until_from_a_template() -> None:
    submitted_plan = {"id": "nap", "type": "sleep", "until": "{{input.at}}"}
    document = {"id": "p", "input": {"at": "2030-01-02T00:00:00Z"}, "actions": [submitted_plan]}
    submitted = PlanSubmitted(execution_id="e", plan=parse_plan(json.dumps(document).encode()))
    state = fold.apply_event(None, submitted)
    [waiting] = decide(state, submitted, now=NOW, tokens=tokens)
    assert isinstance(waiting, ActionWaiting) and waiting.until == "2030-01-02T00:00:00.000000Z"


def test_a_timer_that_fires_before_its_wait_is_stored_still_counts() -> None:
    submitted = PlanSubmitted(
        execution_id="e", plan=plan({"id": "nap", "type": "sleep", "duration_s": 5})
    )
    state = fold.apply_event(None, submitted)
    assert state is not None
    [waiting] = decide(state, submitted, now=NOW, tokens=tokens)
    fold.apply_event(
        state, ActionTimerFired(execution_id="e", action_id="nap", kind="wake", due_at="x")
    )
    fold.apply_event(state, waiting)
    wait = state.actions["nap"].wait
    assert wait is not None and wait.timer == "wake"


def test_cancelling_an_execution_cancels_its_waits() -> None:
    state, _ = start(APPROVE)
    request = ExecutionCancelRequested(execution_id="e", reason="user")
    decisions = step(state, request)
    assert [type(d).__name__ for d in decisions] == ["ActionCancelled", "ExecutionCancelled"]


def test_the_outcome_is_guarded_on_the_waiting_event_being_the_last() -> None:
    submitted = PlanSubmitted(execution_id="e", plan=plan(APPROVE))
    state = fold.apply(None, RecordedEvent(1, "plan.submitted.e", submitted))
    assert state is not None
    [waiting] = decide(state, submitted, now=NOW, tokens=tokens)
    fold.apply(state, RecordedEvent(7, "action.waiting.e.approve", waiting))
    resume = ActionResumeRequested(execution_id="e", action_id="approve", data={"approved": True})
    fold.apply(state, RecordedEvent(9, "action.resume.requested.e.approve", resume))
    outcome = decide(state, resume, now=NOW, tokens=tokens)[0]
    guard = guard_for(outcome, state)
    assert (guard.last_sequence, guard.subject) == (7, "action.*.e.approve")
