"""For-each actions through the whole system: 2 `tep orchestrator` replicas, 2 `tep executor`
processes and a `tep projector` on one nats-server, and an HTTP target that counts what it
receives per item and how many calls are in flight at once.

One system serves the module (each test its own executions); the executor kill runs last.
"""

from __future__ import annotations

import asyncio
import functools
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from aiohttp import web
from support.http_target import HttpTarget
from support.nats_auth import violations
from system_support import System, eventually, projected, running_system
from tep_cli import (
    DemoTarget,
    Roles,
    json_output,
    plan_against,
    run_tep,
    write_plan,
)
from test_up import embedded_args, start_up

from eventstore.error_codes import ErrorCode
from eventstore.events import (
    ActionCancelled,
    ActionCompleted,
    ActionFailed,
    ActionStarted,
    Event,
    ExecutionCompleted,
    ExecutionFailed,
)
from eventstore.fold import fold
from eventstore.plan import Action, Plan, RequestSpec
from eventstore.state import ExecutionState
from projections import StateManager
from tep.server import find_free_port

pytestmark = pytest.mark.anyio


@dataclass
class ItemTarget:
    """``/list/{run}?n=N`` lists N items; ``/item/{run}/{index}?delay=S&fail=i,j`` answers
    ``{"index", "sku"}`` after S seconds, 404 for the indexes in ``fail``. Counts per run:
    the calls per index and the most in flight at once."""

    hits: dict[str, Counter[int]] = field(default_factory=dict)
    in_flight: Counter[str] = field(default_factory=Counter)
    max_in_flight: Counter[str] = field(default_factory=Counter)
    runner: web.AppRunner | None = None
    port: int = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/list/{run}", self._list)
        app.router.add_post("/item/{run}/{index}", self._item)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _list(self, request: web.Request) -> web.Response:
        count = int(request.query["n"])
        return web.json_response({"items": [{"sku": f"sku-{i}"} for i in range(count)]})

    async def _item(self, request: web.Request) -> web.Response:
        run, index = request.match_info["run"], int(request.match_info["index"])
        body = await request.json()
        self.hits.setdefault(run, Counter())[index] += 1
        self.in_flight[run] += 1
        self.max_in_flight[run] = max(self.max_in_flight[run], self.in_flight[run])
        try:
            await asyncio.sleep(float(request.query.get("delay", "0")))
        finally:
            self.in_flight[run] -= 1
        failing = {int(i) for i in request.query.get("fail", "").split(",") if i}
        if index in failing:
            return web.json_response({"missing": index}, status=404)
        return web.json_response({"index": index, "sku": body["sku"]})


@dataclass
class ForEach:
    system: System
    target: ItemTarget
    sm: StateManager

    async def state(self, execution_id: str) -> ExecutionState:
        state = fold(await self.system.log.read_execution(execution_id))
        assert state is not None
        return state

    async def tep(self, *args: str) -> Any:
        run = functools.partial(run_tep, *args, nats_url=self.system.server.url)
        return await anyio.to_thread.run_sync(run)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def target() -> AsyncIterator[ItemTarget]:
    items = ItemTarget()
    await items.start()
    yield items
    assert items.runner is not None
    await items.runner.cleanup()


@pytest.fixture(scope="module")
async def foreach(
    tmp_path_factory: pytest.TempPathFactory, target: ItemTarget
) -> AsyncIterator[ForEach]:
    directory = tmp_path_factory.mktemp("foreach")
    async with (
        HttpTarget() as unused,
        running_system(directory, unused, orchestrators=2, executors=2, concurrency=16) as system,
        projected(system, directory) as sm,
    ):
        yield ForEach(system, target, sm)


