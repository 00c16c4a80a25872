"""Validation of error routes: ``run_if``, ``on_error``, and the fields they replaced."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from eventstore.errors import PlanValidationError
from eventstore.plan import Action, Plan
from eventstore.plan_validation import parse_plan, plan_problems

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def problems(*actions: dict[str, Any]) -> list[str]:
    try:
        parse_plan({"id": "p", "actions": list(actions)})
    except PlanValidationError as exc:
        return list(exc.problems)
    return []


def noop(action_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": action_id, "type": "noop", **fields}


@pytest.mark.parametrize(
    ("field", "value", "replacement"),
    [
        ("allow_failure", True, "continue_on_error: true"),
        ("allowFailure", False, "continue_on_error: true"),
        ("run_on_dependency_failure", True, 'run_if: "always"'),
        ("runOnDependencyFailure", True, 'run_if: "always"'),
    ],
)
def test_a_replaced_field_is_one_problem_naming_its_replacement(
    field: str, value: bool, replacement: str
) -> None:
    assert problems(noop("a"), noop("b", depends_on=["a"], **{field: value})) == [
        f'actions[1] ("b"): {field} was replaced by {replacement}'
    ]


def test_run_if_takes_three_values() -> None:
    assert problems(noop("a"), noop("b", depends_on=["a"], run_if="on_failure")) == [
        'actions[1] ("b"): run_if: expected one of success, failed, always'
    ]


def test_camel_case_spellings_of_the_new_fields_are_accepted() -> None:
    plan = parse_plan(
        {
            "id": "p",
            "actions": [
                noop("a", onError=["alert"], continueOnError=True),
                noop("alert", runIf="failed"),
            ],
        }
    )

    assert plan.action("a").on_error == ["alert"]
    assert plan.action("a").continue_on_error is True
    assert plan.action("alert").run_if == "failed"


def test_on_error_must_name_other_existing_actions_once() -> None:
    found = problems(noop("a", on_error=["a", "ghost", "b", "b"]), noop("b"))

    assert found == [
        'action "a": on_error lists the action itself',
        'action "a": on_error references unknown action "ghost"',
        'action "a": on_error lists "b" twice',
    ]


def test_a_route_upstream_of_the_action_it_handles_is_a_cycle() -> None:
    found = problems(noop("notify"), noop("charge", depends_on=["notify"], on_error=["notify"]))

    assert found == ["cycle: notify -> charge -> notify"]


def test_two_actions_routing_to_each_other_is_a_cycle() -> None:
    assert problems(noop("a", on_error=["b"]), noop("b", on_error=["a"])) == ["cycle: a -> b -> a"]


def test_a_route_may_use_the_error_of_the_action_it_handles_without_depends_on() -> None:
    plan = parse_plan(
        {
            "id": "p",
            "actions": [
                {"id": "charge", "on_error": ["notify"], "request": {"url": "http://h/charge"}},
                {
                    "id": "notify",
                    "request": {
                        "method": "POST",
                        "url": "http://h/notify",
                        "json": {
                            "code": "{{actions.charge.error.code}}",
                            "message": "{{actions.charge.error.message}}",
                        },
                    },
                    "when": {"path": "actions.charge.error.code", "equals": "http_5xx"},
                },
            ],
        }
    )

    assert plan.action("notify").depends_on == []  # the plan stays as written
    assert plan.action("notify").run_if == "success"


def test_a_route_that_is_not_upstream_still_cannot_be_referenced() -> None:
    found = problems(
        noop("charge", on_error=["notify"]),
        noop("other"),
        noop("notify", input={"x": "{{actions.other.output.x}}"}),
    )

    assert found == [
        'action "notify": input: template {{actions.other.output.x}} references action '
        '"other", which is not upstream of "notify" (add it to depends_on)'
    ]


def test_a_listed_route_must_not_say_it_runs_on_success_or_always() -> None:
    assert problems(noop("a", on_error=["b"]), noop("b", run_if="always")) == [
        'action "b": run_if "always" contradicts on_error of "a" (an error route runs only '
        "when that action fails): leave run_if out, or depend on it instead"
    ]
    assert problems(noop("a", on_error=["b"]), noop("b", run_if="success")) == [
        'actions[1] ("b"): run_if "success" contradicts on_error of "a" (an error route runs '
        "only when that action fails): leave run_if out"
    ]
    assert problems(noop("a", on_error=["b"]), noop("b", run_if="failed")) == []


def test_run_if_failed_needs_something_that_can_fail() -> None:
    assert problems(noop("a", run_if="failed")) == [
        'action "a": run_if "failed" needs a dependency that can fail: add depends_on, or list '
        "the action in another action's on_error"
    ]


def test_a_plan_built_in_code_is_checked_with_its_route_edges() -> None:
    plan = Plan(
        id="p",
        actions=[
            Action(id="notify", type="noop"),
            Action(id="charge", type="noop", depends_on=["notify"], on_error=["notify"]),
        ],
    )

    assert plan_problems(plan) == ["cycle: notify -> charge -> notify"]


@pytest.mark.parametrize("example", ["error-route.json", "conditional-fallback.json"])
def test_the_route_examples_are_valid(example: str) -> None:
    document = json.loads((EXAMPLES / example).read_text())

    plan = parse_plan(document)

    assert plan.id == document["id"]
    assert any(action.on_error for action in plan.actions)
