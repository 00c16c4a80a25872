"""Child processes kept alive: start, tag their output, restart with backoff, stop them all.

Each child runs in its own session (so its process group can be signalled as a whole, and a
terminal's Ctrl-C reaches only the supervisor, which then stops children in order). On Linux a
child also gets SIGTERM if the supervisor dies without cleaning up, so nothing is orphaned.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["Backoff", "ChildSpec", "Supervisor"]

_log = logging.getLogger("tep.up")

LineSink = Callable[[str, str], None]
"""Receives (child name, one line of its output without the newline)."""


@dataclass(frozen=True)
class ChildSpec:
    """What to run: a name for its log lines, the command line, extra environment, and where
    it answers 200 once it is up (optional)."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    health_url: str | None = None


@dataclass
class Backoff:
    """Restart delays: ``initial * 2**n`` up to ``maximum``; reset after a long enough run."""

    initial: float = 0.5
    maximum: float = 30.0
    healthy_after: float = 30.0
    failures: int = 0

    def next_delay(self, ran_for: float) -> float:
        """The delay before the next start, given how long the last run lasted."""
        if ran_for >= self.healthy_after:
            self.failures = 0
        delay = min(self.initial * 2.0**self.failures, self.maximum)
        self.failures += 1
        return delay


def _parent_death_signal() -> Callable[[], None] | None:
    """A pre-exec hook that asks Linux to SIGTERM the child when its parent dies."""
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    prctl = ctypes.CDLL(name, use_errno=True).prctl
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)

    return hook


class _Child:
    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.process: asyncio.subprocess.Process | None = None
        self.backoff = Backoff()
        self.restarts = 0


class Supervisor:
    """Runs every child until :meth:`stop`; a child that exits is started again after a delay.

    Example:
        >>> web = ChildSpec("web", ["python", "-m", "http.server"])
        >>> sup = Supervisor([web], sink)  # doctest: +SKIP
        >>> await sup.start(); ...; await sup.stop()  # doctest: +SKIP
    """

    def __init__(
        self,
        specs: Sequence[ChildSpec],
        sink: LineSink,
        *,
        backoff: Callable[[], Backoff] = Backoff,
    ) -> None:
        self._children = [_Child(spec) for spec in specs]
        for child in self._children:
            child.backoff = backoff()
        self._sink = sink
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._preexec = _parent_death_signal()

    def pids(self) -> dict[str, int]:
        """The process id of every child running right now, by name."""
        return {
            c.spec.name: c.process.pid
            for c in self._children
            if c.process is not None and c.process.returncode is None
        }

    def restarts(self) -> dict[str, int]:
        """How often each child has been restarted."""
        return {c.spec.name: c.restarts for c in self._children}

    async def start(self) -> None:
        """Start every child and the tasks that keep them running."""
        for child in self._children:
            await self._spawn(child)
            self._tasks.append(asyncio.create_task(self._keep_alive(child)))

    async def _spawn(self, child: _Child) -> None:
        env = dict(os.environ)
        env.update(child.spec.env)
        child.process = await asyncio.create_subprocess_exec(
            *child.spec.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=self._preexec,
        )
        _log.info(
            "started %s",
            child.spec.name,
            extra={"child": child.spec.name, "pid": child.process.pid},
        )

    async def _pump(self, child: _Child, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while True:
            try:
                raw = await process.stdout.readline()
            except ValueError:  # a line longer than the stream limit: take what is there
                raw = await process.stdout.read(65536)
            if not raw:
                return
            self._sink(child.spec.name, raw.decode(errors="replace").rstrip("\r\n"))

    async def _keep_alive(self, child: _Child) -> None:
        while True:
            process = child.process
            assert process is not None
            started = time.monotonic()
            pump = asyncio.create_task(self._pump(child, process))
            code = await process.wait()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(pump, 1.0)
            if self._stopping:
                return
            delay = child.backoff.next_delay(time.monotonic() - started)
            _log.warning(
                "%s exited with code %s; restarting in %.1fs",
                child.spec.name,
                code,
                delay,
                extra={"child": child.spec.name, "exit_code": code},
            )
            await asyncio.sleep(delay)
            if self._stopping:
                return
            child.restarts += 1
            await self._spawn(child)

    async def stop(self, grace: float = 3.0) -> None:
        """SIGTERM every child's process group; SIGKILL what is left after ``grace`` seconds."""
        self._stopping = True
        running = [c.process for c in self._children if c.process is not None]
        for process in running:
            _signal_group(process.pid, signal.SIGTERM)
        waits = [asyncio.create_task(p.wait()) for p in running if p.returncode is None]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=grace)
            for process in running:
                if process.returncode is None:
                    _log.warning(
                        "killing %s (pid %s): it did not stop in time",
                        _name_of(self, process),
                        process.pid,
                    )
            for task in pending:
                task.cancel()
        for process in running:
            # Kill the whole group: grandchildren a role may have started go with it.
            _signal_group(process.pid, signal.SIGKILL)
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(process.wait(), 1.0)
        for keeper in self._tasks:
            keeper.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _name_of(supervisor: Supervisor, process: asyncio.subprocess.Process) -> str:
    for child in supervisor._children:
        if child.process is process:
            return child.spec.name
    return "child"


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
