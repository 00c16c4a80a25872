"""Pure code reading values stored by reference: the cache, "fetch and try again", and what
templates, conditions and ``decide`` do with references."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from eventstore.conditions import ConditionError, evaluate
from eventstore.events import ActionCompleted, ActionExecuteRequested, PlanSubmitted
from eventstore.fold import apply_event
from eventstore.payload_reading import (
    PayloadCache,
    PayloadNeeded,
    PayloadReader,
    PayloadUnavailableError,
    expand,
    expand_all,
    reading_payloads,
)
from eventstore.payloads import PayloadRef, encode_payload
from eventstore.plan import Action, Condition, Plan, RequestSpec
from eventstore.state import ExecutionState
from eventstore.templates import TemplateError, render
from orchestrator.context import template_context
from orchestrator.decide import decide

URL = "http://127.0.0.1:9/x"
BIG: dict[str, Any] = {"user": {"email": "ana@example.com"}, "rows": ["x" * 100] * 50}


def ref_of(value: Any) -> PayloadRef:
    return encode_payload(value).ref


def reader_with(*values: Any) -> PayloadReader:
    reader = PayloadReader()
    for value in values:
        reader.add(ref_of(value), value)
    return reader


# --- the cache -------------------------------------------------------------------------------


def test_the_cache_drops_the_least_recently_used_beyond_its_budget() -> None:
    a, b, c = ({"v": "a" * 40}, {"v": "b" * 40}, {"v": "c" * 40})
    cache = PayloadCache(max_bytes=2 * ref_of(a).size)
    cache.put(ref_of(a), a)
    cache.put(ref_of(b), b)
    assert cache.get(ref_of(a)) == (True, a)  # a is now the most recently used

    cache.put(ref_of(c), c)

    assert cache.get(ref_of(b)) == (False, None)
    assert cache.get(ref_of(a)) == (True, a) and cache.get(ref_of(c)) == (True, c)
    assert len(cache) == 2 and cache.size == 2 * ref_of(a).size


def test_a_value_larger_than_the_budget_is_not_kept() -> None:
    cache = PayloadCache(max_bytes=10)
    cache.put(ref_of(BIG), BIG)

    assert len(cache) == 0


def test_a_reader_holds_what_was_fetched_for_its_run_even_when_the_cache_drops_it() -> None:
    reader = PayloadReader(PayloadCache(max_bytes=1))
    reader.add(ref_of(BIG), BIG)

    assert reader.lookup(ref_of(BIG)) == (True, BIG)


# --- expand ----------------------------------------------------------------------------------


def test_expand_without_the_value_at_hand_asks_for_it() -> None:
    marker = ref_of(BIG).marker()

    with pytest.raises(PayloadNeeded) as needed:
        expand(marker)
    with reading_payloads(PayloadReader()), pytest.raises(PayloadNeeded):
        expand(marker)

    assert needed.value.refs == (ref_of(BIG),)
    assert expand({"plain": 1}) == {"plain": 1}


def test_expand_gives_the_value_from_the_current_reader() -> None:
    with reading_payloads(reader_with(BIG)):
        assert expand(ref_of(BIG).marker()) == BIG


def test_expand_all_asks_for_every_missing_value_at_once_and_resolves_nested_ones() -> None:
    inner = {"item": "i" * 300}
    outer = {"items": [ref_of(inner).marker()], "pad": "p" * 300}
    other = {"other": "o" * 300}
    value = {"a": ref_of(outer).marker(), "b": ref_of(other).marker()}

    with pytest.raises(PayloadNeeded) as needed:
        expand_all(value)
    assert set(needed.value.refs) == {ref_of(outer), ref_of(other)}

    with reading_payloads(reader_with(outer, other)), pytest.raises(PayloadNeeded) as deeper:
        expand_all(value)
    assert deeper.value.refs == (ref_of(inner),)

    with reading_payloads(reader_with(outer, other, inner)):
        assert expand_all(value) == {"a": {"items": [inner], "pad": "p" * 300}, "b": other}


def test_an_unreadable_payload_is_reported_as_such() -> None:
    reader = PayloadReader()
    reader.fail(ref_of(BIG), "payload sha256:... is not in bucket tep-payloads")

    with reading_payloads(reader), pytest.raises(PayloadUnavailableError, match="not in bucket"):
        expand(ref_of(BIG).marker())


# --- templates and conditions ----------------------------------------------------------------


def state_with_output(output: Any, input_value: Any = None) -> ExecutionState:
    plan = Plan(
        id="p",
        input={} if input_value is None else input_value,
        actions=[Action(id="fetch", request=RequestSpec(url=URL)), Action(id="b", type="noop")],
    )
    state = apply_event(None, PlanSubmitted(execution_id="e1", plan=plan))
    completed = ActionCompleted(execution_id="e1", action_id="fetch", attempt=1, output=output)
    state = apply_event(state, completed)
    assert state is not None
    return state


def test_a_path_into_a_stored_output_looks_inside_it() -> None:
    context = template_context(state_with_output(ref_of(BIG).marker()))
    template = "{{actions.fetch.output.user.email}}"

    with pytest.raises(PayloadNeeded):
        render(template, context, kinds=frozenset({"actions"}))
    with reading_payloads(reader_with(BIG)):
        assert render(template, context, kinds=frozenset({"actions"})) == "ana@example.com"


def test_a_whole_stored_output_stays_a_reference_but_text_gets_it_in_full() -> None:
    marker = ref_of(BIG).marker()
    context = template_context(state_with_output(marker))
    kinds = frozenset({"actions"})

    assert render({"body": "{{actions.fetch.output}}"}, context, kinds=kinds) == {"body": marker}
    with reading_payloads(reader_with(BIG)):
        text = render("all: {{actions.fetch.output}}", context, kinds=kinds)
    assert text.startswith('all: {"user":{"email":"ana@example.com"}')


def test_a_stored_plan_input_is_looked_into_like_an_output() -> None:
    big_input = {"customer": {"id": "c-7"}, "pad": "p" * 400}
    state = state_with_output({}, input_value=ref_of(big_input).marker())

    with reading_payloads(reader_with(big_input)):
        rendered = render(
            "{{input.customer.id}}", template_context(state), kinds=frozenset({"input"})
        )

    assert rendered == "c-7"


def test_text_refuses_a_stored_value_that_holds_a_secret_template() -> None:
    sneaky = {"pad": "p" * 300, "x": "{{secrets.TOKEN}}"}
    context = template_context(state_with_output(ref_of(sneaky).marker()))

    with reading_payloads(reader_with(sneaky)), pytest.raises(TemplateError, match="secrets"):
        render("?q={{actions.fetch.output}}", context, kinds=frozenset({"actions"}))


def test_a_path_into_an_unreadable_payload_is_a_template_error() -> None:
    reader = PayloadReader()
    reader.fail(ref_of(BIG), "expired")
    context = template_context(state_with_output(ref_of(BIG).marker()))

    with reading_payloads(reader), pytest.raises(TemplateError, match="expired"):
        render("{{actions.fetch.output.user}}", context, kinds=frozenset({"actions"}))


def test_conditions_compare_against_the_stored_value() -> None:
    state = state_with_output(ref_of(BIG).marker())
    equals = Condition(path="actions.fetch.output.user.email", equals="ana@example.com")
    whole = Condition(path="actions.fetch.output", equals=BIG)

    with pytest.raises(PayloadNeeded):
        evaluate(equals, state)
    with reading_payloads(reader_with(BIG)):
        assert evaluate(equals, state) and evaluate(whole, state)
    # Whether a stored output exists or is truthy needs no fetch.
    assert evaluate(Condition(path="actions.fetch.output", exists=True), state)


def test_a_condition_into_an_unreadable_payload_is_a_condition_error() -> None:
    reader = PayloadReader()
    reader.fail(ref_of(BIG), "expired")
    condition = Condition(path="actions.fetch.output.user.email", equals="x")

    with reading_payloads(reader), pytest.raises(ConditionError, match="expired"):
        evaluate(condition, state_with_output(ref_of(BIG).marker()))


# --- decide ----------------------------------------------------------------------------------


def dependent_plan(json: Any) -> Plan:
    return Plan(
        id="p",
        actions=[
            Action(id="fetch", request=RequestSpec(url=URL)),
            Action(
                id="send",
                depends_on=["fetch"],
                request=RequestSpec(method="POST", url=URL, json=json),
            ),
        ],
    )


def completed_fetch(plan: Plan, output: Any) -> tuple[ExecutionState, ActionCompleted]:
    state = apply_event(None, PlanSubmitted(execution_id="e1", plan=plan))
    for decision in decide(state, PlanSubmitted(execution_id="e1", plan=plan)):
        state = apply_event(state, decision)
    completed = ActionCompleted(execution_id="e1", action_id="fetch", attempt=1, output=output)
    state = apply_event(state, completed)
    assert state is not None
    return state, completed


def test_decide_asks_for_a_payload_its_request_looks_into_then_decides_with_it() -> None:
    plan = dependent_plan({"to": "{{actions.fetch.output.user.email}}"})
    state, completed = completed_fetch(plan, ref_of(BIG).marker())

    with pytest.raises(PayloadNeeded) as needed:
        decide(state, completed)
    with reading_payloads(reader_with(BIG)):
        first = decide(state, completed)
    with reading_payloads(reader_with(BIG)):
        again = decide(state, completed)

    assert needed.value.refs == (ref_of(BIG),)
    [request] = [d for d in first if isinstance(d, ActionExecuteRequested)]
    assert request.request is not None and request.request.json == {"to": "ana@example.com"}
    # Deterministic: the reference names its content (only the write time differs).
    assert [(d.event_id, msgspec.structs.replace(d, occurred_at="")) for d in first] == [
        (d.event_id, msgspec.structs.replace(d, occurred_at="")) for d in again
    ]


def test_decide_passes_a_whole_stored_output_on_as_a_reference_without_fetching() -> None:
    marker = ref_of(BIG).marker()
    state, completed = completed_fetch(dependent_plan("{{actions.fetch.output}}"), marker)

    [request] = [d for d in decide(state, completed) if isinstance(d, ActionExecuteRequested)]

    assert request.request is not None and request.request.json == marker
