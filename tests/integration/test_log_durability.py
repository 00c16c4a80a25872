"""History reads at scale and replay across a server crash, against a real nats-server."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventstore.config import TepSettings
from eventstore.events import ActionCompleted, ActionStarted, Event, PlanSubmitted
from eventstore.jetstream.connection import connect
from eventstore.jetstream.log import EventLog
from eventstore.jetstream.provision import ensure_log
from eventstore.plan import Action, Plan, RequestSpec
from tep.server import EmbeddedServer

pytestmark = pytest.mark.anyio

PLAN = Plan(id="p", actions=[Action(id="a", request=RequestSpec(url="http://127.0.0.1:1/x"))])


def noise(count: int) -> list[Event]:
    return [
        ActionStarted(execution_id=f"other{i % 997}", action_id=f"a{i % 13}", attempt=1)
        for i in range(count)
    ]


async def test_one_history_is_read_correctly_among_100k_other_events(event_log: EventLog) -> None:
    await event_log.append_many(noise(50_000))
    target = [
        PlanSubmitted(execution_id="needle", plan=PLAN),
        ActionStarted(execution_id="needle", action_id="a", attempt=1),
    ]
    for event in target:
        await event_log.append(event)
    await event_log.append_many(noise(50_000))
    done = ActionCompleted(execution_id="needle", action_id="a", attempt=1, output={"n": 1})
    await event_log.append(done)

    history = await event_log.read_execution("needle")

    assert [r.event for r in history] == [*target, done]
    assert history[-1].sequence == 100_003
    assert await event_log.last_sequence() == 100_003


async def test_full_replay_after_a_crash_returns_every_event_in_order(tmp_path: Path) -> None:
    data_dir = tmp_path / "nats"
    server = EmbeddedServer(data_dir=data_dir)
    server.start()
    events: list[Event] = [PlanSubmitted(execution_id=f"e{i}", plan=PLAN) for i in range(50)]
    events += noise(5_000)
    try:
        settings = TepSettings(nats_url=server.url)
        nc = await connect(settings.nats_url, reconnect=False)
        await ensure_log(nc.jetstream(), settings)
        await EventLog(nc, settings).append_many(events)
        await nc.close()
    finally:
        server.kill()

    restarted = EmbeddedServer(data_dir=data_dir, port=server.port)
    restarted.start()
    try:
        nc = await connect(restarted.url)
        await ensure_log(nc.jetstream(), TepSettings(nats_url=restarted.url))
        log = EventLog(nc, TepSettings(nats_url=restarted.url))
        replayed = [record async for record in log.replay()]
        from_middle = [record.sequence async for record in log.replay(from_sequence=4_000)]
        await nc.close()
    finally:
        restarted.stop()

    assert [r.event for r in replayed] == events
    assert [r.sequence for r in replayed] == list(range(1, len(events) + 1))
    assert from_middle == list(range(4_000, len(events) + 1))
