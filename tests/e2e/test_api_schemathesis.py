"""Schemathesis against the OpenAPI document of a real stack (see api_support.py): every
operation with generated requests, then stateful sequences along the document's links (a
submitted execution read, listed by its events, streamed, cancelled, retried, its waitpoint
resumed or rejected; a schedule added, read, paused, triggered, removed). Checked: no 5xx,
every response matches its schema (and its content type and headers), every status is one the
operation documents, invalid requests are refused, none is served without the token, what was
created can be read and what was removed cannot.

Generated plans are nearly always invalid (a 400 is the right answer), so most positive bodies
of ``POST /v1/executions`` and ``POST /v1/schedules`` are swapped for valid ones (waitpoints,
calls that succeed, calls that fail) to reach the routes behind them.

The short form runs in CI (a few examples an operation); ``-m slow`` runs the long form.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from anyio.from_thread import start_blocking_portal
from api_support import TOKENS, Api, running_api
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.errors import Flaky
from schemathesis import GenerationMode
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ensure_resource_availability,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    use_after_free,
)
from support.http_target import HttpTarget

from tep.api.app import create_app
from tep.api.config import ApiSettings
from tep.api.tokens import Tokens

CHECKS: list[CheckFunction] = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    negative_data_rejection,  # an invalid request is refused (4xx)
    ignored_auth,  # without the token: 401
    use_after_free,  # a removed schedule is gone
    ensure_resource_availability,  # a created one can be read
]
AUTH = {"Authorization": f"Bearer {TOKENS['all']}"}

# A stream of a running execution never ends: read its first state, for a few seconds at most.
_STREAM_EVENTS = 1
_REQUEST_TIMEOUT_S = 5

_SHORT = settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
_LONG = settings(_SHORT, max_examples=60, derandomize=False)

_target_url: list[str] = []
"""The stack's HTTP target, once it runs (valid plans call it)."""


@asynccontextmanager
async def _stack(directory: Path) -> AsyncIterator[Api]:
    async with HttpTarget() as target, running_api(directory, target) as api:
        _target_url[:] = [target.base_url]
        yield api


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The stack, its event loop in a thread of its own: schemathesis calls block."""
    directory = tmp_path_factory.mktemp("schemathesis")
    with (
        start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(_stack(directory)) as running,
    ):
        yield running


def _document() -> dict[str, Any]:
    """The OpenAPI document the API's code serves (``GET /openapi.json``; the first test
    checks the stack serves exactly this one): schemathesis needs it at collection time."""
    app = create_app(None, ApiSettings(), Tokens({}))  # type: ignore[arg-type]
    return app.openapi()


schema = schemathesis.openapi.from_dict(
    _document(),
    config=schemathesis.Config.from_dict(
        {
            # Schemathesis sends the token itself, so it knows which requests go without.
            "auth": {"openapi": {"HTTPBearer": {"bearer": TOKENS["all"]}}},
            "request-timeout": _REQUEST_TIMEOUT_S,
            "max-stream-events": _STREAM_EVENTS,
        }
    ),
)

# ---------------------------------------------------------------------- valid bodies

_ids = st.from_regex(r"[a-z][a-z0-9_-]{0,15}", fullmatch=True)


@st.composite
def _actions(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A chain of one to three actions, the first being what a link resumes or rejects."""
    kinds = draw(st.lists(st.sampled_from(["wait", "echo", "fail"]), min_size=1, max_size=3))
    base = _target_url[0] if _target_url else "http://127.0.0.1:9"
    actions: list[dict[str, Any]] = []
    for n, kind in enumerate(kinds, start=1):
        action: dict[str, Any] = {"id": f"a{n}"}
        if kind == "wait":
            action.update(type="wait", schema={"type": "object"})
        else:
            path = "/echo/schemathesis" if kind == "echo" else "/status/500/schemathesis"
            action["request"] = {"url": base + path}
        if n > 1:
            action["depends_on"] = [f"a{n - 1}"]
        actions.append(action)
    return actions


_plans = st.builds(lambda plan_id, actions: {"id": plan_id, "actions": actions}, _ids, _actions())
_inputs = st.none() | st.dictionaries(_ids, st.integers() | st.text(max_size=8), max_size=3)
_submissions = st.fixed_dictionaries(
    {"plan": _plans, "input": _inputs},
    optional={"execution_id": _ids, "idempotency_key": _ids},
)
_schedules = st.fixed_dictionaries(
    {
        "name": st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
        "cron": st.sampled_from(["@every 1h", "0 3 * * *", "@daily"]),
        "plan": _plans,
    },
    optional={
        "tz": st.sampled_from(["UTC", "Europe/Paris"]),
        "catch_up": st.sampled_from(["none", "one", "all"]),
    },
)
_VALID_BODIES = {
    ("POST", "/v1/executions"): _submissions,
    ("POST", "/v1/schedules"): _schedules,
}


