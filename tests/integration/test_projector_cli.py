"""``tep projector`` as a process: follows the log, reports health, stops on SIGTERM."""

from __future__ import annotations

import signal
import sys
from typing import Any

import anyio
import httpx
import pytest

from eventstore.config import TepSettings
from eventstore.jetstream.log import EventLog
from projections import StateManager
from projections.testing import synthetic_run
from tep.server import find_free_port

pytestmark = pytest.mark.anyio


async def _health_at(port: int, checkpoint: int) -> tuple[int, dict[str, Any]]:
    """The health answer once it reports ``checkpoint`` (up to 10 s)."""
    answer: tuple[int, dict[str, Any]] = (0, {})
    async with httpx.AsyncClient(timeout=1.0) as client:
        for _ in range(200):
            try:
                response = await client.get(f"http://127.0.0.1:{port}/healthz")
                answer = (response.status_code, response.json())
            except httpx.TransportError:
                pass
            if answer[1].get("checkpoint", 0) >= checkpoint:
                break
            await anyio.sleep(0.05)
    return answer


async def test_projector_process_projects_reports_health_and_stops_cleanly(
    settings: TepSettings, event_log: EventLog
) -> None:
    last = (await event_log.append_many(synthetic_run("e1", actions=3)))[-1].sequence
    port = find_free_port()
    command = [sys.executable, "-m", "tep.cli.main", "projector", "--nats-url", settings.nats_url]
    command += ["--health-port", str(port), "--health-host", "127.0.0.1"]

    async with await anyio.open_process(command) as child:
        async with await StateManager.connect(settings=settings) as sm:
            state = await sm.get_execution_state("e1", min_sequence=last, timeout=30)
        status, document = await _health_at(port, last)
        child.send_signal(signal.SIGTERM)
        with anyio.fail_after(15):
            code = await child.wait()

    assert state is not None and state.status == "completed"
    assert status == 200 and document["role"] == "projector" and document["running"]
    assert document["checkpoint"] == last and document["view_generation"] == 1
    assert code == 0
