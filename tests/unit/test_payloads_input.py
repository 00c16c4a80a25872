"""A plan's large input, taken out of the document before validation; resume data and the
fold. Pure."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from eventstore.errors import PlanValidationError
from eventstore.events import ActionResumeRequested, ActionWaiting, PlanSubmitted
from eventstore.fold import apply_event
from eventstore.input_payloads import detach_input
from eventstore.payloads import PayloadLimits, decode_payload, payload_ref
from eventstore.plan import Action, Plan
from eventstore.plan_validation import DEFAULT_PLAN_LIMITS, parse_plan

LIMITS = PayloadLimits(inline_bytes=1024, max_bytes=100_000)
LARGE = {"rows": [{"id": n, "name": f"row {n}"} for n in range(200)]}


def document(input_value: Any, **fields: Any) -> dict[str, Any]:
    return {"id": "p", "input": input_value, "actions": [{"id": "a", "type": "noop"}], **fields}


@pytest.mark.parametrize("form", ["bytes", "str", "mapping"])
def test_a_large_input_is_replaced_by_its_reference_in_any_form(form: str) -> None:
    raw = json.dumps(document(LARGE)).encode()
    given: Any = {"bytes": raw, "str": raw.decode(), "mapping": document(LARGE)}[form]

    detached, payload = detach_input(given, LIMITS, max_depth=64)
    plan = parse_plan(detached)

    assert payload is not None
    assert plan.input == payload.ref.marker()
    assert decode_payload(payload.ref, payload.data) == LARGE


def test_a_plan_built_in_code_gets_the_reference_too() -> None:
    plan = Plan(id="p", input=LARGE, actions=[Action(id="a", type="noop")])

    detached, payload = detach_input(plan, LIMITS, max_depth=64)

    assert isinstance(detached, Plan) and payload is not None
    assert payload_ref(detached.input) == payload.ref


def test_a_plan_whose_document_exceeds_the_plan_limit_only_by_its_input_is_valid() -> None:
    raw = json.dumps(document(LARGE)).encode()
    assert len(raw) > 5000
    with pytest.raises(PlanValidationError, match="TEP_MAX_PLAN_BYTES"):
        parse_plan(raw, limits=msgspec.structs.replace(DEFAULT_PLAN_LIMITS, max_plan_bytes=5000))

    detached, _ = detach_input(raw, LIMITS, max_depth=64)

    assert parse_plan(
        detached, limits=msgspec.structs.replace(DEFAULT_PLAN_LIMITS, max_plan_bytes=5000)
    )


@pytest.mark.parametrize(
    "given",
    [
        json.dumps(document({"small": 1})),
        document({"small": 1}),
        document("not an object"),
        {"id": "p", "actions": []},
        b"{broken json" + b" " * 2000,
    ],
)
def test_small_absent_or_broken_inputs_stay_where_they_are(given: Any) -> None:
    assert detach_input(given, LIMITS, max_depth=64) == (given, None)


def test_an_input_that_does_not_match_its_schema_stays_so_validation_names_the_mismatch() -> None:
    schema = {"type": "object", "required": ["customer"]}
    given = document(LARGE, input_schema=schema)

    detached, payload = detach_input(given, LIMITS, max_depth=64)

    assert payload is None and detached is given
    with pytest.raises(PlanValidationError, match="'customer' is a required property"):
        parse_plan(detached)


def test_a_referenced_input_passes_its_schema_check_it_was_checked_before_it_was_stored() -> None:
    schema = {"type": "object", "required": ["rows"]}

    detached, payload = detach_input(document(LARGE, input_schema=schema), LIMITS, max_depth=64)

    assert payload is not None and parse_plan(detached).input == payload.ref.marker()


def test_an_input_nested_too_deeply_stays_so_validation_reports_it() -> None:
    deep: Any = {"pad": "x" * 2000}
    for _ in range(10):
        deep = {"d": deep}

    detached, payload = detach_input(document(deep), LIMITS, max_depth=8)

    assert payload is None
    with pytest.raises(PlanValidationError, match="TEP_MAX_JSON_DEPTH"):
        parse_plan(detached, limits=msgspec.structs.replace(DEFAULT_PLAN_LIMITS, max_json_depth=8))


def test_an_input_above_the_hard_cap_is_refused() -> None:
    huge = {"blob": "x" * 200_000}

    with pytest.raises(PlanValidationError, match="plan: input: the plan input is 200011 bytes"):
        detach_input(document(huge), LIMITS, max_depth=64)


def test_resume_data_by_reference_is_accepted_by_the_fold_despite_a_schema() -> None:
    plan = Plan(id="p", actions=[Action(id="w", type="wait", schema={"type": "object"})])
    state = apply_event(None, PlanSubmitted(execution_id="e1", plan=plan))
    waiting = ActionWaiting(execution_id="e1", action_id="w", reason="waitpoint", token="t")
    state = apply_event(state, waiting)
    marker = {"$ref": {"digest": "sha256:" + "a" * 64, "size": 300_000, "bucket": "tep-payloads"}}
    resume = ActionResumeRequested(execution_id="e1", action_id="w", data=marker)

    state = apply_event(state, resume)

    assert state is not None
    wait = state.actions["w"].wait
    assert wait is not None and wait.resume is not None and wait.resume.data == marker
