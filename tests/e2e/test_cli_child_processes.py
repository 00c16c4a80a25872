"""The supervisor behind `tep up`, with real (tiny) child processes."""

from __future__ import annotations

import sys

import anyio
import pytest
from tep_cli import alive

from tep.supervisor import Backoff, ChildSpec, Supervisor

pytestmark = pytest.mark.anyio


async def test_children_are_tagged_restarted_and_stopped() -> None:
    lines: list[tuple[str, str]] = []
    third_run = anyio.Event()

    def sink(name: str, line: str) -> None:
        lines.append((name, line))
        if lines.count(("crasher", "hello")) == 3:
            third_run.set()

    crasher = ChildSpec("crasher", [sys.executable, "-c", "print('hello'); raise SystemExit(3)"])
    sleeper = ChildSpec("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
    supervisor = Supervisor(
        [crasher, sleeper], sink, backoff=lambda: Backoff(initial=0.05, maximum=0.05)
    )

    async with anyio.create_task_group() as group:
        await group.start(supervisor.run)
        with anyio.fail_after(10):
            await third_run.wait()
        sleeper_pid = supervisor.pids()["sleeper"]
        with anyio.fail_after(5):
            await supervisor.stop(grace=2.0)

    assert supervisor.restarts()["crasher"] >= 2
    assert supervisor.restarts()["sleeper"] == 0
    assert supervisor.pids() == {}
    assert not alive(sleeper_pid)


async def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period() -> None:
    stubborn = ChildSpec(
        "stubborn",
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(60)",
        ],
    )
    ready = anyio.Event()
    supervisor = Supervisor([stubborn], lambda name, line: ready.set())
    async with anyio.create_task_group() as group:
        await group.start(supervisor.run)
        with anyio.fail_after(10):
            await ready.wait()
        pid = supervisor.pids()["stubborn"]

        begin = anyio.current_time()
        await supervisor.stop(grace=0.5)

    assert anyio.current_time() - begin < 2.5
    assert not alive(pid)
