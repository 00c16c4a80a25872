"""Sub-plans through the whole system: 2 `tep orchestrator` replicas, a `tep executor`, a
`tep projector` on one nats-server and a real HTTP target; registry plans put with `tep plan`.

Each test runs its own executions on the module's system: an inline sub-plan whose outputs the
parent uses downstream, a registry plan by `plan_ref`, a failing child, a parent cancelled
while its child waits on a slow target, a missing registry name and a plan that runs itself
until the depth limit stops it.
"""

from __future__ import annotations

import functools
import json
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from support.http_target import HttpTarget
from system_support import System, eventually, projected, running_system
from tep_cli import run_tep, write_plan

from eventstore.error_codes import ErrorCode
from eventstore.events import (
    ExecutionCancelled,
    ExecutionCancelRequested,
    ExecutionCompleted,
    ExecutionFailed,
    PlanSubmitted,
)
from eventstore.fold import fold
from eventstore.jetstream.scan import scan_keys
from eventstore.plan import Action, Plan, RequestSpec
from eventstore.state import ExecutionState
from orchestrator.subplans import child_execution_id
from projections import StateManager, rebuild
from projections.buckets import ensure_meta_bucket, read_pointer
from projections.view import STATS_KEY, decode_stats

pytestmark = pytest.mark.anyio


