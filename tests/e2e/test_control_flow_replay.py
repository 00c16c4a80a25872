"""One execution that uses every control-flow feature, then a rebuild of the view from the log.

The plan has a large output stored by reference (claim check), a for-each whose items read into
it, a typed step (`output_schema`), a sub-plan, a failing action handled by its error route,
and variables (`{{execution.id}}`, `{{plan.id}}`, `{{item}}`, `{{index}}`); once it completed it
is re-run from the for-each (`tep retry --from`). Roles run as processes on one nats-server; the
rebuilt view must equal the live one key by key.
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from support.http_target import HttpTarget
from system_support import System, eventually, running_system
from tep_cli import Processes, child_env, run_tep, tep_command

from eventstore.config import TepSettings
from eventstore.events import ExecutionCompleted
from eventstore.fold import fold
from eventstore.jetstream.scan import scan_keys
from eventstore.payloads import is_payload_ref
from eventstore.plan import Action, Plan, RequestSpec
from eventstore.state import ExecutionState
from projections import StateManager, rebuild
from projections.buckets import ensure_meta_bucket, read_pointer
from projections.view import STATS_KEY, decode_stats

pytestmark = pytest.mark.anyio

ITEMS = ["a", "b", "c", "d", "e"]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def target() -> AsyncIterator[HttpTarget]:
    async with HttpTarget() as server:
        yield server


@pytest.fixture(scope="module")
async def system(
    tmp_path_factory: pytest.TempPathFactory, target: HttpTarget
) -> AsyncIterator[tuple[System, StateManager]]:
    directory = tmp_path_factory.mktemp("control-flow")
    async with running_system(directory, target, orchestrators=2, executors=2) as running:
        url = running.server.url
        projector = Processes()
        projector.start(
            tep_command("projector", "--nats-url", url),
            child_env(url, TEP_LOG_LEVEL="WARNING"),
            directory / "projector.log",
        )
        sm = StateManager(running.nc, TepSettings(nats_url=url))
        try:
            await sm.open()
            yield running, sm
        finally:
            await sm.close()
            projector.stop_all()


def _call(target: HttpTarget, path: str, action_id: str, *deps: str, **fields: Any) -> Action:
    query = fields.pop("query", {})
    request = RequestSpec(url=target.url(path), query=query, timeout_s=30)
    return Action(id=action_id, depends_on=list(deps), request=request, **fields)


def every_feature(target: HttpTarget, e: str) -> Plan:
    child = Plan(id="child", actions=[_call(target, f"/echo/{e}/child/step", "step")])
    return Plan(
        id="every-feature",
        actions=[
            _call(target, f"/json/400000/{e}", "catalog"),
            _call(
                target,
                "/echo/{{execution.id}}/each/{{index}}",
                "each",
                "catalog",
                for_each=ITEMS,
                concurrency=2,
                query={"item": "{{item}}", "email": "{{actions.catalog.output.user.email}}"},
            ),
            _call(
                target,
                f"/echo/{e}/typed",
                "typed",
                query={"plan": "{{plan.id}}"},
                output_schema={"type": "object", "required": ["method", "query"]},
            ),
            Action(id="sub", type="plan", plan=child, input={"from": "{{plan.id}}"}),
            _call(target, f"/status/500/{e}/charge", "charge", on_error=["notify"]),
            _call(
                target,
                f"/echo/{e}/notify",
                "notify",
                query={"code": "{{actions.charge.error.code}}"},
            ),
            _call(
                target,
                f"/echo/{e}/final",
                "final",
                "each",
                "typed",
                "sub",
                query={"count": "{{actions.each.output.items[4].query.item}}"},
            ),
        ],
    )


async def _tep(system: System, *args: str) -> subprocess.CompletedProcess[str]:
    run = functools.partial(run_tep, *args, nats_url=system.server.url, timeout=120)
    return await anyio.to_thread.run_sync(run)


async def _state(system: System, e: str) -> ExecutionState:
    state = fold(await system.log.read_execution(e))
    assert state is not None
    return state


async def test_a_run_using_every_feature_rebuilds_the_identical_view(
    system: tuple[System, StateManager], target: HttpTarget
) -> None:
    running, sm = system
    e = running.new_id("every")
    await running.submit(e, every_feature(target, e))
    assert isinstance(await running.wait_end(e, timeout=60), ExecutionCompleted)

    retried = await _tep(running, "retry", e, "--from", "each", "--reason", "replay")
    assert retried.returncode == 0, retried.stderr

    async def second_run_done() -> ExecutionState | None:
        state = await _state(running, e)
        return state if state.run == 2 and state.terminal else None

    state: ExecutionState = await eventually(second_run_done, 60, "run 2 did not end")

    assert state.status == "completed"
    assert is_payload_ref(state.actions["catalog"].output)  # stored by claim check
    each = state.actions["each"]
    assert each.run == 2 and [r.run for r in each.runs] == [1]
    assert each.output is not None
    assert [item["query"]["item"] for item in each.output["items"]] == ITEMS
    assert {item["path"] for item in each.output["items"]} == {
        f"/echo/{e}/each/{i}" for i in range(len(ITEMS))
    }
    assert each.output["items"][0]["query"]["email"] == f"{e}@example.com"
    assert state.actions["charge"].status == "failed"
    assert state.actions["charge"].handled_by == "notify"
    notify = state.actions["notify"].output
    assert notify is not None and notify["query"]["code"] == "http_5xx"
    assert state.actions["typed"].output is not None
    assert state.actions["typed"].output["query"]["plan"] == "every-feature"
    assert state.actions["sub"].child_execution_id is not None
    assert state.actions["final"].run == 2
    final = state.actions["final"].output
    assert final is not None and final["query"]["count"] == "e"
    # Each item of each run reached the target once; catalog ran once (upstream, kept).
    hits = running.hits_per_action(e)
    assert hits["catalog"] == 1
    assert all(hits[f"each@{i}"] == 1 and hits[f"each~2@{i}"] == 1 for i in range(len(ITEMS)))

    last = await running.log.last_sequence()
    await sm.wait_for_sequence(last, timeout=30)
    pointer = await read_pointer(await ensure_meta_bucket(running.log.js, sm.settings))
    assert pointer is not None
    live = await scan_keys(running.nc, pointer.bucket)
    report = await rebuild(running.nc, sm.settings, keep_old=True)
    rebuilt = await scan_keys(running.nc, report.bucket)

    assert await running.log.last_sequence() == last  # nothing happened meanwhile
    assert _comparable(rebuilt) == _comparable(live)
    viewed = await sm.get_execution_state(e)
    assert viewed is not None and viewed.run == 2 and viewed.status == "completed"


def _comparable(contents: dict[str, bytes]) -> dict[str, object]:
    return {k: decode_stats(v) if k == STATS_KEY else v for k, v in contents.items()}
