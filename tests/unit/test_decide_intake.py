"""Admitting ``plan.submitted`` messages: valid plans run, anything else fails with reasons."""

from __future__ import annotations

import json
from typing import Any

import pytest

from eventstore.codec import encode_event
from eventstore.events import ExecutionCompleted, ExecutionFailed, PlanSubmitted
from eventstore.plan import Action, Plan, RequestSpec
from eventstore.plan_validation import PlanLimits
from orchestrator.intake import UnroutableMessageError, admit_plan

LIMITS = {"limits": PlanLimits(max_actions=100, max_plan_bytes=100_000)}


def _admit(subject: str, payload: Any) -> PlanSubmitted | ExecutionFailed:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return admit_plan(subject, data, **LIMITS)


def _plan_document(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": "p",
        "actions": [{"id": "a", "type": "http", "request": {"url": "http://h/"}}],
    }
    document.update(overrides)
    return document


def _failure(result: PlanSubmitted | ExecutionFailed) -> str:
    assert isinstance(result, ExecutionFailed)
    assert result.error.code == "invalid_plan"
    assert result.event_id == f"{result.execution_id}.terminal"
    return result.error.message


def test_valid_plan_is_admitted_as_is() -> None:
    event = PlanSubmitted(
        execution_id="e1",
        plan=Plan(id="p", actions=[Action(id="a", request=RequestSpec(url="http://h/"))]),
    )
    assert admit_plan("plan.submitted.e1", encode_event(event), **LIMITS) == event


def test_cycle_is_reported_with_its_path() -> None:
    document = _plan_document(
        actions=[
            {"id": "a", "depends_on": ["b"], "request": {"url": "http://h/"}},
            {"id": "b", "depends_on": ["a"], "request": {"url": "http://h/"}},
        ]
    )
    result = _admit(
        "plan.submitted.e1", {"type": "plan.submitted", "execution_id": "e1", "plan": document}
    )
    message = _failure(result)
    assert "cycle" in message and "a -> b -> a" in message
    assert result.execution_id == "e1"


def test_unknown_fields_of_a_foreign_client_are_named() -> None:
    document = _plan_document(
        actions=[{"id": "a", "colour": "red", "request": {"url": "http://h/"}}]
    )
    message = _failure(
        _admit(
            "plan.submitted.e1", {"type": "plan.submitted", "execution_id": "e1", "plan": document}
        )
    )
    assert "colour" in message


def test_payload_that_is_not_json_fails_the_execution() -> None:
    assert "not JSON" in _failure(_admit("plan.submitted.e1", b"\xffnope"))


def test_payload_without_a_plan_fails_the_execution() -> None:
    assert "no plan" in _failure(_admit("plan.submitted.e1", {"type": "plan.submitted"}))


def test_envelope_for_another_execution_is_refused() -> None:
    event = PlanSubmitted(
        execution_id="other", plan=Plan(id="p", actions=[Action(id="a", type="noop")])
    )
    result = admit_plan("plan.submitted.e1", encode_event(event), **LIMITS)
    assert "does not match" in _failure(result)
    assert result.execution_id == "e1"


def test_another_event_type_on_the_plan_subject_is_refused() -> None:
    result = admit_plan(
        "plan.submitted.e1", encode_event(ExecutionCompleted(execution_id="e1")), **LIMITS
    )
    assert "execution.completed" in _failure(result)


def test_semantic_problems_of_a_decodable_plan_are_reported() -> None:
    event = PlanSubmitted(
        execution_id="e1",
        plan=Plan(id="p", actions=[Action(id="a", type="noop", depends_on=["ghost"])]),
    )
    assert "ghost" in _failure(admit_plan("plan.submitted.e1", encode_event(event), **LIMITS))


def test_too_many_actions_is_a_problem() -> None:
    actions = [{"id": f"a{i}", "type": "noop"} for i in range(101)]
    document = _plan_document(actions=actions)
    message = _failure(
        _admit(
            "plan.submitted.e1", {"type": "plan.submitted", "execution_id": "e1", "plan": document}
        )
    )
    assert "100" in message


def test_long_problem_lists_are_cut() -> None:
    actions = [{"id": f"a{i}", "type": "noop", "depends_on": [f"x{i}"]} for i in range(50)]
    document = _plan_document(actions=actions)
    message = _failure(
        _admit(
            "plan.submitted.e1", {"type": "plan.submitted", "execution_id": "e1", "plan": document}
        )
    )
    assert "and 30 more" in message


@pytest.mark.parametrize(
    "subject", ["plan.submitted.a.b", "plan.submitted.failed", "plan.other.e1"]
)
def test_subject_without_a_usable_execution_id_is_unroutable(subject: str) -> None:
    with pytest.raises(UnroutableMessageError):
        _admit(subject, {"type": "plan.submitted"})
