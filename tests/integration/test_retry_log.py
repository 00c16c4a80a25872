"""Retries against a real nats-server: the log's guard lets one of two racing retries land, an
orchestrator consumer of an earlier version learns the retry filter, and a client identity may
retry (and only what its role allows)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from support.nats_auth import AuthServer, provision

from eventstore.access import Role, permissions
from eventstore.errors import ConcurrencyError
from eventstore.events import (
    ActionFailed,
    ErrorInfo,
    ExecutionFailed,
    ExecutionRetried,
    PlanSubmitted,
)
from eventstore.jetstream.log import EventLog
from eventstore.plan import Action, Plan, RequestSpec
from eventstore.records import Guard
from eventstore.subjects import terminal_filter
from projections import RetryRefusedError, StateManager

pytestmark = pytest.mark.anyio

PLAN = Plan(id="p", actions=[Action(id="a", request=RequestSpec(url="http://127.0.0.1:9/a"))])


async def failed(log: EventLog, execution_id: str) -> int:
    """A submitted plan whose execution failed (as an orchestrator would record it); the end's
    sequence."""
    error = ErrorInfo(message="a failed", code="http_5xx")
    await log.append(PlanSubmitted(execution_id=execution_id, plan=PLAN))
    await log.append(ActionFailed(execution_id=execution_id, action_id="a", attempt=1, error=error))
    end = ExecutionFailed(execution_id=execution_id, error=error, failed_actions=["a"])
    return (await log.append(end, guard=Guard(0, terminal_filter(execution_id)))).sequence


async def test_of_two_retries_read_at_the_same_end_only_one_lands(event_log: EventLog) -> None:
    end = await failed(event_log, "e1")
    guard = Guard(end, terminal_filter("e1"))

    first = ExecutionRetried(execution_id="e1", run=2, reset=["a"])
    second = ExecutionRetried(execution_id="e1", run=2, reset=["a"], reason="me too")
    stored = await event_log.append(first, guard=guard)
    with pytest.raises(ConcurrencyError):
        await event_log.append(second, guard=guard)

    history = [r.event for r in await event_log.read_execution("e1")]
    assert [e.event_id for e in history if isinstance(e, ExecutionRetried)] == [first.event_id]
    assert stored.sequence > end


@pytest.fixture
def auth(tmp_path: Path) -> Iterator[AuthServer]:
    server = AuthServer(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
async def admin_log(auth: AuthServer) -> AsyncIterator[EventLog]:
    async with provision(auth) as admin:
        yield EventLog(admin.nc, admin.settings)


async def test_a_client_identity_may_retry_an_ended_execution(
    auth: AuthServer, admin_log: EventLog
) -> None:
    await failed(admin_log, "mine")
    manager = await StateManager.connect(settings=auth.settings(Role.CLIENT))
    try:
        state = await manager.retry("mine", from_actions=["a"], requested_by="ana")
        with pytest.raises(RetryRefusedError, match="is running"):
            await manager.retry("mine", from_actions=["a"])
    finally:
        await manager.close()

    assert state.run == 2 and state.status == "running"
    assert [str(v) for v in auth.violations() if v.role == "client"] == []
    assert "execution.retried.*" in permissions(Role.CLIENT).publish_allow
    assert "execution.retried.*" not in permissions(Role.EXECUTOR).publish_allow
