"""Typed steps: ``output_schema`` on actions and ``input_schema`` on plans, without a server."""

from __future__ import annotations

from typing import Any

import pytest

from eventstore.codec import decode_event, encode_event
from eventstore.error_codes import ErrorCode
from eventstore.errors import PlanValidationError
from eventstore.events import (
    ActionCompleted,
    ActionExecuteRequested,
    ActionFailed,
    ExecutionFailed,
    PlanSubmitted,
)
from eventstore.fold import apply_event
from eventstore.json_schema import schema_problem, schema_problems, value_path
from eventstore.plan import Action, Plan, RequestSpec, RetryPolicy
from eventstore.plan_validation import DEFAULT_PLAN_LIMITS, input_problems, parse_plan
from eventstore.plan_validation.typed_checks import MAX_LISTED_INPUT_MISMATCHES
from executor.errors import NonRetryableError
from executor.handler_call import outcome_event
from executor.handlers import HandlerResult
from executor.output_check import MAX_LISTED_OUTPUT_MISMATCHES, check_output, output_mismatch
from executor.secret_grants import Destination
from executor.secrets import SecretScope
from orchestrator.decide import decide
from orchestrator.dispatch import build_request
from orchestrator.intake import admit_plan

URL = "http://127.0.0.1:9/x"
PRICES: dict[str, Any] = {
    "type": "object",
    "required": ["items"],
    "properties": {
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["sku", "price"],
                "properties": {"sku": {"type": "string"}, "price": {"type": "number"}},
            },
        }
    },
}
USER_INPUT: dict[str, Any] = {
    "type": "object",
    "required": ["user_id"],
    "properties": {"user_id": {"type": "string"}, "limit": {"type": "integer", "minimum": 1}},
}


def problems_of(document: dict[str, Any]) -> list[str]:
    with pytest.raises(PlanValidationError) as caught:
        parse_plan(document)
    return list(caught.value.problems)


def doc(*actions: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"id": "typed", "actions": list(actions), **fields}


