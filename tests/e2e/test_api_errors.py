"""The HTTP API's refusals on a real nats-server and a real `tep api` process (no roles are
needed to refuse): 401/403 by token and scope, problem+json for every error (404, 405, 400
with every problem listed, 413 for a body too large), CORS off, a valid OpenAPI document.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_support import TOKENS, scopes_config
from openapi_spec_validator import validate
from support.waiting import eventually
from tep_cli import Processes, child_env, tep_command

from tep.server import EmbeddedServer, find_free_port

pytestmark = pytest.mark.anyio

LIMIT = 4096
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    nats = EmbeddedServer(data_dir=tmp_path_factory.mktemp("api-errors") / "nats")
    nats.start()
    yield nats
    nats.stop()


@pytest.fixture(scope="module")
async def url(
    server: EmbeddedServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    port = find_free_port()
    env = child_env(
        server.url,
        TEP_API_TOKENS=json.dumps(scopes_config()),
        TEP_API_MAX_BODY_BYTES=str(LIMIT),
        TEP_LOG_LEVEL="WARNING",
    )
    processes = Processes()
    log = Path(tmp_path_factory.mktemp("api-errors-log")) / "api.log"
    processes.start(tep_command("api", "--nats-url", server.url, "--port", str(port)), env, log)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=1) as http:

            async def healthy() -> bool:
                try:
                    return (await http.get("/healthz")).status_code == 200
                except httpx.HTTPError:
                    return False

            await eventually(healthy, 30, "tep api never healthy", 0.05)
        yield base
    finally:
        processes.stop_all()


def client(url: str, who: str | None = "all", **headers: str) -> httpx.AsyncClient:
    if who is not None:
        headers["Authorization"] = f"Bearer {TOKENS[who]}"
    return httpx.AsyncClient(base_url=url, headers=headers, timeout=10)


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The response's problem document, checked for the RFC 9457 members."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    document: dict[str, Any] = response.json()
    assert document["status"] == status and document["title"] and document["type"]
    assert "Traceback" not in response.text
    return document


PLAN = {"id": "p", "actions": [{"id": "a", "request": {"url": "http://127.0.0.1:9/x"}}]}


# ------------------------------------------------------------------------------ auth


async def test_health_needs_no_token_everything_else_does(url: str) -> None:
    async with (
        client(url, None) as anonymous,
        client(url, None, Authorization="Basic eDp5") as basic,
    ):
        health = await anonymous.get("/healthz")
        listed = await anonymous.get("/v1/executions")
        document = await anonymous.get("/openapi.json")
        wrong = await client(url, None, Authorization="Bearer not-a-token").get("/v1/stats")
        basic_auth = await basic.get("/v1/stats")

    assert health.status_code == 200 and health.json() == {"status": "ok", "nats_connected": True}
    assert problem(listed, 401)["type"] == "urn:tep:problem:unauthorized"
    assert listed.headers["www-authenticate"].startswith("Bearer")
    problem(document, 401)
    problem(wrong, 401)
    problem(basic_auth, 401)
    assert "not-a-token" not in wrong.text


async def test_each_route_needs_its_scope(url: str) -> None:
    async with client(url, "reader") as reader, client(url, "submitter") as submitter:
        submit_as_reader = await reader.post("/v1/executions", json={"plan": PLAN})
        read_as_submitter = await submitter.get("/v1/executions")
        cancel_as_submitter = await submitter.post("/v1/executions/x/cancel")
        schedule_as_reader = await reader.delete("/v1/schedules/x")
        stats = await reader.get("/v1/stats")

    for refused in (submit_as_reader, read_as_submitter, cancel_as_submitter, schedule_as_reader):
        assert "scope" in problem(refused, 403)["detail"]
    assert stats.status_code == 200 and "executions" in stats.json()["stats"]


async def test_the_openapi_document_is_valid(url: str) -> None:
    async with client(url, "reader") as reader:
        document = (await reader.get("/openapi.json")).json()

    validate(document)
    schemas = document["components"]["schemas"]
    assert {"ExecutionState", "Plan", "Event", "ExecutionSummary", "Problem"} <= set(schemas)
    assert document["paths"]["/v1/executions/{execution_id}/stream"]["get"]["responses"]["200"][
        "content"
    ].keys() == {"text/event-stream"}


# ---------------------------------------------------------------------------- errors


async def test_unknown_things_are_problems(url: str) -> None:
    async with client(url) as http:
        execution = await http.get("/v1/executions/exe_nobody")
        events = await http.get("/v1/executions/exe_nobody/events")
        stream = await http.get("/v1/executions/exe_nobody/stream")
        route = await http.get("/v2/nothing")
        method = await http.delete("/v1/executions")
        bad_id = await http.get("/v1/executions/not.an.id")
        bad_at = await http.get("/v1/executions/exe_nobody", params={"at": "yesterday"})
        schedule = await http.get("/v1/schedules/none")

    assert problem(execution, 404)["type"] == "urn:tep:problem:execution-not-found"
    problem(events, 404)
    problem(stream, 404)
    assert problem(route, 404)["type"] == "about:blank"
    assert problem(method, 405)["title"] == "Method Not Allowed"
    assert problem(bad_id, 400)["type"] == "urn:tep:problem:invalid-execution-id"
    assert problem(bad_at, 400)["problems"][0]["loc"] == ["at"]
    assert problem(schedule, 404)["type"] == "urn:tep:problem:schedule-not-found"


async def test_an_invalid_plan_lists_every_problem(url: str) -> None:
    cyclic = {
        "id": "bad",
        "actions": [
            {"id": "a", "depends_on": ["b"], "request": {"url": "http://127.0.0.1:9/a"}},
            {"id": "b", "depends_on": ["a"], "request": {"url": "http://127.0.0.1:9/b"}},
            {"id": "c", "depends_on": ["missing"], "request": {"url": "http://127.0.0.1:9/c"}},
        ],
    }
    async with client(url, "submitter") as http:
        invalid = await http.post("/v1/executions", json={"plan": cyclic})
        shapeless = await http.post("/v1/executions", json={"plan": 5, "extra": True})
        not_json = await http.post(
            "/v1/executions", content=b"{nope", headers={"Content-Type": "application/json"}
        )

    found = problem(invalid, 400)
    assert found["type"] == "urn:tep:problem:invalid-plan" and len(found["problems"]) >= 2
    assert all(p["message"] for p in found["problems"])
    shape = problem(shapeless, 400)
    assert {tuple(p["loc"]) for p in shape["problems"]} >= {("body", "plan"), ("body", "extra")}
    problem(not_json, 400)


async def test_a_body_above_the_limit_is_refused(url: str) -> None:
    big = {"plan": {**PLAN, "input": {"blob": "x" * (LIMIT * 2)}}}
    body = json.dumps(big).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    async with client(url, "submitter") as http:
        declared = await http.post(
            "/v1/executions", content=body, headers={"Content-Type": "application/json"}
        )
        streamed = await http.post(
            "/v1/executions", content=chunks(), headers={"Content-Type": "application/json"}
        )

    assert problem(declared, 413)["type"] == "urn:tep:problem:body-too-large"
    problem(streamed, 413)


async def test_cors_is_off_by_default(url: str) -> None:
    async with client(url, None, Origin="https://evil.example") as http:
        preflight = await http.options(
            "/v1/executions",
            headers={"Access-Control-Request-Method": "GET"},
        )
        simple = await http.get("/healthz")

    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-origin" not in simple.headers