@schema.hook
def flatmap_case(context: schemathesis.HookContext, case: Any) -> st.SearchStrategy[Any]:
    """A positive case of a submission or a new schedule, most of the time with a valid
    body (the explicit phase still sends the schema's own, nearly always invalid, ones)."""
    operation = context.operation
    valid = None
    if operation is not None and case.meta.generation.mode is GenerationMode.POSITIVE:
        valid = _VALID_BODIES.get((operation.method.upper(), operation.path))
    if valid is None:
        return st.just(case)

    def with_body(body: dict[str, Any] | None) -> Any:
        if body is not None:
            case.body = body
        return case

    return (st.none() | valid | valid | valid).map(with_body)


# ---------------------------------------------------------------------- tests


def test_the_stack_serves_the_document_under_test(api: Api) -> None:
    served = httpx.get(f"{api.url}/openapi.json", headers=AUTH, timeout=10)
    assert served.status_code == 200
    assert served.json() == schema.raw_schema


def test_what_schemathesis_found_stays_fixed(api: Api) -> None:
    """A name no schedule can have is unknown (it was a 500 from the KV store); a
    ``min_sequence`` the log has not reached is refused at once (it was a wait of the whole
    read timeout, then a 504); a body of other types than documented is refused (``0`` was
    taken for ``false``); the stream's events match the document (it said a string)."""
    plan = {"id": "found", "actions": [{"id": "approve", "type": "wait"}]}
    with httpx.Client(base_url=api.url, headers=AUTH, timeout=10) as http:
        for method, path in [("GET", ""), ("DELETE", ""), ("POST", "/trigger")]:
            answer = http.request(method, f"/v1/schedules/%C3%93{path}")
            assert answer.status_code == 404, answer.text
        assert http.patch("/v1/schedules/a.b", json={"paused": True}).status_code == 404
        lax = http.patch("/v1/schedules/any", json={"paused": 0})
        assert lax.status_code == 400 and lax.json()["problems"][0]["loc"] == ["body", "paused"]
        submitted = http.post("/v1/executions", json={"plan": plan}).json()
        far = http.get(
            f"/v1/executions/{submitted['execution_id']}", params={"min_sequence": 10**9}
        )
        assert far.status_code == 400, far.text
    stream = schema["/v1/executions/{execution_id}/stream"]["GET"]
    case = stream.Case(path_parameters={"execution_id": submitted["execution_id"]})
    answer = case.call_and_validate(
        base_url=api.url, headers=AUTH, checks=CHECKS, timeout=_REQUEST_TIMEOUT_S
    )
    assert b"event: state" in answer.content


def _call(case: Any, api: Api) -> None:
    case.call_and_validate(base_url=api.url, checks=CHECKS, timeout=_REQUEST_TIMEOUT_S)


@schema.parametrize()
@_SHORT
def test_every_operation_conforms(case: Any, api: Api) -> None:
    _call(case, api)


@pytest.mark.slow
@schema.parametrize()
@_LONG
def test_every_operation_conforms_long(case: Any, api: Api) -> None:
    _call(case, api)


def _run_stateful(api: Api, run: settings) -> None:
    """Sequences along the document's links, every response checked.

    Which links can be followed depends on the server's answers, and those on its state and
    timing (an execution ended or not yet, a schedule still there or removed), so Hypothesis
    may find a replayed sequence drawing differently and call the run flaky. Every failed step
    is recorded here: a flaky run with none is inconclusive, not a failure.
    """
    failed: list[str] = []

    class Checked(schema.as_state_machine()):  # type: ignore[misc]
        def step(self, input: Any) -> Any:
            try:
                return super().step(input)
            except Exception as exc:
                failed.append(f"{input.case.as_curl_command()}\n{exc}")
                raise

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": api.url, "timeout": _REQUEST_TIMEOUT_S}

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS)

    try:
        Checked.run(settings=run)
    except Flaky:
        assert not failed, "\n\n".join(failed)


def test_stateful_sequences_conform(api: Api) -> None:
    _run_stateful(api, settings(_SHORT, max_examples=30, stateful_step_count=6))


@pytest.mark.slow
def test_stateful_sequences_conform_long(api: Api) -> None:
    _run_stateful(api, settings(_LONG, max_examples=100, stateful_step_count=10))
