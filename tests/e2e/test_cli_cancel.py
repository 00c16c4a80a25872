"""`tep cancel`: requests cancellation once; reports executions that already ended."""

from __future__ import annotations

import anyio
import pytest
from histories import append_all, completed_rest, failed_rest, started
from tep_cli import json_output, run_tep

from eventstore.config import TepSettings
from eventstore.events import ExecutionCancelled, ExecutionCancelRequested
from eventstore.jetstream.log import EventLog

pytestmark = pytest.mark.anyio


async def test_cancel_appends_one_request_with_the_reason(
    event_log: EventLog, settings: TepSettings
) -> None:
    await append_all(event_log, started("e1"))

    first = await anyio.to_thread.run_sync(
        lambda: run_tep("cancel", "e1", "--reason", "wrong input", nats_url=settings.nats_url)
    )
    second = await anyio.to_thread.run_sync(
        lambda: run_tep("cancel", "e1", nats_url=settings.nats_url)
    )

    assert first.returncode == 0 and first.stdout.strip() == "e1: cancellation requested"
    assert second.returncode == 0
    assert second.stdout.strip() == "e1: cancellation already requested"
    requests = [
        r.event
        for r in await event_log.read_execution("e1")
        if isinstance(r.event, ExecutionCancelRequested)
    ]
    assert len(requests) == 1 and requests[0].reason == "wrong input"


async def test_cancel_of_a_completed_execution_exits_1_and_appends_nothing(
    event_log: EventLog, settings: TepSettings
) -> None:
    await append_all(event_log, started("e1") + completed_rest("e1"))
    before = await event_log.last_sequence()

    result = await anyio.to_thread.run_sync(
        lambda: run_tep("cancel", "e1", "--json", nats_url=settings.nats_url)
    )

    assert result.returncode == 1
    assert json_output(result) == {
        "execution_id": "e1",
        "outcome": "already_ended",
        "status": "completed",
    }
    assert await event_log.last_sequence() == before


async def test_cancel_of_a_failed_execution_exits_1(
    event_log: EventLog, settings: TepSettings
) -> None:
    await append_all(event_log, started("e1") + failed_rest("e1"))

    result = await anyio.to_thread.run_sync(
        lambda: run_tep("cancel", "e1", nats_url=settings.nats_url)
    )

    assert result.returncode == 1
    assert result.stdout.strip() == "e1 already failed; nothing to cancel"


async def test_cancel_of_a_cancelled_execution_exits_0(
    event_log: EventLog, settings: TepSettings
) -> None:
    await append_all(
        event_log,
        [
            *started("e1"),
            ExecutionCancelRequested(execution_id="e1"),
            ExecutionCancelled(execution_id="e1"),
        ],
    )

    result = await anyio.to_thread.run_sync(
        lambda: run_tep("cancel", "e1", nats_url=settings.nats_url)
    )

    assert result.returncode == 0
    assert result.stdout.strip() == "e1 already cancelled; nothing to cancel"


async def test_cancel_wait_returns_when_the_execution_is_cancelled(
    event_log: EventLog, settings: TepSettings
) -> None:
    await append_all(event_log, started("e1"))

    requests = await event_log.nc.subscribe("execution.cancel.requested.e1")

    async def orchestrator_stand_in() -> None:
        # Record the outcome an orchestrator would, once the request is in the log.
        await requests.next_msg(timeout=15)
        await event_log.append(ExecutionCancelled(execution_id="e1", reason="asked"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(orchestrator_stand_in)
        result = await anyio.to_thread.run_sync(
            lambda: run_tep("cancel", "e1", "--wait", "--timeout", "15", nats_url=settings.nats_url)
        )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["e1: cancellation requested", "e1 cancelled"]


async def test_cancel_of_an_unknown_execution_exits_2(
    event_log: EventLog, settings: TepSettings
) -> None:
    result = await anyio.to_thread.run_sync(
        lambda: run_tep("cancel", "nope", nats_url=settings.nats_url)
    )

    assert result.returncode == 2
    assert result.stderr.strip() == "tep: unknown execution 'nope'"
