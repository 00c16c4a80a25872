"""The projector process across nats-server crashes: after each ``kill -9`` and restart of the
server the view catches up within seconds, and health says so only once it has.

Lags are printed (``pytest -s``) rather than asserted; each must end within a deadline.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from roles_support import eventually, fault_system
from support.http_target import HttpTarget

from eventstore.events import PlanSubmitted
from eventstore.jetstream.connection import connect
from eventstore.jetstream.log import EventLog
from projections.testing import synthetic_plan

pytestmark = pytest.mark.anyio


@pytest.fixture
async def target() -> AsyncIterator[HttpTarget]:
    async with HttpTarget() as server:
        yield server


async def test_the_view_catches_up_within_seconds_after_each_server_kill(
    tmp_path: pytest.TempPathFactory, target: HttpTarget
) -> None:
    async with fault_system(tmp_path, target, executors=0) as fs:
        server = fs.system.server
        plan = synthetic_plan("p", 1)
        lags = []
        for kill in range(3):
            server.kill()
            server.start()  # same port, same store
            restarted = time.monotonic()
            fresh = await connect(server.url, name="fault-test-writer")
            try:
                log = EventLog(fresh, fs.settings)
                result = await log.append(PlanSubmitted(execution_id=f"k{kill}", plan=plan))
            finally:
                await fresh.close()
            stored = time.monotonic()
            await fs.wait_projected(result.sequence, timeout=15)
            lags.append((stored - restarted, time.monotonic() - stored))

            health = await eventually(fs.projector_health, 10, "projector unhealthy", 0.05)
            assert health["stalled"] is False and health["checkpoint"] >= result.sequence
        print(
            "\nview lag after nats-server kill -9 + restart: "
            + ", ".join(f"{lag:.2f}s (event stored {store:.2f}s after)" for store, lag in lags)
        )