def http(action_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": action_id, "request": {"url": URL}, **fields}


# --- the schemas themselves, at validation ----------------------------------------------------


def test_an_output_schema_is_accepted_and_kept_on_the_action() -> None:
    plan = parse_plan(doc(http("fetch", output_schema=PRICES)))

    assert plan.actions[0].output_schema == PRICES


def test_an_output_schema_that_is_not_a_json_schema_is_named_with_its_action_and_place() -> None:
    schema = {"properties": {"price": {"type": "nummber"}}}

    assert problems_of(doc(http("fetch", output_schema=schema))) == [
        'action "fetch": output_schema is not a valid JSON Schema at properties/price/type: '
        "'nummber' is not valid under any of the given schemas"
    ]


def test_an_output_schema_must_be_an_object() -> None:
    problems = problems_of(doc(http("fetch", output_schema=["string"])))

    assert len(problems) == 1 and "output_schema" in problems[0] and "object" in problems[0]


def test_waits_and_sleeps_take_no_output_schema() -> None:
    wait = {"id": "approve", "type": "wait", "output_schema": {"type": "object"}}
    sleep = {"id": "nap", "type": "sleep", "duration_s": 1, "output_schema": {"type": "object"}}

    assert problems_of(doc(wait, sleep)) == [
        'action "approve": output_schema: a "wait" action\'s output is its resume data; '
        "check it with schema",
        'action "nap": output_schema: a "sleep" action has no output to check',
    ]


def test_an_input_schema_that_is_not_a_json_schema_is_a_plan_problem() -> None:
    problems = problems_of(doc(http("a"), input_schema={"type": "text"}))

    assert problems == [
        "plan: input_schema is not a valid JSON Schema at type: 'text' is not valid under any "
        "of the given schemas"
    ]


def test_the_wait_schema_check_is_the_same_one() -> None:
    wait = {"id": "approve", "type": "wait", "schema": {"type": "text"}}

    assert problems_of(doc(wait)) == [
        f'action "approve": {schema_problem({"type": "text"})}',
    ]


# --- the plan's input against its input_schema ---------------------------------------------


def test_a_matching_input_passes() -> None:
    plan = parse_plan(doc(http("a"), input={"user_id": "42"}, input_schema=USER_INPUT))

    assert plan.input_schema == USER_INPUT and input_problems(plan) == []


def test_each_input_mismatch_is_one_line_by_path_in_path_order() -> None:
    document = doc(http("a"), input={"user_id": 42, "limit": 0}, input_schema=USER_INPUT)

    assert problems_of(document) == [
        "plan: input.limit: 0 is less than the minimum of 1",
        "plan: input.user_id: 42 is not of type 'string'",
    ]


def test_a_missing_input_is_named_at_the_input_itself() -> None:
    assert problems_of(doc(http("a"), input_schema=USER_INPUT)) == [
        "plan: input: 'user_id' is a required property"
    ]


def test_input_problems_is_callable_on_any_plan_with_its_own_label() -> None:
    plan = Plan(
        id="child",
        actions=[Action(id="a", type="noop")],
        input={"user_id": 7},
        input_schema=USER_INPUT,
    )

    assert input_problems(plan, label='action "child"') == [
        "action \"child\": input.user_id: 7 is not of type 'string'"
    ]


def test_an_unusable_input_schema_is_the_one_input_problem() -> None:
    plan = Plan(id="p", actions=[Action(id="a", type="noop")], input_schema={"type": 3})

    [problem] = input_problems(plan)
    assert problem.startswith("plan: input_schema is not a valid JSON Schema at type")


def test_many_input_mismatches_are_bounded() -> None:
    schema = {"type": "object", "additionalProperties": {"type": "string"}}
    document = doc(http("a"), input={f"k{n:02}": n for n in range(30)}, input_schema=schema)

    problems = problems_of(document)
    assert len(problems) == MAX_LISTED_INPUT_MISMATCHES + 1
    assert problems[0] == "plan: input.k00: 0 is not of type 'string'"
    assert problems[-1] == f"plan: and {30 - MAX_LISTED_INPUT_MISMATCHES} more"


def test_admission_rejects_a_raw_published_plan_whose_input_mismatches() -> None:
    plan = Plan(
        id="p",
        actions=[Action(id="a", request=RequestSpec(url=URL))],
        input={"user_id": 42},
        input_schema=USER_INPUT,
    )
    data = encode_event(PlanSubmitted(execution_id="e1", plan=plan))

    rejection = admit_plan("plan.submitted.e1", data, limits=DEFAULT_PLAN_LIMITS)

    assert isinstance(rejection, ExecutionFailed)
    assert rejection.error.code == ErrorCode.INVALID_PLAN
    assert "plan: input.user_id: 42 is not of type 'string'" in rejection.error.message


def test_admission_accepts_a_plan_whose_input_matches() -> None:
    plan = Plan(
        id="p",
        actions=[Action(id="a", request=RequestSpec(url=URL))],
        input={"user_id": "42"},
        input_schema=USER_INPUT,
    )
    data = encode_event(PlanSubmitted(execution_id="e1", plan=plan))

    assert isinstance(
        admit_plan("plan.submitted.e1", data, limits=DEFAULT_PLAN_LIMITS), PlanSubmitted
    )


# --- mismatches by path ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ((), "output"),
        (("body", "items", 2, "price"), "output.body.items[2].price"),
        (("first name",), 'output["first name"]'),
        (("a.b", 0), 'output["a.b"][0]'),
        (("",), 'output[""]'),
    ],
)
def test_paths_are_spelled_as_templates_spell_them(
    path: tuple[str | int, ...], expected: str
) -> None:
    assert value_path("output", path) == expected


def test_a_nested_mismatch_is_named_by_its_full_path() -> None:
    output = {
        "items": [{"sku": "a", "price": 1}, {"sku": "b", "price": 2}, {"sku": "c", "price": "x"}]
    }

    assert schema_problems(PRICES, output, root="output") == [
        "output.items[2].price: 'x' is not of type 'number'"
    ]


def test_a_long_value_is_cut_in_the_message() -> None:
    [problem] = schema_problems({"type": "string"}, ["y" * 5000], root="output")

    assert problem.startswith("output: ['yyy") and problem.endswith("...")
    assert len(problem) < 300


def test_a_reference_to_nowhere_is_a_problem_not_a_crash() -> None:
    [problem] = schema_problems({"$ref": "#/$defs/nothing"}, {}, root="output")

    assert problem.startswith("output: the schema cannot be applied: ")


# --- the executor's check --------------------------------------------------------------------


def test_a_matching_output_or_no_schema_passes() -> None:
    output = {"items": [{"sku": "a", "price": 1.5}]}

    assert output_mismatch(PRICES, output) is None
    assert output_mismatch(None, {"anything": True}) is None
    check_output(PRICES, output)


def test_a_mismatch_is_output_invalid_naming_each_path() -> None:
    error = output_mismatch(PRICES, {"items": [{"sku": 1, "price": "x"}]})

    assert error is not None and error.code == ErrorCode.OUTPUT_INVALID
    assert not error.retryable
    assert error.message == (
        "the output does not match the action's output_schema: "
        "output.items[0].price: 'x' is not of type 'number'; "
        "output.items[0].sku: 1 is not of type 'string'"
    )