@dataclass
class Subplans:
    """The system, a StateManager on its connection, `tep` commands against it, a work dir."""

    system: System
    sm: StateManager
    directory: Path

    async def tep(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``tep ARGS`` as a subprocess (in a thread: the HTTP target shares this loop)."""
        run = functools.partial(run_tep, *args, nats_url=self.system.server.url)
        return await anyio.to_thread.run_sync(run)

    async def state(self, execution_id: str) -> ExecutionState:
        """The execution's state folded from the log."""
        state = fold(await self.system.log.read_execution(execution_id))
        assert state is not None, execution_id
        return state

    async def viewed(self, execution_id: str) -> ExecutionState:
        """The execution's state in the projected view, once it has ended there."""

        async def ended() -> ExecutionState | None:
            state = await self.sm.get_execution_state(execution_id)
            return state if state is not None and state.terminal else None

        found: ExecutionState = await eventually(ended, 15, f"{execution_id} not in the view")
        return found


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def target() -> AsyncIterator[HttpTarget]:
    async with HttpTarget() as server:
        yield server


@pytest.fixture(scope="module")
async def subplans(
    tmp_path_factory: pytest.TempPathFactory, target: HttpTarget
) -> AsyncIterator[Subplans]:
    directory = tmp_path_factory.mktemp("subplans")
    async with (
        running_system(directory, target, orchestrators=2, executors=1) as system,
        projected(system, directory) as sm,
    ):
        yield Subplans(system, sm, directory)


def call(target: HttpTarget, execution_id: str, action_id: str, *deps: str, **query: str) -> Action:
    spec = RequestSpec(url=target.url(f"/echo/{execution_id}/{action_id}"), query=query)
    return Action(id=action_id, depends_on=list(deps), request=spec)


def greeting(target: HttpTarget, execution_id: str) -> Plan:
    """The child: one call that echoes who it greets."""
    return Plan(
        id="greeting",
        input={"who": "nobody"},
        actions=[call(target, execution_id, "hello", who="{{input.who}}")],
    )


def parent_of(child: Action, target: HttpTarget, execution_id: str) -> Plan:
    """fetch -> the sub-plan action ``child`` -> after, which uses the child's output."""
    got = "{{actions.child.output.actions.hello.query.who}}"
    return Plan(
        id="parent",
        actions=[
            call(target, execution_id, "fetch", name="ada"),
            child,
            call(target, execution_id, "after", "child", got=got),
        ],
    )


def as_document(plan: Plan) -> dict[str, Any]:
    document: dict[str, Any] = msgspec.to_builtins(plan)
    return document


# ------------------------------------------------------------------------------ inline


async def test_an_inline_subplan_completes_and_the_parent_uses_its_output(
    subplans: Subplans, target: HttpTarget
) -> None:
    system = subplans.system
    e = system.new_id("inline")
    child = Action(
        id="child",
        type="plan",
        depends_on=["fetch"],
        plan=greeting(target, e),
        input={"who": "{{actions.fetch.output.query.name}}"},
    )
    await system.submit(e, parent_of(child, target, e))

    end = await system.wait_end(e)

    child_id = child_execution_id(e, "child")
    assert isinstance(end, ExecutionCompleted)
    assert isinstance(await system.end_of(child_id), ExecutionCompleted)
    assert [h.query["who"] for h in target.hits_for(f"/echo/{e}/hello")] == ["ada"]
    assert [h.query["got"] for h in target.hits_for(f"/echo/{e}/after")] == ["ada"]
    [submitted] = [x for x in await system.history(child_id) if isinstance(x, PlanSubmitted)]
    assert submitted.parent is not None and submitted.parent.execution_id == e
    assert submitted.plan.input == {"who": "ada"}

    parent, viewed_child = await subplans.viewed(e), await subplans.viewed(child_id)
    action = parent.actions["child"]
    assert action.child_execution_id == child_id and action.status == "completed"
    assert action.output is not None and action.output["execution_id"] == child_id
    assert action.output["actions"]["hello"]["query"] == {"who": "ada"}
    assert viewed_child.parent is not None
    assert (viewed_child.parent.execution_id, viewed_child.parent.action_id) == (e, "child")
    status = await subplans.tep("status", e)
    child_status = await subplans.tep("status", child_id)
    assert status.returncode == 0, status.stderr
    row = next(line for line in status.stdout.splitlines() if " child " in f" {line} ")
    assert f"child {child_id}" in row and "completed" in row
    assert f"parent     {e} (sub-plan action child, depth 1)" in child_status.stdout


# ------------------------------------------------------------------------- registry


async def test_tep_plan_put_and_a_plan_ref_run_the_registered_plan(
    subplans: Subplans, target: HttpTarget
) -> None:
    system = subplans.system
    e = system.new_id("by-ref")
    name = f"greeting-{e}"
    path = write_plan(subplans.directory, as_document(greeting(target, e)), f"{name}.json")

    put = await subplans.tep("plan", "put", name, str(path), "--json")
    again = await subplans.tep("plan", "put", name, str(path))
    got = await subplans.tep("plan", "get", name)
    listed = await subplans.tep("plan", "list", "--json")
    child = Action(
        id="child",
        type="plan",
        depends_on=["fetch"],
        plan_ref=name,
        input={"who": "{{actions.fetch.output.query.name}}"},
    )
    await system.submit(e, parent_of(child, target, e))
    end = await system.wait_end(e)

    assert put.returncode == 0, put.stderr
    first = json.loads(put.stdout)
    assert first["name"] == name and first["plan_id"] == "greeting" and first["revision"] > 0
    assert again.returncode == 0 and again.stdout.startswith(f"plan {name} stored as revision ")
    assert int(again.stdout.split()[5]) > first["revision"]
    assert got.returncode == 0 and json.loads(got.stdout)["id"] == "greeting"
    assert name in [p["name"] for p in json.loads(listed.stdout)["plans"]]
    assert isinstance(end, ExecutionCompleted)
    assert [h.query["got"] for h in target.hits_for(f"/echo/{e}/after")] == ["ada"]
    registered = await subplans.sm.get_plan(name)
    assert registered is not None and registered.plan.id == "greeting"


async def test_an_invalid_plan_is_not_put(subplans: Subplans) -> None:
    path = write_plan(subplans.directory, {"id": "bad", "actions": []}, "bad.json")

    refused = await subplans.tep("plan", "put", "bad", str(path))
    bad_name = await subplans.tep("plan", "put", "no spaces", str(path))
    unknown = await subplans.tep("plan", "get", "never-put")

    assert refused.returncode == 2
    assert refused.stderr == f"tep: {path}: plan: actions: a plan needs at least one action\n"
    assert bad_name.returncode == 2 and "must match" in bad_name.stderr
    assert unknown.returncode == 2 and '"never-put"' in unknown.stderr
    assert await subplans.sm.get_plan("bad") is None


async def test_a_missing_plan_ref_fails_the_action_naming_the_plan(
    subplans: Subplans, target: HttpTarget
) -> None:
    system = subplans.system
    e = system.new_id("missing")
    await system.submit(
        e, parent_of(Action(id="child", type="plan", plan_ref="not-registered"), target, e)
    )

    end = await system.wait_end(e)

    error = (await subplans.state(e)).actions["child"].error
    assert isinstance(end, ExecutionFailed)
    assert error is not None and error.code == ErrorCode.PLAN_NOT_FOUND
    assert '"not-registered"' in error.message
    assert target.hits_for(f"/echo/{e}/after") == []


async def test_a_plan_running_itself_stops_at_the_depth_limit_which_the_error_states(
    subplans: Subplans,
) -> None:
    system = subplans.system
    e = system.new_id("deep")
    name = f"again-{e}"
    looping = Plan(id="again", actions=[Action(id="down", type="plan", plan_ref=name)])
    await subplans.sm.put_plan(name, looping)

    await system.submit(e, looping)
    end = await system.wait_end(e, timeout=30)

    assert isinstance(end, ExecutionFailed)
    assert "deeper than the limit of 5 (setting TEP_MAX_SUBPLAN_DEPTH)" in end.error.message
    chain, current = [], e
    for _ in range(5):
        current = child_execution_id(current, "down")
        chain.append(current)
    deepest = await subplans.state(chain[-1])
    assert deepest.parent is not None and deepest.parent.depth == 5
    error = deepest.actions["down"].error
    assert error is not None and error.code == ErrorCode.SUBPLAN_TOO_DEEP
    assert await system.end_of(child_execution_id(chain[-1], "down")) is None


# --------------------------------------------------------------------------- failure


async def test_a_failing_child_fails_the_parent_action(
    subplans: Subplans, target: HttpTarget
) -> None:
    system = subplans.system
    e = system.new_id("failing")
    refusing = Plan(
        id="refusing",
        actions=[Action(id="no", request=RequestSpec(url=target.url(f"/status/400/{e}")))],
    )
    await system.submit(e, parent_of(Action(id="child", type="plan", plan=refusing), target, e))

    end = await system.wait_end(e)

    child_id = child_execution_id(e, "child")
    child_end = await system.end_of(child_id)
    action = (await subplans.state(e)).actions["child"]
    assert isinstance(child_end, ExecutionFailed)
    assert isinstance(end, ExecutionFailed) and end.failed_actions == ["child"]
    assert action.status == "failed" and action.error is not None
    assert action.error.code == ErrorCode.SUBPLAN_FAILED
    assert child_id in action.error.message and "failed" in action.error.message
    assert target.hits_for(f"/echo/{e}/after") == []


# ---------------------------------------------------------------------------- cancel


async def test_cancelling_the_parent_cancels_the_child_waiting_on_a_slow_target(
    subplans: Subplans, target: HttpTarget
) -> None:
    system = subplans.system
    e = system.new_id("cancel")
    slow = Plan(
        id="slow",
        actions=[
            Action(
                id="wait-for-it",
                request=RequestSpec(url=target.url(f"/slow/{e}"), query={"delay": "30"}),
            )
        ],
    )
    await system.submit(e, parent_of(Action(id="child", type="plan", plan=slow), target, e))
    child_id = child_execution_id(e, "child")
    await eventually(
        lambda: target.hits_for(f"/slow/{e}") or None, 15, "the child never called the target"
    )

    cancelled = await subplans.tep("cancel", e)
    end = await system.wait_end(e)
    child_end = await system.wait_end(child_id)

    assert cancelled.returncode == 0, cancelled.stderr
    assert isinstance(end, ExecutionCancelled)
    assert isinstance(child_end, ExecutionCancelled)
    assert child_end.reason is not None and f"parent execution {e} was cancelled" in (
        child_end.reason
    )
    [request] = [
        x for x in await system.history(child_id) if isinstance(x, ExecutionCancelRequested)
    ]
    assert request.correlation_id == e
    child_state = await subplans.state(child_id)
    assert child_state.actions["wait-for-it"].status == "cancelled"
    assert (await subplans.state(e)).actions["child"].status == "cancelled"


# --------------------------------------------------------------------------- replay


async def test_a_rebuild_after_everything_equals_the_live_view(subplans: Subplans) -> None:
    system, settings = subplans.system, subplans.sm.settings
    await eventually(lambda: all_ended(system), 30, "an execution of this module has not ended yet")
    last = await system.log.last_sequence()
    await subplans.sm.wait_for_sequence(last, timeout=30)
    pointer = await read_pointer(await ensure_meta_bucket(system.log.js, settings))
    assert pointer is not None
    live = await scan_keys(system.nc, pointer.bucket)
    report = await rebuild(system.nc, settings, keep_old=True)
    rebuilt = await scan_keys(system.nc, report.bucket)

    assert await system.log.last_sequence() == last  # nothing happened meanwhile
    assert comparable(rebuilt) == comparable(live)
    children = [k for k in live if k.startswith("exec.sub_")]
    assert len(children) >= 5, sorted(live)


async def all_ended(system: System) -> bool:
    for execution_id in system.executions:
        if await system.end_of(execution_id) is None:
            return False
    return True


def comparable(contents: dict[str, bytes]) -> dict[str, object]:
    return {k: decode_stats(v) if k == STATS_KEY else v for k, v in contents.items()}
