"""Validating sub-plan actions: plan or plan_ref, what they may not carry, inline plans."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from eventstore.config import TepSettings
from eventstore.errors import PlanValidationError
from eventstore.plan import Plan
from eventstore.plan_validation import PlanLimits, parse_plan, plan_problems
from eventstore.plan_validation.subplan_checks import inline_depth

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CALL = {"id": "call", "request": {"url": "http://127.0.0.1:9/x"}}


def document(*actions: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"id": "p", "actions": list(actions), **fields}


def problems(*actions: dict[str, Any], limits: PlanLimits | None = None) -> list[str]:
    with pytest.raises(PlanValidationError) as caught:
        parse_plan(document(*actions), limits=limits or PlanLimits())
    return caught.value.problems


def nested(levels: int) -> dict[str, Any]:
    """An inline plan holding ``levels - 1`` more levels of inline plans."""
    plan: dict[str, Any] = {"id": "leaf", "actions": [CALL]}
    for _ in range(levels - 1):
        plan = {"id": "level", "actions": [{"id": "down", "type": "plan", "plan": plan}]}
    return plan


def test_an_inline_subplan_with_templated_input_is_valid() -> None:
    plan = parse_plan(
        document(
            {"id": "fetch", "request": {"url": "http://127.0.0.1:9/u"}},
            {
                "id": "child",
                "type": "plan",
                "dependsOn": ["fetch"],
                "plan": {"id": "inner", "actions": [{**CALL, "dependsOn": []}]},
                "input": {"user": "{{actions.fetch.output.id}}"},
            },
        )
    )
    child = plan.action("child")
    assert child.runs_plan and child.plan is not None and child.plan.id == "inner"
    assert child.queue_name == "plan"


def test_a_plan_ref_is_valid_and_needs_a_registry_name() -> None:
    assert parse_plan(document({"id": "c", "type": "plan", "planRef": "send-welcome"}))
    found = problems({"id": "c", "type": "plan", "plan_ref": "not a name"})
    assert found == ['action "c": plan_ref: plan name "not a name" must match [A-Za-z0-9_-]{1,64}']


@pytest.mark.parametrize(
    "fields",
    [{}, {"plan_ref": "x", "plan": {"id": "i", "actions": [CALL]}}],
    ids=["neither", "both"],
)
def test_a_subplan_needs_exactly_one_of_plan_and_plan_ref(fields: dict[str, Any]) -> None:
    [found] = problems({"id": "c", "type": "plan", **fields})
    assert found == (
        'action "c": a "plan" action needs exactly one of plan (inline) or plan_ref '
        "(a plan registry name)"
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("request", {"url": "http://127.0.0.1:9/x"}),
        ("for_each", [1, 2]),
        ("retry", {"max_attempts": 3}),
        ("queue", "plans"),
        ("timeout_s", 5),
    ],
)
def test_a_subplan_takes_no_request_for_each_retry_queue_or_timeout(field: str, value: Any) -> None:
    found = problems({"id": "c", "type": "plan", "plan_ref": "x", field: value})
    assert any(p.startswith(f'action "c": {field}: ') for p in found), found


def test_only_plan_actions_take_plan_or_plan_ref() -> None:
    found = problems({**CALL, "plan_ref": "x"})
    assert found == ['action "call": plan_ref: only actions of type "plan" take plan_ref']


def test_a_subplans_input_must_be_an_object() -> None:
    found = problems({"id": "c", "type": "plan", "plan_ref": "x", "input": [1]})
    assert found == [
        "action \"c\": input: a sub-plan action's input must be an object (the child's input)"
    ]


def test_an_inline_plan_is_validated_with_its_problems_prefixed_by_the_action() -> None:
    inner = {
        "id": "inner",
        "actions": [
            {"id": "a", "request": {"url": "ftp://x"}},
            {"id": "b", "depends_on": ["nope"], "request": {"url": "http://127.0.0.1:9/"}},
        ],
    }
    found = problems({"id": "c", "type": "plan", "plan": inner})
    assert found == [
        'action "c": plan: action "a": request.url: "ftp://x" must be an absolute http:// or '
        "https:// URL",
        'action "c": plan: action "b": depends_on references unknown action "nope"',
    ]


def test_an_inline_plan_sees_its_own_actions_not_the_parents() -> None:
    inner = {"id": "inner", "actions": [{"id": "a", "request": {"url": "{{actions.up.output}}"}}]}
    found = problems(
        {**CALL, "id": "up"}, {"id": "c", "type": "plan", "depends_on": ["up"], "plan": inner}
    )
    assert found == [
        'action "c": plan: action "a": request.url: template {{actions.up.output}} references '
        'unknown action "up"'
    ]


def test_the_shape_of_an_inline_plan_is_checked_with_the_action_named() -> None:
    found = problems({"id": "c", "type": "plan", "plan": {"id": "i", "actions": [{"id": 3}]}})
    assert any(p.startswith('actions[0] ("c"): plan.actions[0].id: ') for p in found), found


def test_an_inline_plans_input_schema_must_be_usable_its_input_comes_at_run_time() -> None:
    typed = {"id": "i", "actions": [CALL], "input_schema": {"required": ["user"]}}
    assert parse_plan(document({"id": "c", "type": "plan", "plan": typed}))
    broken = {**typed, "input_schema": {"type": 7}}
    found = problems({"id": "c", "type": "plan", "plan": broken})
    assert found[0].startswith('action "c": plan: input_schema is not a valid JSON Schema')


def test_inline_plans_nest_at_most_the_depth_limit() -> None:
    assert parse_plan(document({"id": "c", "type": "plan", "plan": nested(5)}))
    found = problems({"id": "c", "type": "plan", "plan": nested(6)})
    assert found == [
        'action "c": plan: inline sub-plans nest 6 levels deep, above the limit of 5 '
        "(setting TEP_MAX_SUBPLAN_DEPTH)"
    ]
    tight = problems(
        {"id": "c", "type": "plan", "plan": nested(2)}, limits=PlanLimits(max_subplan_depth=1)
    )
    assert "above the limit of 1" in tight[0]


def test_the_depth_limit_is_a_setting() -> None:
    settings = TepSettings.from_env({"TEP_MAX_SUBPLAN_DEPTH": "2"})
    assert settings.max_subplan_depth == 2
    assert settings.plan_limits.max_subplan_depth == 2
    assert TepSettings().max_subplan_depth == 5


def test_inline_depth_counts_levels_below_a_plan() -> None:
    assert inline_depth(parse_plan(nested(1))) == 0
    assert inline_depth(parse_plan(nested(4))) == 3


def test_plan_problems_checks_inline_plans_of_a_plan_built_in_code() -> None:
    plan = parse_plan(document({"id": "c", "type": "plan", "plan": nested(2)}))
    assert plan_problems(plan) == []
    assert plan_problems(plan, limits=PlanLimits(max_subplan_depth=1))


def test_the_example_is_valid() -> None:
    plan = parse_plan((EXAMPLES / "sub-plan.json").read_bytes())
    assert any(a.runs_plan and isinstance(a.plan, Plan) for a in plan.actions)
    assert json.loads((EXAMPLES / "sub-plan.json").read_text())["id"] == plan.id
