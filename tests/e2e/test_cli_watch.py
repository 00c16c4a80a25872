"""`tep watch`: live progress from the log until the execution ends."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time

import anyio
import pytest
from histories import append_all, completed_rest, failed_rest, started
from tep_cli import ROOT, child_env, run_tep, tep_command

from eventstore.config import TepSettings
from eventstore.jetstream.log import EventLog

pytestmark = pytest.mark.anyio


async def test_watch_of_a_finished_execution_prints_its_progress_and_exits_0(
    event_log: EventLog, settings: TepSettings
) -> None:
    await append_all(event_log, started("e1") + completed_rest("e1"))

    result = await anyio.to_thread.run_sync(
        lambda: run_tep("watch", "e1", nats_url=settings.nats_url)
    )

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "[0/2] fetch running (attempt 1)" in lines
    assert any(line.startswith("[0/2] fetch attempt 1 failed: http_5xx HTTP 503") for line in lines)
    assert any(line.startswith("[1/2] fetch completed (attempt 2, 12ms") for line in lines)
    assert "[2/2] send skipped (condition_false)" in lines
    assert "[2/2] execution completed" in lines
    assert lines[-1].startswith("e1 completed in ")
    assert "1 completed, 0 failed, 1 skipped, 1 retries" in lines[-1]


async def test_watch_exits_1_when_the_execution_failed(
    event_log: EventLog, settings: TepSettings
) -> None:
    await append_all(event_log, started("e1") + failed_rest("e1"))

    result = await anyio.to_thread.run_sync(
        lambda: run_tep("watch", "e1", nats_url=settings.nats_url)
    )

    assert result.returncode == 1
    assert "  fetch: http_4xx HTTP 404: HTTP 404" in result.stdout.splitlines()


async def test_watch_follows_events_appended_while_it_runs(
    event_log: EventLog, settings: TepSettings
) -> None:
    await append_all(event_log, started("e1"))
    watcher = await anyio.to_thread.run_sync(
        lambda: subprocess.Popen(
            tep_command("watch", "e1"),
            cwd=ROOT,
            env=child_env(settings.nats_url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    )
    try:
        assert watcher.stdout is not None
        stdout = watcher.stdout
        first = [await anyio.to_thread.run_sync(stdout.readline) for _ in range(2)]
        assert [line.strip() for line in first] == [
            "[0/2] execution running",
            "[0/2] fetch running (attempt 1)",
        ]
        assert watcher.poll() is None  # still waiting for the end

        await append_all(event_log, completed_rest("e1"))

        code = await anyio.to_thread.run_sync(lambda: watcher.wait(15))
        assert code == 0
        assert "[2/2] execution completed" in watcher.stdout.read()
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()


async def test_watch_timeout_exits_124_while_the_execution_goes_on(
    event_log: EventLog, settings: TepSettings
) -> None:
    await append_all(event_log, started("e1"))

    result = await anyio.to_thread.run_sync(
        lambda: run_tep("watch", "e1", "--timeout", "0.5", nats_url=settings.nats_url)
    )

    assert result.returncode == 124
    assert "the execution goes on" in result.stderr


async def test_watch_of_an_unknown_execution_exits_2(
    event_log: EventLog, settings: TepSettings
) -> None:
    result = await anyio.to_thread.run_sync(
        lambda: run_tep("watch", "nope", nats_url=settings.nats_url)
    )

    assert result.returncode == 2
    assert result.stderr.strip() == "tep: unknown execution 'nope'"


def _run_on_a_terminal(
    args: list[str], env: dict[str, str], timeout: float = 20.0
) -> tuple[int, str]:
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        args, cwd=ROOT, env=env, stdin=follower, stdout=follower, stderr=follower, close_fds=True
    )
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.1)
            if ready:
                try:
                    data = os.read(leader, 65536)
                except OSError:  # the terminal closed: the process is gone
                    break
                if not data:
                    break
                chunks.append(data)
            elif process.poll() is not None:
                break
        code = process.wait(5)
    finally:
        os.close(leader)
        if process.poll() is None:
            process.kill()
            process.wait()
    return code, b"".join(chunks).decode(errors="replace")


async def test_watch_on_a_terminal_redraws_in_place_with_a_progress_bar(
    event_log: EventLog, settings: TepSettings
) -> None:
    await append_all(event_log, started("e1") + completed_rest("e1"))
    env = child_env(settings.nats_url, COLUMNS="100", LINES="30")

    code, screen = await anyio.to_thread.run_sync(
        lambda: _run_on_a_terminal(tep_command("watch", "e1"), env)
    )

    assert code == 0, screen
    assert "\x1b[J" in screen  # cleared and redrawn, not appended
    assert "[" + "#" * 10 in screen and "2/2 100%" in screen
    assert "e1  plan two-steps  completed" in screen
    assert "+ fetch" in screen and "- send" in screen
    assert "\x1b[?25h" in screen  # the cursor is shown again