def for_each_plan(
    target: ItemTarget,
    run: str,
    count: int,
    *,
    concurrency: int,
    delay: float = 0.0,
    fail: str = "",
    continue_on_error: bool = False,
) -> Plan:
    """List ``count`` items, POST each one, then one call that reads the collected outputs."""
    query = f"?delay={delay}" + (f"&fail={fail}" if fail else "")
    return Plan(
        id="for-each",
        actions=[
            Action(id="list", request=RequestSpec(url=target.url(f"/list/{run}?n={count}"))),
            Action(
                id="each",
                depends_on=["list"],
                for_each="{{actions.list.output.items}}",
                concurrency=concurrency,
                continue_on_error=continue_on_error,
                request=RequestSpec(
                    method="POST",
                    url=target.url(f"/item/{run}/{{{{index}}}}{query}"),
                    json={"sku": "{{item.sku}}"},
                ),
            ),
            Action(
                id="after",
                depends_on=["each"],
                request=RequestSpec(url=target.url(f"/list/{run}-after?n=1")),
            ),
        ],
    )


def outcomes_per_key(history: list[Event]) -> Counter[str]:
    return Counter(e.action_id for e in history if isinstance(e, ActionCompleted | ActionFailed))


async def test_500_items_at_concurrency_20_each_called_once_outputs_in_order(
    foreach: ForEach, target: ItemTarget
) -> None:
    system = foreach.system
    e = system.new_id("items500")
    await system.submit(e, for_each_plan(target, e, 500, concurrency=20, delay=0.02))

    end = await system.wait_end(e, timeout=120)

    assert isinstance(end, ExecutionCompleted), end
    assert target.hits[e] == Counter(range(500))  # every item exactly once
    assert target.max_in_flight[e] <= 20
    assert target.max_in_flight[e] >= 10  # it did run items side by side
    state = await foreach.state(e)
    action = state.actions["each"]
    assert action.status == "completed" and action.output is not None
    assert action.output["items"] == [{"index": i, "sku": f"sku-{i}"} for i in range(500)]
    assert action.items is not None and action.items.completed == 500
    history = await system.history(e)
    keys = outcomes_per_key(history)
    assert all(keys[f"each@{i}"] == 1 for i in range(500)) and keys["each"] == 1
    # The view shows it too, and `tep status` the item progress.
    final = await foreach.sm.wait_for_completion(e, timeout=60)
    assert final.actions["each"].output == action.output
    status = await foreach.tep("status", e)
    assert status.returncode == 0, status.stderr
    row = next(line for line in status.stdout.splitlines() if line.startswith("+ each"))
    assert "500/500 items done" in row


async def test_a_failed_item_fails_the_action_and_cancels_the_rest(
    foreach: ForEach, target: ItemTarget
) -> None:
    system = foreach.system
    e = system.new_id("itemfail")
    await system.submit(e, for_each_plan(target, e, 60, concurrency=5, delay=0.05, fail="7"))

    end = await system.wait_end(e, timeout=60)

    assert isinstance(end, ExecutionFailed), end
    assert end.failed_actions == ["each"]
    state = await foreach.state(e)
    action = state.actions["each"]
    assert action.status == "failed" and action.error is not None
    assert action.error.code == ErrorCode.ITEM_FAILED
    assert action.error.message.startswith("item 7 of 60 failed: http_4xx")
    assert state.actions["after"].status == "skipped"
    assert sum(target.hits[e].values()) < 60  # the items after the failure never ran
    assert all(count == 1 for count in target.hits[e].values())
    history = await system.history(e)
    cancelled = [x.action_id for x in history if isinstance(x, ActionCancelled)]
    assert cancelled and all(k.startswith("each@") for k in cancelled)


async def test_with_continue_on_error_the_failed_items_are_listed(
    foreach: ForEach, target: ItemTarget
) -> None:
    system = foreach.system
    e = system.new_id("itemcontinue")
    plan = for_each_plan(target, e, 30, concurrency=4, fail="3,11", continue_on_error=True)
    await system.submit(e, plan)

    end = await system.wait_end(e, timeout=60)

    assert isinstance(end, ExecutionCompleted), end
    assert target.hits[e] == Counter(range(30))
    output = (await foreach.state(e)).actions["each"].output
    assert output is not None
    assert [f["index"] for f in output["failed"]] == [3, 11]
    assert all(f["error"]["code"] == "http_4xx" for f in output["failed"])
    assert output["items"][3] is None and output["items"][11] is None
    assert output["items"][4] == {"index": 4, "sku": "sku-4"}


