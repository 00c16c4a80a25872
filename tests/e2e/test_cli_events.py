"""`tep events`: an execution's history from the log, as a timeline or as JSON."""

from __future__ import annotations

import anyio
import pytest
from histories import append_all, completed_rest, started
from tep_cli import json_output, run_tep

from eventstore.config import TepSettings
from eventstore.jetstream.log import EventLog

pytestmark = pytest.mark.anyio


async def test_events_prints_every_event_in_order_with_attempts_and_errors(
    event_log: EventLog, settings: TepSettings
) -> None:
    await append_all(event_log, started("e1") + completed_rest("e1"))

    result = await anyio.to_thread.run_sync(
        lambda: run_tep("events", "e1", nats_url=settings.nats_url)
    )

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["TIME", "SEQ", "EVENT", "ACTION", "ATTEMPT", "DETAIL"]
    types = [line.split()[2] for line in lines[1:]]
    assert types == [
        "plan.submitted",
        "action.execute.requested",
        "action.started",
        "action.attempt.failed",
        "action.started",
        "action.completed",
        "action.skipped",
        "execution.completed",
    ]
    assert all(line.startswith("+") for line in lines[1:])
    retry = lines[4]
    assert "fetch" in retry and "http_5xx HTTP 503" in retry and "retry in 200ms" in retry
    assert "condition_false: tier is not premium" in lines[7]


async def test_events_json_is_one_document_with_sequences(
    event_log: EventLog, settings: TepSettings
) -> None:
    await append_all(event_log, started("e1") + completed_rest("e1"))

    result = await anyio.to_thread.run_sync(
        lambda: run_tep("events", "e1", "--json", nats_url=settings.nats_url)
    )

    assert result.returncode == 0, result.stderr
    document = json_output(result)
    assert document["execution_id"] == "e1"
    assert [e["sequence"] for e in document["events"]] == list(range(1, 9))
    assert document["events"][0]["event"]["type"] == "plan.submitted"
    assert document["events"][-1]["subject"] == "execution.completed.e1"


async def test_events_of_an_unknown_execution_exits_2(
    event_log: EventLog, settings: TepSettings
) -> None:
    await append_all(event_log, started("e1"))

    result = await anyio.to_thread.run_sync(
        lambda: run_tep("events", "nope", nats_url=settings.nats_url)
    )

    assert result.returncode == 2
    assert result.stderr.strip() == "tep: unknown execution 'nope'"
    assert result.stdout == ""
