"""Shared fixtures: a real nats-server per test (random port, temp store dir)."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from support.http_target import HttpTarget

from eventstore.config import TepSettings
from eventstore.jetstream.connection import NatsClient, connect
from eventstore.jetstream.log import EventLog
from eventstore.jetstream.provision import ensure_log
from tep.server import EmbeddedServer

# Test targets listen on loopback: executors started by tests (in-process or as subprocesses,
# which inherit this) allow it. SSRF tests pass allow_cidrs=() or strip the variable.
os.environ.setdefault("TEP_EXECUTOR_ALLOW_CIDRS", '["127.0.0.0/8", "::1/128"]')
# Notes of the `tep up` stacks tests start stay out of the user's own state directory.
os.environ.setdefault("TEP_STATE_DIR", tempfile.mkdtemp(prefix="tep-state-"))
# Test workers side by side (pytest-xdist) each pick ports from a range of their own: a port
# one worker found free could otherwise be bound by another before its own server binds it.
if "PYTEST_XDIST_WORKER" in os.environ and "TEP_PORT_RANGE" not in os.environ:
    _worker = int(os.environ["PYTEST_XDIST_WORKER"].removeprefix("gw"))
    _width = 22_000 // max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    _low = 10_000 + _worker * _width
    os.environ["TEP_PORT_RANGE"] = f"{_low}-{_low + _width - 1}"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    server = EmbeddedServer(data_dir=tmp_path / "nats")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def settings(nats_server: EmbeddedServer) -> TepSettings:
    return TepSettings(nats_url=nats_server.url)


@pytest.fixture
async def nc(settings: TepSettings) -> AsyncIterator[NatsClient]:
    client = await connect(settings.nats_url, name="tests")
    await ensure_log(client.jetstream(), settings)
    yield client
    await client.close()


@pytest.fixture
async def event_log(nc: NatsClient, settings: TepSettings) -> EventLog:
    return EventLog(nc, settings)


def wait_until(
    condition: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02, message: str = ""
) -> None:
    """Poll ``condition`` until it holds, failing the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(message or f"condition not met within {timeout}s")


@pytest.fixture
async def http_target() -> AsyncIterator[HttpTarget]:
    """A real, recording HTTP server on loopback (see tests/support/http_target.py)."""
    async with HttpTarget() as target:
        yield target
