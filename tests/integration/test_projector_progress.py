"""The projector's health follows its progress, not only its connection (real nats-server)."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime, timedelta

import anyio
import pytest

from eventstore import headers as h
from eventstore.config import TepSettings
from eventstore.jetstream.connection import NatsClient
from eventstore.jetstream.log import EventLog
from projections.projector import Projector
from projections.testing import running_projector, synthetic_run
from tep.server import EmbeddedServer

pytestmark = pytest.mark.anyio

_FAST = {"stall_s": 1.0, "write_timeout_s": 1.0}


async def _until(projector: Projector, *, healthy: bool, checkpoint: int = 0) -> dict[str, object]:
    with anyio.fail_after(20):
        while True:
            ok, document = projector.report()
            if ok == healthy and projector.checkpoint >= checkpoint:
                return document
            await anyio.sleep(0.05)


async def test_a_projector_that_cannot_see_the_log_says_so_and_recovers(
    nats_server: EmbeddedServer, nc: NatsClient, settings: TepSettings, event_log: EventLog
) -> None:
    first = (await event_log.append_many(synthetic_run("e1", actions=3)))[-1].sequence
    async with running_projector(nc, settings, **_FAST) as projector:  # type: ignore[arg-type]
        await _until(projector, healthy=True, checkpoint=first)
        assert nats_server.pid is not None
        # The server stops answering, as behind a partition: the connection stays open.
        os.kill(nats_server.pid, signal.SIGSTOP)
        try:
            document = await _until(projector, healthy=False)
        finally:
            os.kill(nats_server.pid, signal.SIGCONT)
        assert document["stalled"] is True and document["nats_connected"] is True

        second = (await event_log.append_many(synthetic_run("e2", actions=3)))[-1].sequence
        document = await _until(projector, healthy=True, checkpoint=second)
        assert document["stalled"] is False


async def test_an_idle_projector_stays_healthy_with_a_schedule_holder_last_in_the_log(
    nc: NatsClient, settings: TepSettings, event_log: EventLog
) -> None:
    last = (await event_log.append_many(synthetic_run("e1", actions=2)))[-1].sequence
    at = (datetime.now(UTC) + timedelta(days=1)).isoformat(timespec="seconds")
    holder = await nc.jetstream().publish(
        "plan.deadline.e1",
        b"{}",
        headers={
            h.SCHEDULE: f"@at {at.replace('+00:00', 'Z')}",
            h.SCHEDULE_TARGET: "execution.cancel.requested.e1",
        },
    )
    assert holder.seq == last + 1
    async with running_projector(nc, settings, **_FAST) as projector:  # type: ignore[arg-type]
        await _until(projector, healthy=True, checkpoint=last)
        # Healthy throughout three stall periods: the holder is no event to wait for.
        deadline = time.monotonic() + 3 * _FAST["stall_s"]
        while time.monotonic() < deadline:
            healthy, document = projector.report()
            assert healthy, document
            await anyio.sleep(0.05)
        assert projector.restarts == 0


@pytest.mark.parametrize("depth", [400, 900, 990])
async def test_an_event_nested_as_deep_as_decoding_allows_does_not_stop_the_view(
    nc: NatsClient, settings: TepSettings, event_log: EventLog, depth: int
) -> None:
    submitted = synthetic_run("e1", actions=2)[0]
    await event_log.append(submitted)
    output = '{"k":' * depth + "1" + "}" * depth
    deep = (
        '{"type":"action.completed","execution_id":"e1","action_id":"a0","attempt":1,'
        f'"output":{output}}}'
    ).encode()
    ack = await nc.jetstream().publish("action.completed.e1.a0", deep)
    after = (await event_log.append_many(synthetic_run("e2", actions=2)))[-1].sequence
    assert after > ack.seq
    async with running_projector(nc, settings, **_FAST) as projector:  # type: ignore[arg-type]
        await _until(projector, healthy=True, checkpoint=after)