async def test_an_executor_killed_mid_for_each_each_item_still_has_one_outcome(
    foreach: ForEach, target: ItemTarget
) -> None:
    system = foreach.system
    e = system.new_id("itemkill")
    await system.submit(e, for_each_plan(target, e, 200, concurrency=20, delay=0.1))

    async def some_done() -> bool:
        return sum(target.hits.get(e, Counter()).values()) >= 60

    await eventually(some_done, 60, "items never got going")
    victim = system.executors[0]
    async with aiohttp.ClientSession() as session:
        health = await victim.health(session)
    assert health is not None
    assert victim.kill() == -9
    end = await system.wait_end(e, timeout=120)

    assert isinstance(end, ExecutionCompleted), end
    history = await system.history(e)
    keys = outcomes_per_key(history)
    assert all(keys[f"each@{i}"] == 1 for i in range(200)), keys
    starts = [x for x in history if isinstance(x, ActionStarted)]
    held = {s.action_id for s in starts if s.executor_id == health["executor_id"]}
    taken_over = {s.action_id for s in starts if s.executor_id != health["executor_id"]} & held
    assert taken_over  # items the killed executor was running finished elsewhere
    assert set(target.hits[e]) == set(range(200))  # calls cut off by the kill ran again
    output = (await foreach.state(e)).actions["each"].output
    assert output is not None
    assert output["items"] == [{"index": i, "sku": f"sku-{i}"} for i in range(200)]


def test_the_for_each_example_completes_and_lists_the_missing_user(
    roles: Roles, demo_target: DemoTarget, tmp_path: Path
) -> None:
    plan = write_plan(tmp_path, plan_against(demo_target, "for-each.json"))
    submitted = run_tep("submit", str(plan), "--wait", "--timeout", "60", nats_url=roles.nats_url)
    assert submitted.returncode == 0, submitted.stderr + submitted.stdout
    execution_id = submitted.stdout.split()[0]
    final = json_output(run_tep("status", execution_id, "--json", nats_url=roles.nats_url))

    users = final["actions"]["fetch-users"]["output"]
    assert [u and u["id"] for u in users["items"]] == ["4", "8", None, "15", "16"]
    assert [f["index"] for f in users["failed"]] == [2]
    assert users["failed"][0]["error"]["code"] == "http_4xx"
    messages = final["actions"]["notify"]["output"]["items"]
    assert [m["to"] for m in messages] == [
        "ada@example.test",
        "grace@example.test",
        "alan@example.test",
    ]
    report = final["actions"]["report"]["output"]["json"]
    assert report["first_user"] == users["items"][0]["name"]
    assert report["messages"] == messages


def test_the_for_each_example_under_tep_up_with_each_role_its_own_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEP_STATE_DIR", str(tmp_path / "state"))
    demo = DemoTarget(find_free_port())
    demo_args = ("--with-demo-target", "--demo-port", str(demo.port))
    up = start_up(tmp_path, *embedded_args(tmp_path), *demo_args)
    try:
        plan = write_plan(tmp_path, plan_against(demo, "for-each.json"))
        submitted = run_tep(
            "submit", str(plan), "--wait", "--json", "--timeout", "60", nats_url=up.nats_url
        )
    finally:
        up.stop()
    assert submitted.returncode == 0, submitted.stderr + submitted.stdout
    final = json_output(submitted)
    assert final["status"] == "completed"
    assert len(final["actions"]["notify"]["output"]["items"]) == 3
    # Every role did its part without a refusal.
    log = tmp_path / "data" / "nats-server.log"
    assert violations(log, tmp_path / "data" / "creds") == []
