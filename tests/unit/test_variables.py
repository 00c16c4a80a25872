"""Variables: ``{{execution.id}}``, ``{{execution.run}}``, ``{{plan.id}}``, ``{{now}}`` rendered
by the orchestrator, ``{{env.NAME}}`` by the executor from its allow-list. Without a server."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from eventstore.errors import PlanValidationError, SettingsError
from eventstore.events import (
    ActionCompleted,
    ActionExecuteRequested,
    ActionFailed,
    ActionWaiting,
    PlanSubmitted,
)
from eventstore.fold import apply_event
from eventstore.plan import Action, Plan, RequestSpec
from eventstore.plan_validation import parse_plan
from eventstore.state import ExecutionState
from eventstore.templates import TemplateError, render
from executor.config import ExecutorConfig
from executor.errors import NonRetryableError
from executor.handler_call import call_handler
from executor.handlers import AttemptInfo, HandlerResult, set_current_attempt
from executor.secret_grants import Destination
from executor.secrets import SecretScope
from orchestrator.context import CONTEXT_KINDS, template_context, timestamp
from orchestrator.decide import decide
from orchestrator.dispatch import DISPATCH_KINDS, build_request

NOW = datetime(2030, 1, 31, 9, 15, 30, 123456, tzinfo=UTC)
NOW_TEXT = "2030-01-31T09:15:30.123456Z"
URL = "http://127.0.0.1:9/x"
VARIABLES = {
    "url": "http://127.0.0.1:9/{{plan.id}}/{{execution.id}}?run={{execution.run}}",
    "headers": {"X-Now": "{{now}}", "X-Run": "{{execution.run}}"},
    "json": {
        "execution": "{{execution.id}}",
        "run": "{{execution.run}}",
        "plan": "{{plan.id}}",
        "at": "{{now}}",
        "text": "run {{execution.run}} of {{plan.id}} at {{now}}",
    },
}


def submitted(*actions: dict[str, Any], execution_id: str = "exe-1") -> PlanSubmitted:
    plan = parse_plan({"id": "nightly-report", "actions": list(actions)})
    return PlanSubmitted(execution_id=execution_id, plan=plan)


def state_of(event: PlanSubmitted) -> ExecutionState:
    state = apply_event(None, event)
    assert state is not None
    return state


# --- the orchestrator's variables -----------------------------------------------------------


def test_the_context_holds_the_execution_the_plan_and_the_moment() -> None:
    state = state_of(submitted({"id": "a", "request": {"url": URL}}))

    context = template_context(state, now=NOW)

    assert context["execution"] == {"id": "exe-1", "run": 1}
    assert context["plan"] == {"id": "nightly-report"}
    assert context["now"] == NOW_TEXT
    assert {"execution", "plan", "now"} <= CONTEXT_KINDS <= DISPATCH_KINDS


def test_now_is_iso_8601_utc_as_the_log_writes_times() -> None:
    eastern = datetime(2030, 1, 31, 4, 15, 30, 123456).astimezone()

    assert timestamp(NOW) == NOW_TEXT
    assert timestamp(eastern).endswith("Z")


def test_without_a_moment_now_resolves_to_nothing() -> None:
    state = state_of(submitted({"id": "a", "request": {"url": URL}}))

    with pytest.raises(TemplateError, match="now"):
        render("{{now}}", template_context(state), kinds=DISPATCH_KINDS)


def test_every_variable_is_rendered_into_the_request_at_dispatch() -> None:
    event = submitted({"id": "a", "request": VARIABLES})
    state = state_of(event)

    [request] = decide(state, event, now=NOW)

    assert isinstance(request, ActionExecuteRequested) and request.request is not None
    spec = request.request
    assert spec.url == "http://127.0.0.1:9/nightly-report/exe-1?run=1"
    assert spec.headers == {"X-Now": NOW_TEXT, "X-Run": "1"}
    assert spec.json == {
        "execution": "exe-1",
        "run": 1,
        "plan": "nightly-report",
        "at": NOW_TEXT,
        "text": f"run 1 of nightly-report at {NOW_TEXT}",
    }


def test_a_string_of_several_templates_and_nothing_else_is_rendered_as_text() -> None:
    state = state_of(submitted({"id": "a", "request": {"url": URL}}))

    rendered = render(
        "{{execution.id}}-{{execution.run}}", template_context(state), kinds=DISPATCH_KINDS
    )

    assert rendered == "exe-1-1"


def test_the_run_follows_the_execution() -> None:
    event = submitted({"id": "a", "request": {"url": URL, "json": {"run": "{{execution.run}}"}}})
    state = state_of(event)
    state.run = 3

    request = build_request(event.plan.actions[0], state, event_id="x", now=NOW)

    assert request.request is not None and request.request.json == {"run": 3}


def test_a_decision_taken_again_renders_the_same_request() -> None:
    event = submitted({"id": "a", "request": VARIABLES})

    [first] = decide(state_of(event), event, now=NOW)
    [again] = decide(state_of(event), event, now=NOW)

    assert isinstance(first, ActionExecuteRequested) and isinstance(again, ActionExecuteRequested)
    assert (first.event_id, first.request) == (again.event_id, again.request)


def test_without_a_given_moment_now_is_when_the_triggering_event_occurred() -> None:
    event = submitted({"id": "a", "request": {"url": URL, "json": {"at": "{{now}}"}}})

    [request] = decide(state_of(event), event)

    assert isinstance(request, ActionExecuteRequested) and request.request is not None
    assert request.request.json == {"at": event.occurred_at}


def test_variables_are_rendered_into_a_handlers_input_too() -> None:
    event = submitted({"id": "a", "type": "report", "input": {"for": "{{execution.id}}"}})

    [request] = decide(state_of(event), event, now=NOW)

    assert isinstance(request, ActionExecuteRequested) and request.input == {"for": "exe-1"}


def test_a_sleep_until_may_use_the_variables() -> None:
    event = submitted({"id": "nap", "type": "sleep", "until": "{{now}}"})

    decisions = decide(state_of(event), event, now=NOW)

    waiting, woke = decisions[0], decisions[1]
    assert isinstance(waiting, ActionWaiting) and waiting.until == NOW_TEXT
    assert isinstance(woke, ActionCompleted) and woke.output == {"slept_until": NOW_TEXT}


def test_a_plan_id_holding_a_call_time_template_is_not_substituted() -> None:
    plan = Plan(id="{{env.HOME}}", actions=[Action(id="a", request=RequestSpec(url=URL))])
    state = state_of(PlanSubmitted(execution_id="e", plan=plan))

    with pytest.raises(TemplateError, match="refusing"):
        render("{{plan.id}}", template_context(state, now=NOW), kinds=DISPATCH_KINDS)


def test_the_variables_pass_validation_and_an_unknown_field_does_not() -> None:
    parse_plan({"id": "p", "actions": [{"id": "a", "request": VARIABLES}]})
    with pytest.raises(PlanValidationError) as caught:
        parse_plan({"id": "p", "actions": [{"id": "a", "request": {"url": "{{plan.name}}"}}]})

    assert caught.value.problems == [
        'action "a": request.url: {{plan.name}}: use plan.id',
    ]


# --- upstream data must not smuggle in a call-time template -------------------------------------


def test_an_upstream_output_holding_an_env_template_is_not_substituted() -> None:
    event = submitted(
        {"id": "fetch", "request": {"url": URL}},
        {
            "id": "send",
            "depends_on": ["fetch"],
            "request": {"url": URL, "json": {"note": "{{actions.fetch.output.note}}"}},
        },
    )
    state = state_of(event)
    decide(state, event, now=NOW)
    completed = ActionCompleted(
        execution_id="exe-1", action_id="fetch", attempt=1, output={"note": "{{env.HOME}}"}
    )
    apply_event(state, completed)

    [failed, *_] = decide(state, completed, now=NOW)

    assert isinstance(failed, ActionFailed) and failed.action_id == "send"
    assert failed.error.code == "invalid_request"
    assert "{{env.*}} template; refusing to substitute it" in failed.error.message


# --- the executor's environment ---------------------------------------------------------------


def destination(_: Any) -> Destination:
    return Destination.of_url(URL)


def test_an_allowed_variable_is_substituted_and_not_redacted() -> None:
    scope = SecretScope({"REGION": "eu-west-1"}, allowed_env=frozenset({"REGION"}))

    resolved = scope.resolve({"url": "http://h/{{env.REGION}}/x"}, destination=destination)

    assert resolved == {"url": "http://h/eu-west-1/x"}
    assert not scope.active and scope.scrub_text("in eu-west-1") == "in eu-west-1"


def test_a_variable_not_on_the_allow_list_fails_naming_it_and_how_to_allow_it() -> None:
    scope = SecretScope({"STAGE": "production-db"}, allowed_env=frozenset({"REGION"}))

    with pytest.raises(NonRetryableError) as caught:
        scope.resolve("{{env.STAGE}}", destination=destination)

    error = caught.value
    assert error.code == "invalid_request" and not error.retryable
    assert error.message == (
        "{{env.STAGE}} is not on this executor's environment allow-list; allow it with "
        "`tep executor --allow-env STAGE` or TEP_EXECUTOR_ALLOW_ENV=STAGE"
    )
    assert "production-db" not in error.message


def test_an_allowed_variable_that_is_not_set_fails() -> None:
    scope = SecretScope({}, allowed_env=frozenset({"REGION"}))

    with pytest.raises(NonRetryableError, match=r"does not set REGION \(for \{\{env.REGION\}\}\)"):
        scope.resolve("{{env.REGION}}", destination=destination)


def test_secrets_and_env_resolve_in_one_pass_only_secrets_are_scrubbed() -> None:
    env = {
        "REGION": "eu-west-1",
        "TEP_SECRET_TOKEN": "s3cr3t-t0ken",
        "TEP_SECRET_TOKEN_HOSTS": "127.0.0.1",
    }
    scope = SecretScope(env, allowed_env=frozenset({"REGION"}))

    resolved = scope.resolve("{{env.REGION}}:{{secrets.TOKEN}}", destination=destination)

    assert resolved == "eu-west-1:s3cr3t-t0ken"
    assert scope.names == ("TOKEN",)
    assert scope.scrub_text(resolved) == "eu-west-1:[redacted]"


def test_an_env_value_holding_a_template_is_not_resolved_again() -> None:
    env = {"NOTE": "{{secrets.TOKEN}}", "TEP_SECRET_TOKEN": "s3cr3t-t0ken"}
    scope = SecretScope(env, allowed_env=frozenset({"NOTE"}))

    assert scope.resolve("{{env.NOTE}}", destination=destination) == "{{secrets.TOKEN}}"


async def _record(request: ActionExecuteRequested) -> dict[str, Any]:
    assert request.request is not None
    return {"url": request.request.url, "input": request.input}


@pytest.mark.anyio
async def test_a_call_gets_the_env_values_in_its_request_and_input() -> None:
    set_current_attempt(
        AttemptInfo(
            execution_id="e1",
            action_id="a",
            action_type="http",
            attempt=1,
            max_attempts=1,
            timeout_s=5.0,
            idempotency_key="e1:a",
        )
    )
    request = ActionExecuteRequested(
        execution_id="e1",
        action_id="a",
        action_type="http",
        queue="http",
        request=RequestSpec(url="http://127.0.0.1:9/{{env.STAGE}}"),
        input={"region": "{{env.REGION}}"},
    )
    scope = SecretScope(
        {"REGION": "eu", "STAGE": "beta"}, allowed_env=frozenset({"REGION", "STAGE"})
    )

    result = await call_handler(
        _record, request, scope, timeout_s=5, queue="http", resolve_secrets=True
    )

    assert isinstance(result, HandlerResult)
    assert result.output == {"url": "http://127.0.0.1:9/beta", "input": {"region": "eu"}}


# --- the allow-list setting -------------------------------------------------------------------


def test_the_allow_list_is_a_flag_list_or_a_comma_separated_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert ExecutorConfig.from_env(allow_env=("REGION", "STAGE")).allow_env == ("REGION", "STAGE")
    monkeypatch.setenv("TEP_EXECUTOR_ALLOW_ENV", "REGION, STAGE")
    assert ExecutorConfig.from_env().allow_env == ("REGION", "STAGE")
    monkeypatch.setenv("TEP_EXECUTOR_ALLOW_ENV", '["ZONE"]')
    assert ExecutorConfig.from_env().allow_env == ("ZONE",)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("TEP_SECRET_TOKEN", "use {{secrets.TOKEN}}"),
        ("MY-VAR", "is not an environment variable name"),
        ("1ST", "is not an environment variable name"),
    ],
)
def test_the_allow_list_refuses_secrets_and_names_that_are_not_variables(
    name: str, why: str
) -> None:
    with pytest.raises(SettingsError, match="allow_env") as caught:
        ExecutorConfig.from_env(allow_env=(name,))

    assert why in str(caught.value)
