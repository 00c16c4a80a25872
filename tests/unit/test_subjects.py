"""Subject layout: type first, execution id as a token, filters that find one execution."""

from __future__ import annotations

import msgspec
from event_samples import ONE_OF_EACH

from eventstore.events import (
    EVENT_TYPES,
    ActionCompleted,
    ActionExecuteRequested,
    ExecutionCancelRequested,
    ExecutionCompleted,
)
from eventstore.subjects import (
    action_version_filter,
    execution_filters,
    execution_id_problem,
    subject_for,
)


def matches(filter_: str, subject: str) -> bool:
    f, s = filter_.split("."), subject.split(".")
    for i, token in enumerate(f):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(f) == len(s)


def one_of_each(execution_id: str) -> list[str]:
    assert len(ONE_OF_EACH) == len(EVENT_TYPES)
    return [
        subject_for(msgspec.structs.replace(event, execution_id=execution_id))
        for event in ONE_OF_EACH
    ]


def test_subjects_start_with_the_event_type_and_carry_the_execution_id() -> None:
    assert subject_for(ActionCompleted(execution_id="e1", action_id="a", attempt=1, output={})) == (
        "action.completed.e1.a"
    )
    request = ActionExecuteRequested(
        execution_id="e1", action_id="a", action_type="http", queue="q"
    )
    assert subject_for(request) == "action.execute.requested.q.e1.a"
    assert subject_for(ExecutionCompleted(execution_id="e1")) == "execution.completed.e1"
    assert subject_for(ExecutionCancelRequested(execution_id="e1")) == (
        "execution.cancel.requested.e1"
    )


def test_every_event_of_an_execution_matches_exactly_one_of_its_filters() -> None:
    for subject in one_of_each("e1"):
        assert sum(matches(f, subject) for f in execution_filters("e1")) == 1, subject


def test_execution_filters_match_no_other_execution() -> None:
    for subject in one_of_each("e2"):
        assert not any(matches(f, subject) for f in execution_filters("e1")), subject


def test_version_filter_matches_decision_relevant_events_of_one_execution_only() -> None:
    versioned = {"started", "completed", "failed", "skipped", "cancelled", "waiting"}
    for subject in one_of_each("e1"):
        tokens = subject.split(".")
        expected = tokens[0] == "action" and tokens[1] in versioned and len(tokens) == 4
        assert matches(action_version_filter("e1"), subject) == expected, subject
    for subject in one_of_each("e2"):
        assert not matches(action_version_filter("e1"), subject)


def test_execution_ids_that_break_subjects_are_rejected() -> None:
    assert execution_id_problem("exe_01H") is None
    assert execution_id_problem("has.dot") is not None
    assert execution_id_problem("e1\n") is not None  # a trailing newline is no token
    assert execution_id_problem("") is not None
    assert execution_id_problem("failed") is not None
