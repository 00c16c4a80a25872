"""Validation of ``for_each``, ``concurrency`` and the ``{{item}}`` / ``{{index}}`` templates."""

from __future__ import annotations

import json
from typing import Any

import pytest

from eventstore.errors import PlanValidationError
from eventstore.items import MAX_ITEMS
from eventstore.plan_validation import parse_plan, plan_problems

ITEM_URL = {"url": "http://h/items/{{item.sku}}?n={{index}}"}


def problems(*actions: dict[str, Any], **plan: Any) -> list[str]:
    try:
        parse_plan(json.dumps({"id": "p", "actions": list(actions), **plan}))
    except PlanValidationError as exc:
        return list(exc.problems)
    return []


def listing() -> dict[str, Any]:
    return {"id": "list", "request": {"url": "http://h/list"}}


def test_a_template_over_an_upstream_output_or_the_input_and_a_literal_array_are_valid() -> None:
    over_output = {
        "id": "each",
        "depends_on": ["list"],
        "for_each": "{{actions.list.output.items}}",
        "concurrency": 20,
        "continue_on_error": True,
        "request": {
            "method": "POST",
            "url": "http://h/x",
            "json": {"i": "{{index}}", "v": "{{item}}"},
        },
    }
    assert problems(listing(), over_output) == []
    over_input = {"id": "each", "for_each": " {{input.users}} ", "request": ITEM_URL}
    assert problems(over_input, input={"users": [{"sku": "a"}]}) == []
    assert (
        problems({"id": "each", "for_each": [{"sku": "a"}, {"sku": "b"}], "request": ITEM_URL})
        == []
    )
    assert problems({"id": "each", "for_each": [], "request": ITEM_URL}) == []


def test_camel_case_spelling_is_accepted() -> None:
    action = {"id": "each", "forEach": [1, 2], "concurrency": 2, "continueOnError": True}
    plan = parse_plan(json.dumps({"id": "p", "actions": [{**action, "request": ITEM_URL}]}))
    assert plan.actions[0].for_each == [1, 2]
    assert plan.actions[0].continue_on_error


@pytest.mark.parametrize(
    ("for_each", "expected"),
    [
        ("items: {{input.users}}", 'for_each: "items: {{input.users}}" must be one whole template'),
        ("{{input.a}}{{input.b}}", "must be one whole template"),
        ("{{secrets.LIST}}", "for_each: {{secrets.LIST}} names no array"),
        ("{{item}}", "for_each: {{item}} names no array"),
        ("{{actions.list.status}}", "for_each: {{actions.list.status}} names no array"),
        ("{{nope.x}}", "unknown namespace 'nope'"),
        ("{{actions.ghost.output.items}}", 'references unknown action "ghost"'),
    ],
)
def test_for_each_must_be_one_template_naming_an_array(for_each: str, expected: str) -> None:
    each = {"id": "each", "depends_on": ["list"], "for_each": for_each, "request": ITEM_URL}
    found = problems(listing(), each)
    assert any(expected in p and p.startswith('action "each"') for p in found), found


def test_the_array_must_come_from_upstream() -> None:
    each = {"id": "each", "for_each": "{{actions.list.output.items}}", "request": ITEM_URL}
    assert problems(listing(), each) == [
        'action "each": for_each: template {{actions.list.output.items}} references action '
        '"list", which is not upstream of "each" (add it to depends_on)'
    ]


def test_a_literal_array_above_the_limit_is_refused_with_the_limit_named() -> None:
    each = {"id": "each", "for_each": list(range(MAX_ITEMS + 1)), "request": ITEM_URL}
    assert problems(each) == [
        f'action "each": for_each: {MAX_ITEMS + 1} items, above the limit of {MAX_ITEMS} items '
        "per action"
    ]
    assert problems({**each, "for_each": list(range(MAX_ITEMS))}) == []


def test_templates_inside_a_literal_array_are_refused() -> None:
    each = {"id": "each", "for_each": ["{{input.a}}"], "request": ITEM_URL}
    assert problems(each, input={"a": 1}) == [
        'action "each": for_each: a literal array is used as written, its templates ({{...}}) '
        "are not rendered; name an array with one template instead"
    ]


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (
            {"type": "sleep", "duration_s": 1},
            'action "each": for_each: a "sleep" action is run by the orchestrator; for_each runs '
            "only actions an executor runs",
        ),
        (
            {"type": "wait"},
            'action "each": for_each: a "wait" action is run by the orchestrator; for_each runs '
            "only actions an executor runs",
        ),
    ],
)
def test_for_each_only_on_actions_an_executor_runs(action: dict[str, Any], expected: str) -> None:
    assert expected in problems({"id": "each", "for_each": [1], **action})


def test_for_each_on_a_sub_plan_is_refused() -> None:
    child = {"id": "child", "actions": [{"id": "x", "type": "noop"}]}
    found = problems({"id": "each", "type": "plan", "plan": child, "for_each": [1]})
    assert any('for_each: a "plan" action is run by the orchestrator' in p for p in found), found


@pytest.mark.parametrize(
    ("concurrency", "expected"),
    [
        (0, 'action "each": concurrency must be at least 1 (got 0)'),
        (1001, 'action "each": concurrency must be at most 1000 (got 1001)'),
    ],
)
def test_concurrency_is_1_to_1000(concurrency: int, expected: str) -> None:
    each = {"id": "each", "for_each": [1], "concurrency": concurrency, "request": ITEM_URL}
    assert problems(each) == [expected]
    assert problems({**each, "concurrency": 1}) == []
    assert problems({**each, "concurrency": 1000}) == []


def test_concurrency_needs_for_each() -> None:
    plain = {"id": "a", "concurrency": 3, "request": {"url": "http://h/x"}}
    assert problems(plain) == [
        'action "a": concurrency: only an action with for_each takes concurrency'
    ]


def test_concurrency_must_be_an_integer() -> None:
    each = {"id": "each", "for_each": [1], "concurrency": 2.5, "request": ITEM_URL}
    assert any("concurrency" in p for p in problems(each))


@pytest.mark.parametrize(
    ("field", "value", "where"),
    [
        ("request", {"url": "http://h/{{item.sku}}"}, "request.url: template {{item.sku}}"),
        (
            "request",
            {"url": "http://h/", "json": {"n": "{{index}}"}},
            "request.json: template {{index}}",
        ),
        ("input", {"x": "{{item}}"}, "input: template {{item}}"),
    ],
)
def test_item_and_index_exist_only_in_for_each_actions(
    field: str, value: dict[str, Any], where: str
) -> None:
    action = {"id": "a", "type": "noop" if field == "input" else "http", field: value}
    assert problems(action) == [f'action "a": {where} is only available in an action with for_each']


def test_plans_built_in_code_are_checked_the_same_way() -> None:
    plan = parse_plan(
        json.dumps({"id": "p", "actions": [{"id": "each", "for_each": [1], "request": ITEM_URL}]})
    )
    assert plan_problems(plan) == []
