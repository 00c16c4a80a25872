"""The HTTP API's execution routes on a real stack (see api_support.py): submit, list with
filters and cursors, read now and as of a sequence or a time, events, and the SSE stream
(every transition in order; resumed with Last-Event-ID without loss, also across a restart
of `tep api` by the client itself). Responses are checked against the OpenAPI document.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import httpx
import jsonschema
import msgspec
import pytest
from api_support import Api, running_api, slow_plan
from support.http_target import HttpTarget

from eventstore.fold import apply
from eventstore.state import ExecutionState
from projections.view import detached_state
from tep.client import AsyncTepClient

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def target() -> AsyncIterator[HttpTarget]:
    async with HttpTarget() as server:
        yield server


@pytest.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory, target: HttpTarget) -> AsyncIterator[Api]:
    async with running_api(tmp_path_factory.mktemp("api"), target) as running:
        yield running


@pytest.fixture(scope="module")
async def openapi(api: Api) -> dict[str, Any]:
    async with api.client("reader") as client:
        return await client.openapi()


def conforms(openapi: dict[str, Any], component: str, document: Any) -> None:
    """``document`` is valid against the OpenAPI document's component."""
    schema = {"$ref": f"#/components/schemas/{component}", "components": openapi["components"]}
    jsonschema.Draft202012Validator(schema).validate(document)


def new_id(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, str | None, str]]:
    """(event, id, data) of each SSE event of a streaming response."""
    event, last_id, data = "message", None, []
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield event, last_id, "\n".join(data)
            event, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
            elif name == "id":
                last_id = value


async def history_states(api: Api, execution_id: str) -> list[ExecutionState]:
    """The state after each event of the execution's history, folded here."""
    states = []
    state = None
    for record in await api.system.log.read_execution(execution_id):
        state = apply(state, record)
        assert state is not None
        states.append(detached_state(state))
    return states


# ------------------------------------------------------------------------ submit, read


