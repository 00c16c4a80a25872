"""A plan whose skeleton was valid before still has its own input checked, every time."""

from __future__ import annotations

from typing import Any

import msgspec

from eventstore.plan import Plan
from eventstore.plan_validation import PlanLimits, plan_problems
from eventstore.plan_validation.skeletons import ValidSkeletons

SCHEMA = {"type": "object", "properties": {"n": {"type": "number"}}, "required": ["n"]}


def _plan(
    input: dict[str, Any],
    *,
    url: str = "http://127.0.0.1:9/a",
    actions: int = 2,
    plan_id: str = "skeleton",
) -> Plan:
    document = {
        "id": plan_id,
        "input_schema": SCHEMA,
        "input": input,
        "actions": [
            {"id": f"a{i}", "request": {"method": "GET", "url": url}} for i in range(actions)
        ],
    }
    return msgspec.convert(document, Plan)


def _nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def test_a_known_skeleton_with_an_input_that_breaks_the_rules_is_still_refused() -> None:
    assert plan_problems(_plan({"n": 1})) == []
    assert plan_problems(_plan({"n": 2})) == []  # the skeleton is known from here on

    not_finite = plan_problems(_plan({"n": float("nan")}))
    assert not_finite and "not a finite number" in not_finite[0] and "input.n" in not_finite[0]

    too_deep = plan_problems(_plan({"n": 1, "deep": _nested(70)}))
    assert len(too_deep) == 1 and "input.deep" in too_deep[0]

    mismatched = plan_problems(_plan({"n": "x"}))
    assert mismatched == ["plan: input.n: 'x' is not of type 'number'"]
    assert plan_problems(_plan({})) == ["plan: input: 'n' is a required property"]


def test_the_depth_limit_of_a_known_skeletons_input_is_the_same_as_a_full_checks() -> None:
    limits = PlanLimits(max_json_depth=6)
    assert plan_problems(_plan({"n": 1}), limits=limits) == []
    answers = []
    for levels in range(2, 7):
        deep = {"n": 1, "deep": _nested(levels)}
        # An id of its own: a skeleton never seen, so checked in full.
        full = plan_problems(_plan(deep, plan_id=f"fresh-{levels}"), limits=limits)
        assert plan_problems(_plan(deep), limits=limits) == full
        answers.append(len(full))
    # plan > input > 4 nested lists is 6 levels, the limit: one more is too deep.
    assert answers == [0, 0, 0, 1, 1]


def test_a_change_outside_the_input_or_other_limits_is_checked_in_full() -> None:
    assert plan_problems(_plan({"n": 1})) == []
    bad_url = plan_problems(_plan({"n": 1}, url="ftp://example.com/x"))
    assert bad_url and all("url" in problem for problem in bad_url)
    too_many = plan_problems(_plan({"n": 1}), limits=PlanLimits(max_actions=1))
    assert too_many and "1" in too_many[0]


def test_only_so_many_skeletons_are_kept_the_least_recently_used_going_first() -> None:
    skeletons = ValidSkeletons(capacity=2)
    limits = PlanLimits()
    keys = [skeletons.key(_plan({"n": 1}, actions=count), limits) for count in (1, 2, 3)]
    skeletons.add(keys[0])
    skeletons.add(keys[1])
    assert keys[0] in skeletons  # used: now the most recent
    skeletons.add(keys[2])
    assert len(skeletons) == 2
    assert keys[1] not in skeletons
    assert keys[0] in skeletons and keys[2] in skeletons
    assert skeletons.key(_plan({"n": 5}), limits) == skeletons.key(_plan({"n": 6}), limits)
