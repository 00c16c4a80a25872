"""Sub-plans with authentication on: the client puts a registry plan and submits parents; the
orchestrator, on its own identity, reads the registry, starts children, gives their parents
their outcomes and cancels the children of a cancelled parent, and the server logs no
permission violation. (The system as in test_nats_permissions_system.py.)
"""

from __future__ import annotations

import pytest
from support.http_target import HttpTarget
from support.nats_auth import AuthServer
from support.waiting import eventually

# The fixtures that start the roles as `tep` processes, each on its own identity.
from test_nats_permissions_system import auth, provisioned, system  # noqa: F401

from eventstore.access import Role
from eventstore.events import ExecutionCancelRequested
from eventstore.jetstream.log import EventLog
from orchestrator.subplans import child_execution_id
from projections import StateManager

pytestmark = pytest.mark.anyio


async def test_subplans_run_and_are_cancelled_with_every_role_on_its_own_identity(
    system: AuthServer,  # noqa: F811
    http_target: HttpTarget,
) -> None:
    target = http_target
    greeting = {
        "id": "greeting",
        "actions": [{"id": "hello", "request": {"url": target.url("/echo/hello/{{input.who}}")}}],
    }
    parent = {
        "id": "parent",
        "actions": [
            {"id": "by-ref", "type": "plan", "plan_ref": "greeting", "input": {"who": "ref"}},
            {"id": "inline", "type": "plan", "plan": greeting, "input": {"who": "inline"}},
            {
                "id": "after",
                "depends_on": ["by-ref", "inline"],
                "request": {
                    "url": target.url("/echo/after"),
                    "query": {"got": "{{actions.by-ref.output.actions.hello.path}}"},
                },
            },
        ],
    }
    slow = {
        "id": "slow",
        "actions": [{"id": "wait", "request": {"url": target.url("/slow/sub?delay=30")}}],
    }
    manager = await StateManager.connect(settings=system.settings(Role.CLIENT))
    try:
        revision = await manager.put_plan("greeting", greeting)
        await manager.initialize_state(parent, "sub-ok")
        await manager.initialize_state(
            {"id": "outer", "actions": [{"id": "child", "type": "plan", "plan": slow}]},
            "sub-cancel",
        )
        await eventually(lambda: target.hits_for("/slow/sub"), 20, "the child never called")
        await EventLog(manager.nc, manager.settings).append(
            ExecutionCancelRequested(execution_id="sub-cancel", reason="test")
        )
        ok = await manager.wait_for_completion("sub-ok", timeout=30)
        cancelled = await manager.wait_for_completion("sub-cancel", timeout=30)
        child = await manager.wait_for_completion(
            child_execution_id("sub-cancel", "child"), timeout=30
        )
    finally:
        await manager.close()

    assert revision > 0
    assert ok.status == "completed", ok
    assert [h.query["got"] for h in target.hits_for("/echo/after")] == ["/echo/hello/ref"]
    assert (cancelled.status, child.status) == ("cancelled", "cancelled")
    assert [str(v) for v in system.violations()] == []