def test_the_executor_names_the_first_mismatches_and_counts_the_rest() -> None:
    items = [{"sku": "s", "price": str(n)} for n in range(25)]

    error = output_mismatch(PRICES, {"items": items})

    assert error is not None
    listed = error.message.split(": ", 1)[1].split("; ")
    assert len(listed) == MAX_LISTED_OUTPUT_MISMATCHES + 1
    assert listed[0] == "output.items[0].price: '0' is not of type 'number'"
    assert listed[-1] == f"and {25 - MAX_LISTED_OUTPUT_MISMATCHES} more"


def test_check_output_raises_the_error() -> None:
    with pytest.raises(NonRetryableError) as caught:
        check_output({"required": ["id"]}, {})

    assert caught.value.code == ErrorCode.OUTPUT_INVALID
    assert "output: 'id' is a required property" in caught.value.message


def requested(**changes: Any) -> ActionExecuteRequested:
    fields: dict[str, Any] = {
        "execution_id": "e1",
        "action_id": "fetch",
        "event_id": "req-1",
        "action_type": "http",
        "queue": "http",
        "request": RequestSpec(url=URL),
        "retry": RetryPolicy(max_attempts=3),
        "output_schema": PRICES,
    }
    fields.update(changes)
    return ActionExecuteRequested(**fields)


def outcome(request: ActionExecuteRequested, output: Any, env: dict[str, str] | None = None) -> Any:
    return outcome_event(
        request,
        1,
        HandlerResult(output=output, status_code=200),
        duration_ms=1.0,
        scope=SecretScope(env or {}),
        max_output_bytes=1_000_000,
    )


def test_an_output_that_does_not_match_fails_the_action_although_attempts_are_left() -> None:
    event = outcome(requested(), {"items": [{"sku": "a", "price": "x"}]})

    assert isinstance(event, ActionFailed)
    assert event.attempt == 1 and event.error.code == "output_invalid"
    assert "output.items[0].price: 'x' is not of type 'number'" in event.error.message


def test_a_matching_output_completes() -> None:
    event = outcome(requested(), {"items": []})

    assert isinstance(event, ActionCompleted) and event.output == {"items": []}


def test_the_schema_sees_the_output_as_stored_a_list_body_is_wrapped_as_value() -> None:
    schema = {"type": "object", "required": ["value"], "properties": {"value": {"type": "array"}}}

    assert isinstance(outcome(requested(output_schema=schema), [1, 2]), ActionCompleted)


def test_the_schema_sees_scrubbed_output_so_the_message_never_holds_a_secret() -> None:
    secret = "s3cr3t-value-123"
    env = {"TEP_SECRET_TOKEN": secret, "TEP_SECRET_TOKEN_HOSTS": "127.0.0.1"}
    scope = SecretScope(env)
    scope.resolve("{{secrets.TOKEN}}", destination=lambda _: Destination.of_url(URL))
    event = outcome_event(
        requested(output_schema={"properties": {"echo": {"type": "integer"}}}),
        1,
        HandlerResult(output={"echo": secret}),
        duration_ms=1.0,
        scope=scope,
        max_output_bytes=1_000_000,
    )

    assert isinstance(event, ActionFailed) and event.error.code == "output_invalid"
    assert secret not in event.error.message and "[redacted]" in event.error.message


# --- the schema travels with the request ------------------------------------------------------


def test_build_request_carries_the_output_schema() -> None:
    plan = Plan(
        id="p", actions=[Action(id="a", request=RequestSpec(url=URL), output_schema=PRICES)]
    )
    state = apply_event(None, PlanSubmitted(execution_id="e1", plan=plan))
    assert state is not None

    request = build_request(plan.actions[0], state, event_id="x")

    assert request.output_schema == PRICES
    decoded = decode_event(encode_event(request))
    assert isinstance(decoded, ActionExecuteRequested) and decoded.output_schema == PRICES


def test_a_request_without_output_schema_does_not_mention_it_on_the_wire() -> None:
    plan = Plan(id="p", actions=[Action(id="a", request=RequestSpec(url=URL))])
    submitted = PlanSubmitted(execution_id="e1", plan=plan)
    state = apply_event(None, submitted)

    [request] = decide(state, submitted)

    assert isinstance(request, ActionExecuteRequested)
    assert b"output_schema" not in encode_event(request)
    assert output_mismatch(request.output_schema, {"x": 1}) is None
