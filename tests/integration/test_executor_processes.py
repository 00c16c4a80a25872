"""``tep executor`` as real OS processes sharing one queue."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import anyio
import pytest
from support.executors import http_request, wait_for_outcome
from support.http_target import HttpTarget

from eventstore.config import TepSettings
from eventstore.events import ActionCompleted, ActionFailed, ActionStarted
from eventstore.jetstream.log import EventLog
from eventstore.plan import RetryPolicy
from tep.server import find_free_port

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"


class ExecutorProcess:
    """One ``python -m tep.cli.main executor`` child with a health port."""

    def __init__(self, settings: TepSettings, *args: str) -> None:
        self.health_port = find_free_port()
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
            TEP_LOG_LEVEL="WARNING",
        )
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tep.cli.main",
                "executor",
                "--nats-url",
                settings.nats_url,
                "--health-host",
                "127.0.0.1",
                "--health-port",
                str(self.health_port),
                "--shutdown-grace",
                "1",
                *args,
            ],
            cwd=ROOT,
            env=env,
            stderr=subprocess.PIPE,
        )

    async def wait_healthy(self, timeout: float = 20.0) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while True:
                if self.process.poll() is not None:
                    raise AssertionError(f"executor exited: {self.stderr()}")
                try:
                    url = f"http://127.0.0.1:{self.health_port}/healthz"
                    async with session.get(url) as response:
                        if response.status == 200:
                            document: dict[str, object] = await response.json()
                            return document
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError("executor did not become healthy")
                await anyio.sleep(0.05)

    def terminate(self, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def stderr(self) -> str:
        if self.process.poll() is None:
            return ""
        assert self.process.stderr is not None
        return self.process.stderr.read().decode(errors="replace")


@pytest.fixture
def spawn(settings: TepSettings) -> Iterator[list[ExecutorProcess]]:
    started: list[ExecutorProcess] = []
    yield started
    for child in started:
        if child.process.poll() is None:
            child.process.kill()
            child.process.wait(5)


async def test_three_executor_processes_share_one_queue(
    settings: TepSettings,
    event_log: EventLog,
    http_target: HttpTarget,
    spawn: list[ExecutorProcess],
) -> None:
    spawn += [ExecutorProcess(settings, "--concurrency", "4") for _ in range(3)]
    ids = {str((await child.wait_healthy())["executor_id"]) for child in spawn}
    total = 60
    for n in range(total):
        url = http_target.url(f"/slow/{n}?delay=0.1")
        await event_log.append(http_request("e1", f"a{n}", url))

    for n in range(total):
        outcome = await wait_for_outcome(event_log, "e1", f"a{n}", timeout=30)
        assert isinstance(outcome, ActionCompleted)

    started = [r.event for r in await event_log.read_execution("e1")]
    by_executor = Counter(e.executor_id for e in started if isinstance(e, ActionStarted))
    assert set(by_executor) == ids and len(ids) == 3
    assert sum(by_executor.values()) == total
    assert len(http_target.hits) == total
    assert len({hit.idempotency_key for hit in http_target.hits}) == total
    assert [child.terminate() for child in spawn] == [0, 0, 0]


async def test_handlers_loaded_with_the_handlers_option_serve_their_type(
    settings: TepSettings, event_log: EventLog, spawn: list[ExecutorProcess]
) -> None:
    spawn.append(
        ExecutorProcess(settings, "--queue", "images", "--handlers", "support.sample_handlers")
    )
    await spawn[0].wait_healthy()
    retry = RetryPolicy(max_attempts=3, min_backoff_ms=20, jitter=False)
    for action_id, payload in (("ok", {"width": 21}), ("flaky", {"width": 1, "flaky": True})):
        await event_log.append(
            http_request(
                "e1",
                action_id,
                "",
                action_type="resize-image",
                queue="images",
                input=payload,
                retry=retry,
            )
        )
    await event_log.append(
        http_request("e1", "bad", "", action_type="resize-image", queue="images", input={})
    )

    ok = await wait_for_outcome(event_log, "e1", "ok")
    flaky = await wait_for_outcome(event_log, "e1", "flaky")
    bad = await wait_for_outcome(event_log, "e1", "bad")

    assert isinstance(ok, ActionCompleted) and ok.output == {"width": 42, "attempt": 1}
    assert isinstance(flaky, ActionCompleted) and flaky.output == {"width": 2, "attempt": 3}
    assert isinstance(bad, ActionFailed) and bad.error.code == "invalid_input"
    assert spawn[0].terminate() == 0


def test_a_handlers_module_that_does_not_import_is_a_usage_error(
    settings: TepSettings,
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tep.cli.main",
            "executor",
            "--nats-url",
            settings.nats_url,
            "--handlers",
            "no_such_module_anywhere",
        ],
        cwd=ROOT,
        capture_output=True,
        timeout=30,
    )

    assert result.returncode == 2
    assert b"no_such_module_anywhere" in result.stderr
    assert b"Traceback" not in result.stderr