async def test_submit_read_events_and_time_travel(
    api: Api, target: HttpTarget, openapi: dict[str, Any]
) -> None:
    e = new_id("read")
    async with api.client() as client, api.raw() as raw:
        started = await client.submit(slow_plan(target, e, steps=2, delay=0.05), execution_id=e)
        states = [s async for s in client.stream(e, after=0)]
        final = states[-1]
        now = await client.get_execution(e, min_sequence=final.last_sequence)
        page = await client.events(e)
        middle = page.events[len(page.events) // 2]
        as_of = await client.get_execution(e, at=middle.sequence)
        moment = datetime.fromisoformat(middle.event.occurred_at)
        as_of_time = await client.get_execution(e, at=moment.isoformat())
        before_any = await raw.get(f"/v1/executions/{e}", params={"at": "1"})
        state_json = (await raw.get(f"/v1/executions/{e}")).json()
        events_json = (await raw.get(f"/v1/executions/{e}/events")).json()
        later = await client.events(e, after=middle.sequence, limit=2)

    assert started.created and started.execution_id == e and started.state.status == "pending"
    assert final.status == "completed" and now.status == "completed"
    assert now.actions["s2"].output is not None
    folded = await history_states(api, e)
    assert [s.last_sequence for s in states] == [r.sequence for r in page.events]
    assert [s.status for s in states] == [s.status for s in folded]
    assert as_of.last_sequence == middle.sequence
    assert msgspec.to_builtins(as_of) == msgspec.to_builtins(folded[len(page.events) // 2])
    assert as_of_time.last_sequence >= middle.sequence
    assert before_any.status_code in (400, 200)  # sequence 1 may predate this execution
    assert [r.sequence for r in later.events] == [
        r.sequence for r in page.events if r.sequence > middle.sequence
    ][:2]
    conforms(openapi, "ExecutionState", state_json)
    conforms(openapi, "EventPage", events_json)


async def test_list_filters_counts_and_cursor_pages(
    api: Api, target: HttpTarget, openapi: dict[str, Any]
) -> None:
    plan_id = f"listed-{uuid.uuid4().hex[:6]}"
    ids = [new_id("list") for _ in range(5)]
    async with api.client() as client, api.raw("reader") as raw:
        since = datetime.now(UTC) - timedelta(seconds=1)
        for e in ids:
            plan = {
                "id": plan_id,
                "actions": [{"id": "a", "request": {"url": target.url(f"/echo/{e}")}}],
            }
            await client.submit(plan, execution_id=e)
        for e in ids:
            [s async for s in client.stream(e)]
        await _until_listed(client, plan_id, len(ids))
        first = await client.list_executions(plan=plan_id, limit=2, submitted_after=since)
        second = await client.list_executions(plan=plan_id, limit=2, cursor=first.next_cursor)
        everything = [s.execution_id async for s in client.iter_executions(plan=plan_id, limit=2)]
        oldest = await client.list_executions(plan=plan_id, order="asc", limit=1)
        completed = await client.list_executions(plan=plan_id, status="completed")
        searched = await client.list_executions(q=ids[3][-8:])
        none_before = await client.list_executions(plan=plan_id, submitted_before=since)
        page_json = (await raw.get("/v1/executions", params={"plan": plan_id})).json()
        bad_cursor = await raw.get("/v1/executions", params={"cursor": "nonsense"})
        bad_status = await raw.get("/v1/executions", params={"status": "sleeping"})

    assert first.total == 5 and first.counts == {"completed": 5}
    assert len(first.items) == 2 and len(second.items) == 2
    assert not {s.execution_id for s in first.items} & {s.execution_id for s in second.items}
    assert everything == list(reversed(ids))  # newest first
    assert [s.execution_id for s in oldest.items] == [ids[0]]
    assert completed.total == 5
    assert [s.execution_id for s in searched.items] == [ids[3]]
    assert none_before.total == 0
    conforms(openapi, "ExecutionPage", page_json)
    assert bad_cursor.status_code == 400 and bad_cursor.json()["problems"][0]["loc"] == ["cursor"]
    assert bad_status.status_code == 400
    assert bad_status.headers["content-type"] == "application/problem+json"


async def _until_listed(client: AsyncTepClient, plan_id: str, count: int) -> None:
    for _ in range(200):
        if (await client.list_executions(plan=plan_id, status="completed")).total == count:
            return
        await anyio.sleep(0.05)
    raise AssertionError(f"the view never listed {count} completed executions of {plan_id}")


async def test_idempotency_key_returns_the_first_execution(api: Api, target: HttpTarget) -> None:
    key = f"order-{uuid.uuid4().hex}"
    plan = {"id": "idem", "actions": [{"id": "a", "request": {"url": target.url("/echo/idem")}}]}
    other = {"id": "idem", "actions": [{"id": "b", "request": {"url": target.url("/echo/idem")}}]}
    async with api.client("submitter") as client, api.raw("submitter") as raw:
        first = await client.submit(plan, idempotency_key=key)
        again = await raw.post(
            "/v1/executions", json={"plan": plan}, headers={"Idempotency-Key": key}
        )
        clash = await raw.post("/v1/executions", json={"plan": other, "idempotency_key": key})
        taken = await raw.post(
            "/v1/executions", json={"plan": plan, "execution_id": first.execution_id}
        )

    assert first.created
    assert again.status_code == 200 and again.json()["created"] is False
    assert again.json()["execution_id"] == first.execution_id
    assert again.headers["location"] == f"/v1/executions/{first.execution_id}"
    assert (
        clash.status_code == 422
        and clash.json()["type"] == "urn:tep:problem:idempotency-key-reused"
    )
    assert taken.status_code == 409 and taken.json()["type"] == "urn:tep:problem:execution-exists"


# ------------------------------------------------------------------------------- stream


async def test_stream_resumes_after_last_event_id_without_loss(
    api: Api, target: HttpTarget
) -> None:
    e = new_id("resume")
    async with api.client() as client, api.raw("reader") as raw:
        await client.submit(slow_plan(target, e, steps=4, delay=0.25), execution_id=e)
        first: list[tuple[str | None, dict[str, Any]]] = []
        async with raw.stream("GET", f"/v1/executions/{e}/stream", params={"after": 0}) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            async for event, event_id, data in sse_events(response):
                assert event == "state"
                first.append((event_id, msgspec.json.decode(data)))
                if len(first) == 3:
                    break
        resumed: list[tuple[str, str | None, dict[str, Any]]] = []
        headers = {"Last-Event-ID": str(first[-1][0])}
        params = {"until_end": "true"}
        async with raw.stream(
            "GET", f"/v1/executions/{e}/stream", headers=headers, params=params
        ) as response:
            async for event, event_id, data in sse_events(response):
                resumed.append((event, event_id, msgspec.json.decode(data)))
        page = await client.events(e)

    states = [state for _, state in first] + [
        data for event, _, data in resumed if event == "state"
    ]
    ids = [event_id for event_id, _ in first] + [i for event, i, _ in resumed if event == "state"]
    sequences = [r.sequence for r in page.events]
    assert ids == [str(s) for s in sequences]  # every event's state, once each, in order
    assert [s["last_sequence"] for s in states] == sequences
    assert resumed[-1][0] == "end" and resumed[-1][2]["status"] == "completed"
    assert states[-1]["status"] == "completed"


async def test_stream_from_now_then_a_resume_from_the_end_ends_at_once(
    api: Api, target: HttpTarget
) -> None:
    e = new_id("now")
    async with api.client("reader") as reader, api.client("submitter") as submitter:
        await submitter.submit(slow_plan(target, e, steps=1, delay=0.05), execution_id=e)
        live = [s async for s in reader.stream(e)]
        again = [s async for s in reader.stream(e, after=live[-1].last_sequence)]
        replayed = [s async for s in reader.stream(e)]

    assert live[-1].status == "completed"
    assert [s.last_sequence for s in live] == sorted({s.last_sequence for s in live})
    assert again == []
    assert [s.status for s in replayed] == ["completed"]


async def test_client_stream_survives_a_restart_of_the_api(api: Api, target: HttpTarget) -> None:
    e = new_id("restart")
    seen: list[ExecutionState] = []
    async with api.client() as client:
        await client.submit(slow_plan(target, e, steps=4, delay=0.5), execution_id=e)
        async with contextlib.aclosing(client.stream(e, after=0)) as states:
            async for state in states:
                seen.append(state)
                if len(seen) == 2:
                    await api.restart()
        page = await client.events(e)

    assert [s.last_sequence for s in seen] == [r.sequence for r in page.events]
    assert seen[-1].status == "completed"
