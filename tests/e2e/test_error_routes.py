"""Error routes through the whole system: 2 `tep orchestrator` replicas, a `tep executor` and a
`tep projector` as processes on one nats-server, and a real HTTP target that fails on request.

A failed action's ``on_error`` route runs with the error in its request, the execution
completes, and both the log and the projected view (which has no plan) say which route
handled the failure.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from support.http_target import HttpTarget
from system_support import System, projected, running_system

from eventstore.events import (
    ActionExecuteRequested,
    ActionSkipped,
    ExecutionCompleted,
    ExecutionFailed,
)
from eventstore.fold import fold
from eventstore.plan import Action, Condition, Plan, RequestSpec
from eventstore.state import ExecutionState
from projections import StateManager

pytestmark = pytest.mark.anyio


@dataclass
class Routes:
    """The system and a StateManager reading its projected view."""

    system: System
    sm: StateManager

    async def folded(self, execution_id: str) -> ExecutionState:
        """The execution's state folded from the log."""
        state = fold(await self.system.log.read_execution(execution_id))
        assert state is not None
        return state

    async def viewed(self, execution_id: str) -> ExecutionState:
        """The execution's state in the projected view, once it holds the whole log."""
        sequence = await self.system.sequence_of(f"execution.*.{execution_id}")
        state = await self.sm.get_execution_state(execution_id, min_sequence=sequence, timeout=15)
        assert state is not None
        return state


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def target() -> AsyncIterator[HttpTarget]:
    async with HttpTarget() as server:
        yield server


@pytest.fixture(scope="module")
async def routes(
    tmp_path_factory: pytest.TempPathFactory, target: HttpTarget
) -> AsyncIterator[Routes]:
    directory = tmp_path_factory.mktemp("routes")
    async with (
        running_system(directory, target, orchestrators=2, executors=1) as system,
        projected(system, directory) as sm,
    ):
        yield Routes(system, sm)


def charge_plan(
    target: HttpTarget, execution_id: str, status: int, when: Condition | None = None
) -> Plan:
    """A charge answered with ``status``, a receipt that needs it, and its error route."""
    base = execution_id
    notify = RequestSpec(
        method="POST",
        url=target.url(f"/echo/{base}/notify-ops"),
        json={
            "order": "{{input.order}}",
            "code": "{{actions.charge.error.code}}",
            "message": "{{actions.charge.error.message}}",
        },
    )
    return Plan(
        id="error-route",
        input={"order": "A-1001"},
        actions=[
            Action(
                id="charge",
                on_error=["notify-ops"],
                request=RequestSpec(method="POST", url=target.url(f"/status/{status}/{base}")),
            ),
            Action(
                id="receipt",
                depends_on=["charge"],
                request=RequestSpec(url=target.url(f"/echo/{base}/receipt")),
            ),
            Action(id="notify-ops", request=notify, when=when),
        ],
    )


async def test_an_error_route_receives_the_error_and_completes_the_execution(
    routes: Routes, target: HttpTarget
) -> None:
    system = routes.system
    e = system.new_id("route")
    await system.submit(e, charge_plan(target, e, 500))

    end = await system.wait_end(e)

    history = await system.history(e)
    folded = await routes.folded(e)
    error = folded.actions["charge"].error
    [hit] = target.hits_for(f"/echo/{e}/notify-ops")
    assert isinstance(end, ExecutionCompleted)
    assert error is not None and "returned HTTP 500" in error.message
    assert json.loads(hit.body) == {"order": "A-1001", "code": "http_5xx", "message": error.message}
    assert target.hits_for(f"/echo/{e}/receipt") == []
    skips = {x.action_id: x.reason for x in history if isinstance(x, ActionSkipped)}
    assert skips == {"receipt": "dependency_failed"}
    for state in (folded, await routes.viewed(e)):
        assert state.status == "completed"
        assert state.actions["charge"].status == "failed"
        assert state.actions["charge"].handled_by == "notify-ops"
        assert state.actions["notify-ops"].status == "completed"


async def test_the_route_is_skipped_when_the_action_succeeds(
    routes: Routes, target: HttpTarget
) -> None:
    system = routes.system
    e = system.new_id("no-failure")
    await system.submit(e, charge_plan(target, e, 200))

    end = await system.wait_end(e)

    history = await system.history(e)
    assert isinstance(end, ExecutionCompleted)
    assert target.hits_for(f"/echo/{e}/notify-ops") == []
    assert len(target.hits_for(f"/echo/{e}/receipt")) == 1
    skips = {x.action_id: x.reason for x in history if isinstance(x, ActionSkipped)}
    assert skips == {"notify-ops": "no_failure"}
    viewed = await routes.viewed(e)
    assert viewed.actions["notify-ops"].skip_reason == "no_failure"


async def test_a_route_skipped_by_its_condition_leaves_the_execution_failed(
    routes: Routes, target: HttpTarget
) -> None:
    system = routes.system
    e = system.new_id("unhandled")
    only_4xx = Condition(path="actions.charge.error.code", equals="http_4xx")
    await system.submit(e, charge_plan(target, e, 500, when=only_4xx))

    end = await system.wait_end(e)

    history = await system.history(e)
    assert isinstance(end, ExecutionFailed) and end.failed_actions == ["charge"]
    assert not [
        x for x in history if isinstance(x, ActionExecuteRequested) and x.action_id != "charge"
    ]
    viewed = await routes.viewed(e)
    assert viewed.status == "failed"
    assert viewed.actions["charge"].handled_by is None
    assert viewed.actions["notify-ops"].skip_reason == "condition_false"
