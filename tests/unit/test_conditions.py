"""``when`` conditions on plan input and upstream results."""

from __future__ import annotations

from typing import Any

import pytest

from eventstore.conditions import ConditionError, evaluate, json_equal
from eventstore.events import ActionCompleted, ActionFailed, ErrorInfo, PlanSubmitted
from eventstore.fold import apply_event
from eventstore.plan import Action, Condition, Plan
from eventstore.state import ExecutionState


def _state() -> ExecutionState:
    plan = Plan(
        id="p",
        input={"tier": "gold", "count": 3, "flag": False, "items": [{"n": 1}], "none": None},
        actions=[Action(id="a"), Action(id="b")],
    )
    state = apply_event(None, PlanSubmitted(execution_id="e1", plan=plan))
    state = apply_event(
        state,
        ActionCompleted(
            execution_id="e1", action_id="a", attempt=2, output={"user": {"tier": "premium"}}
        ),
    )
    state = apply_event(
        state,
        ActionFailed(
            execution_id="e1",
            action_id="b",
            attempt=1,
            error=ErrorInfo(message="nope", code="http_4xx", status_code=404),
        ),
    )
    assert state is not None
    return state


def _holds(**condition: Any) -> bool:
    return evaluate(Condition(**condition), _state())


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"path": "input.tier", "equals": "gold"}, True),
        ({"path": "input.tier", "equals": "silver"}, False),
        ({"path": "input.missing", "equals": None}, False),
        ({"path": "input.none", "equals": None}, True),
        ({"path": "input.count", "equals": 3.0}, True),
        ({"path": "input.flag", "equals": 0}, False),
        ({"path": "input.items[0].n", "equals": 1}, True),
        ({"path": "actions.a.output.user.tier", "equals": "premium"}, True),
        ({"path": "actions.a.status", "equals": "completed"}, True),
        ({"path": "actions.a.attempts", "equals": 2}, True),
        ({"path": "actions.b.error.code", "equals": "http_4xx"}, True),
    ],
)
def test_equals_compares_json_values(condition: dict[str, Any], expected: bool) -> None:
    assert _holds(**condition) is expected


def test_not_equals_holds_for_a_missing_path() -> None:
    assert _holds(path="input.missing", not_equals="x") is True
    assert _holds(path="input.tier", not_equals="gold") is False
    assert _holds(path="actions.b.status", not_equals="completed") is True


def test_in_matches_any_listed_value() -> None:
    assert _holds(path="input.tier", in_=["silver", "gold"]) is True
    assert _holds(path="input.tier", in_=["silver"]) is False
    assert _holds(path="input.missing", in_=[None]) is False


def test_exists_distinguishes_missing_from_null() -> None:
    assert _holds(path="input.none", exists=True) is True
    assert _holds(path="input.missing", exists=True) is False
    assert _holds(path="input.missing", exists=False) is True
    assert _holds(path="actions.a.error", exists=True) is False
    assert _holds(path="actions.b.output", exists=False) is True


def test_truthy_follows_json_truthiness() -> None:
    assert _holds(path="input.count", truthy=True) is True
    assert _holds(path="input.flag", truthy=True) is False
    assert _holds(path="input.flag", truthy=False) is True
    assert _holds(path="input.missing", truthy=False) is True
    assert _holds(path="actions.unknown.output", truthy=True) is False


def test_malformed_path_is_an_error() -> None:
    with pytest.raises(ConditionError):
        _holds(path="input..x", equals=1)
    with pytest.raises(ConditionError):
        _holds(path="secrets.TOKEN", exists=True)


def test_condition_without_operator_is_an_error() -> None:
    with pytest.raises(ConditionError, match="no operator"):
        _holds(path="input.tier")


def test_json_equal_keeps_booleans_apart_from_numbers() -> None:
    assert json_equal(True, True)
    assert not json_equal(True, 1)
    assert not json_equal(0, False)
    assert json_equal({"a": [1, 2.0]}, {"a": [1.0, 2]})
    assert not json_equal({"a": [True]}, {"a": [1]})
    assert not json_equal("1", 1)
