"""The StateManager on bad ids and unknown executions: a clear error at once, never a bare
nats error or a wait for something that will not come (real nats-server)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest

from eventstore.config import TepSettings
from eventstore.errors import TepError
from eventstore.jetstream.connection import NatsClient
from eventstore.jetstream.log import EventLog
from eventstore.state import ExecutionState
from eventstore.subjects import execution_id_problem
from projections import ExecutionNotFoundError, StateManager
from projections.errors import InvalidExecutionIdError
from projections.testing import running_projector, synthetic_run

pytestmark = pytest.mark.anyio

PLAN = {"id": "p", "actions": [{"id": "a", "type": "noop"}]}
SAFETY_NET_S = 60.0
"""Only a bound on a hanging test: every call below is expected to return at once."""


@pytest.fixture
async def sm(nc: NatsClient, settings: TepSettings) -> AsyncIterator[StateManager]:
    async with await StateManager.connect(settings=settings) as manager:
        yield manager


async def _first_state(sm: StateManager, execution_id: str) -> ExecutionState:
    async for state in sm.watch(execution_id):
        return state
    raise AssertionError("the watch ended without a state")


def _calls(sm: StateManager, bad: str) -> dict[str, Callable[[], Awaitable[Any]]]:
    return {
        "get_execution_state": lambda: sm.get_execution_state(bad),
        "get_execution_state(at=)": lambda: sm.get_execution_state(bad, at=1),
        "get_full_state": lambda: sm.get_full_state(bad),
        "get_action_result": lambda: sm.get_action_result(bad, "a"),
        "get_available_actions": lambda: sm.get_available_actions(bad),
        "update_action_status": lambda: sm.update_action_status(bad, "a", "running"),
        "record_action_result": lambda: sm.record_action_result(bad, "a", {}),
        "in_log": lambda: sm.in_log(bad),
        "wait_for_completion": lambda: sm.wait_for_completion(bad, timeout=SAFETY_NET_S),
        "watch": lambda: _first_state(sm, bad),
    }


@pytest.mark.parametrize("bad", ["*", ">", "a.b", "", "with space", "failed", "x" * 129])
async def test_every_method_refuses_an_id_that_cannot_name_an_execution(
    sm: StateManager, event_log: EventLog, bad: str
) -> None:
    before = await event_log.last_sequence()

    for name, call in _calls(sm, bad).items():
        with anyio.fail_after(SAFETY_NET_S), pytest.raises(InvalidExecutionIdError) as raised:
            await call()
        assert str(raised.value) == execution_id_problem(bad), name
        assert isinstance(raised.value, TepError) and isinstance(raised.value, ValueError)

    assert await event_log.last_sequence() == before


async def test_watch_and_wait_for_completion_of_an_unknown_id_say_so_at_once(
    sm: StateManager, nc: NatsClient, settings: TepSettings
) -> None:
    await sm.initialize_state(PLAN, execution_id="known")

    async with running_projector(nc, settings):
        with anyio.fail_after(SAFETY_NET_S), pytest.raises(ExecutionNotFoundError, match="nope"):
            await sm.wait_for_completion("nope", timeout=SAFETY_NET_S)
        with anyio.fail_after(SAFETY_NET_S), pytest.raises(ExecutionNotFoundError, match="nope"):
            await _first_state(sm, "nope")


async def test_a_just_submitted_execution_is_followed_before_the_view_has_it(
    sm: StateManager, nc: NatsClient, settings: TepSettings, event_log: EventLog
) -> None:
    watched, waited = synthetic_run("watched", actions=2), synthetic_run("waited", actions=2)
    # No projector yet: only the log knows these executions.
    submitted = await event_log.append_many([watched[0], waited[0]])
    states: list[ExecutionState] = []
    ended: ExecutionState | None = None
    watched_all, waited_out = anyio.Event(), anyio.Event()

    async def watch() -> None:
        async for state in sm.watch("watched"):
            states.append(state)
        watched_all.set()

    async def wait() -> None:
        nonlocal ended
        ended = await sm.wait_for_completion("waited", timeout=SAFETY_NET_S)
        waited_out.set()

    with anyio.fail_after(SAFETY_NET_S):
        async with anyio.create_task_group() as group:
            group.start_soon(watch)
            group.start_soon(wait)
            await event_log.append_many(watched[1:] + waited[1:])
            async with running_projector(nc, settings):
                await watched_all.wait()
                await waited_out.wait()

    assert [s.event_count for s in states] == list(range(1, len(watched) + 1))
    assert states[0].status == "pending" and states[0].last_sequence == submitted[0].sequence
    assert states[-1].status == "completed"
    assert ended is not None and ended.status == "completed"


async def test_a_watch_of_a_finished_execution_yields_its_end(
    sm: StateManager, nc: NatsClient, settings: TepSettings, event_log: EventLog
) -> None:
    run = synthetic_run("done", actions=2)
    results = await event_log.append_many(run)
    async with running_projector(nc, settings):
        await sm.wait_for_sequence(results[-1].sequence, timeout=SAFETY_NET_S)
        with anyio.fail_after(SAFETY_NET_S):
            state = await _first_state(sm, "done")

    assert state.terminal and state.event_count == len(run)
