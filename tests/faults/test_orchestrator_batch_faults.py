"""A leader killed with SIGKILL in the middle of a large for-each, while it decides the items'
outcomes in batches (orchestrator.batch): the standby finishes the run and every item is
dispatched, called and ended exactly once."""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import AsyncIterator

import aiohttp
import pytest
from roles_support import eventually, fault_system
from support.http_target import HttpTarget
from system_support import dispatches_per_action
from test_orchestrator_faults import held

from eventstore.events import ActionCompleted, ActionFailed, ExecutionCompleted
from eventstore.plan import Action, Plan, RequestSpec

pytestmark = pytest.mark.anyio

ITEMS = 1500


@pytest.fixture
async def target() -> AsyncIterator[HttpTarget]:
    async with HttpTarget() as server:
        yield server


async def test_a_leader_killed_mid_for_each_leaves_each_item_once(
    tmp_path: pytest.TempPathFactory, target: HttpTarget
) -> None:
    async with fault_system(tmp_path, target, orchestrators=2, projector=False) as fs:
        system = fs.system
        e = system.new_id("batchkill")
        plan = Plan(
            id="batch-kill",
            actions=[
                Action(
                    id="each",
                    for_each=list(range(ITEMS)),
                    concurrency=100,
                    request=RequestSpec(url=target.url(f"/echo/{e}/{{{{index}}}}")),
                )
            ],
        )
        leader = await system.wait_leader(execution_id=e)
        await system.submit(e, plan)
        await eventually(
            lambda: sum(system.hits_per_action(e).values()) >= ITEMS // 4,
            60,
            "items never got going",
        )
        # Stopped while outcomes keep coming, it holds a burst of them; then it dies.
        os.killpg(leader.process.pid, signal.SIGSTOP)
        await eventually(lambda: held(system, e), 10, "the stopped holder held nothing")
        assert leader.kill() == -9
        standby = await system.wait_leader(timeout=20, execution_id=e)
        end = await system.wait_end(e, timeout=180)

        assert standby is not leader
        assert isinstance(end, ExecutionCompleted), end
        history = await system.history(e)
        each_once = Counter({f"each@{i}": 1 for i in range(ITEMS)})
        assert dispatches_per_action(history) == each_once
        outcomes = Counter(
            x.action_id for x in history if isinstance(x, ActionCompleted | ActionFailed)
        )
        assert outcomes == each_once + Counter({"each": 1})
        assert system.hits_per_action(e) == each_once
        async with aiohttp.ClientSession() as session:
            health = await standby.health(session)
        assert health is not None and health["batches"] > 0  # it took bursts as batches
