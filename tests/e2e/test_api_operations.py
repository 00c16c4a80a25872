"""The HTTP API's operation routes on a real stack (see api_support.py): cancel, retry,
resume and reject a waitpoint by id, complete one by its token, schedules, stats, metrics;
and the synchronous client.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from api_support import TOKENS, Api, approval_plan, failing_plan, running_api, slow_plan
from support.http_target import HttpTarget

from eventstore.events import ExecutionRetried
from tep.client import TepApiError, TepClient

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
    async with running_api(tmp_path_factory.mktemp("api-ops"), target) as running:
        yield running


def new_id(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


async def waiting(api: Api, execution_id: str, action_id: str) -> dict[str, Any]:
    """The action's state once the API shows it waiting."""
    async with api.client("reader") as client:
        for _ in range(300):
            state = await client.get_execution(execution_id)
            action = state.actions[action_id]
            if action.status == "waiting" and action.wait is not None:
                return {"token": action.wait.token, "state": state}
            await anyio.sleep(0.05)
    raise AssertionError(f"{action_id} never waited")


# -------------------------------------------------------------------- cancel, retry


async def test_cancel_a_running_execution_then_again(api: Api, target: HttpTarget) -> None:
    e = new_id("cancel")
    async with api.client() as client, api.client("reader") as reader:
        await client.submit(slow_plan(target, e, steps=4, delay=0.5), execution_id=e)
        async for state in reader.stream(e):
            if state.status == "running":
                break
        first = await client.cancel(e, reason="changed my mind")
        ended = [s async for s in reader.stream(e)][-1]
        second = await client.cancel(e)
        with pytest.raises(TepApiError) as refused:
            await reader.cancel(e)

    assert first.outcome == "requested" and first.sequence is not None
    assert ended.status == "cancelled" and ended.cancel_reason == "changed my mind"
    assert second.outcome == "already_ended" and second.sequence is None
    assert refused.value.status == 403


async def test_retry_a_failed_execution_from_its_step(api: Api, target: HttpTarget) -> None:
    e = new_id("retry")
    async with api.client("operator") as operator, api.client("submitter") as submitter:
        await submitter.submit(failing_plan(target, e), execution_id=e)
        failed = [s async for s in operator.stream(e)][-1]
        result = await operator.retry(e, from_actions=["broken"], reason="try once more")
        rerun = [s async for s in operator.stream(e, after=result.sequence)][-1]
        history = await operator.events(e)
        with pytest.raises(TepApiError) as running_again:
            await operator.retry(e, from_actions=["nope"])

    retried = [r.event for r in history.events if isinstance(r.event, ExecutionRetried)]
    assert failed.status == "failed"
    assert result.run == 2 and result.reset == ["broken"] and result.kept == ["first"]
    assert rerun.run == 2 and rerun.status == "failed"  # the target still answers 500
    assert retried[0].requested_by == "operator" and retried[0].reason == "try once more"
    assert running_again.value.status == 409
    assert running_again.value.type == "urn:tep:problem:retry-refused"


# ------------------------------------------------------------------------ waitpoints


async def test_resume_and_reject_by_action_id(api: Api, target: HttpTarget) -> None:
    approved, rejected = new_id("resume"), new_id("reject")
    async with api.client("operator") as operator, api.client("submitter") as submitter:
        await submitter.submit(approval_plan(target, approved), execution_id=approved)
        await submitter.submit(approval_plan(target, rejected), execution_id=rejected)
        await waiting(api, approved, "approve")
        await waiting(api, rejected, "approve")
        with pytest.raises(TepApiError) as mismatch:
            await operator.resume(approved, "approve", {"approved": "yes"})
        done = await operator.resume(approved, "approve", {"approved": True, "amount": 5})
        refused = await operator.reject(rejected, "approve", "over budget")
        with pytest.raises(TepApiError) as again:
            await operator.resume(approved, "approve", {"approved": True})
        ends = [[s async for s in operator.stream(e)][-1] for e in (approved, rejected)]

    assert mismatch.value.status == 400 and mismatch.value.problems
    assert mismatch.value.type == "urn:tep:problem:invalid-resume-data"
    assert done.status == "completed" and done.output == {"approved": True, "amount": 5}
    assert refused.status == "failed" and refused.error is not None
    assert refused.error.code == "rejected"
    assert again.value.status == 409
    assert [s.status for s in ends] == ["completed", "failed"]


async def test_complete_a_waitpoint_by_its_token(api: Api, target: HttpTarget) -> None:
    e = new_id("token")
    async with api.client("submitter") as submitter, api.client("reader") as reader:
        await submitter.submit(approval_plan(target, e), execution_id=e)
        token = (await waiting(api, e, "approve"))["token"]
        with pytest.raises(TepApiError) as wrong:
            await submitter.complete_waitpoint(f"{e}.approve.not-the-secret", {"approved": True})
        done = await submitter.complete_waitpoint(token, {"approved": True, "amount": 1})
        end = [s async for s in reader.stream(e)][-1]

    assert wrong.value.status == 409 and wrong.value.type == "urn:tep:problem:waitpoint-refused"
    assert done.status == "completed"
    assert end.status == "completed"


# ------------------------------------------------------------------------- schedules


async def test_schedules_add_list_pause_trigger_remove(api: Api, target: HttpTarget) -> None:
    name = f"nightly-{uuid.uuid4().hex[:6]}"
    plan = {"id": "scheduled", "actions": [{"id": "a", "request": {"url": target.url("/echo/s")}}]}
    async with api.client("operator") as client, api.raw("operator") as raw:
        added = await client.add_schedule(name, "0 3 * * *", plan, tz="Europe/Berlin")
        listed = await client.list_schedules()
        paused = await client.pause_schedule(name)
        resumed = await client.resume_schedule(name)
        fired = await client.trigger_schedule(name)
        ran = [s async for s in client.stream(fired.execution_id)][-1]
        after = await client.get_schedule(name)
        taken = await raw.post(
            "/v1/schedules", json={"name": name, "cron": "@hourly", "plan": plan}
        )
        bad = await raw.post(
            "/v1/schedules", json={"name": "x", "cron": "61 * * * *", "plan": plan}
        )
        await client.remove_schedule(name)
        gone = await raw.get(f"/v1/schedules/{name}")

    assert added.name == name and added.next_fire is not None and not added.paused
    assert name in [s.name for s in listed.schedules]
    assert paused.paused and paused.next_fire is None
    assert not resumed.paused and resumed.resumed_at is not None
    assert fired.execution_id.startswith(f"{name}-manual-") and ran.status == "completed"
    assert after.last_execution_id == fired.execution_id
    assert taken.status_code == 409
    assert bad.status_code == 400 and bad.json()["problems"][0]["loc"] == ["body", "cron"]
    assert gone.status_code == 404 and gone.json()["type"] == "urn:tep:problem:schedule-not-found"


# ------------------------------------------------------------------ stats, sync client


async def test_stats_metrics_and_the_sync_client(api: Api, target: HttpTarget) -> None:
    e = new_id("sync")

    def with_sync_client() -> tuple[list[str], int, str]:
        with TepClient(api.url, TOKENS["all"]) as client:
            client.submit(slow_plan(target, e, steps=1, delay=0.05), execution_id=e)
            statuses = [s.status for s in client.stream(e)]
            stats = client.stats()
            return statuses, stats.stats.executions["completed"], client.metrics()

    statuses, completed, metrics = await anyio.to_thread.run_sync(with_sync_client)

    assert statuses[-1] == "completed"
    assert completed >= 1
    assert isinstance(metrics, str)
