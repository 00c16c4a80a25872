"""``tep orchestrator`` as a process: health endpoint, decisions, clean stop, exit codes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import msgspec
import pytest

from eventstore.config import TepSettings
from eventstore.events import PlanSubmitted
from eventstore.jetstream.connection import NatsClient
from eventstore.jetstream.log import EventLog
from eventstore.plan import Action, Plan, RequestSpec
from orchestrator.partition_leases import LeaseRecord, partition_key
from tep.server import find_free_port

pytestmark = pytest.mark.anyio


def _start(settings: TepSettings, health_port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tep.cli.main",
            "orchestrator",
            "--nats-url",
            settings.nats_url,
            "--health-port",
            str(health_port),
            "--health-host",
            "127.0.0.1",
            "--instance-id",
            "cli-1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "TEP_LOG_FORMAT": "json"},
    )


@pytest.fixture
def health_port() -> int:
    return find_free_port()


@pytest.fixture
def process(settings: TepSettings, health_port: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = _start(settings, health_port)
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _health(port: int, timeout: float = 15) -> dict[str, object]:
    """The health document once the process, alone, serves every partition."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
        except httpx.HTTPError:
            time.sleep(0.05)
            continue
        document: dict[str, object] = response.json()
        if response.status_code == 200 and document.get("partitions") == list(range(16)):
            return document
        time.sleep(0.05)
    raise AssertionError("the orchestrator never reported itself healthy, serving all 16")


async def test_process_leads_dispatches_and_stops_cleanly_on_sigterm(
    nc: NatsClient, settings: TepSettings, health_port: int, process: subprocess.Popen[bytes]
) -> None:
    health = _health(health_port)
    assert health["role"] == "orchestrator" and health["instance"] == "cli-1"
    assert health["leader"] is True
    log = EventLog(nc, settings)
    plan = Plan(id="p", actions=[Action(id="a", request=RequestSpec(url="http://h/x"))])
    await log.append(PlanSubmitted(execution_id="cli-e1", plan=plan))
    sub = await nc.jetstream().subscribe(
        "action.execute.requested.>", stream=settings.stream, ordered_consumer=True
    )
    request = await sub.next_msg(timeout=10)
    assert msgspec.json.decode(request.data)["action_id"] == "a"
    assert request.subject == "action.execute.requested.http.cli-e1.a"

    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=10)  # a process that ignores it fails here

    assert code == 0
    assert b"Traceback" not in (process.stderr.read() if process.stderr else b"")
    kv = await nc.jetstream().key_value("tep_leases")
    for partition in range(16):
        entry = await kv.get(partition_key(partition))
        lease = msgspec.json.decode(entry.value or b"", type=LeaseRecord)
        assert lease.holder is None  # released for the others to take at once


def test_unreachable_nats_exits_3() -> None:
    port = find_free_port()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tep.cli.main",
            "orchestrator",
            "--nats-url",
            f"nats://127.0.0.1:{port}",
        ],
        capture_output=True,
        timeout=30,
        env={**os.environ, "TEP_CONNECT_TIMEOUT_S": "1"},
    )
    assert result.returncode == 3
    assert b"Traceback" not in result.stderr
    assert b"cannot reach NATS" in result.stderr
