"""Child processes kept alive: start, tag their output, restart with backoff, stop them all.

A child that exits is started again after a backoff delay; so is one whose health endpoint has
not answered 200 for a grace period (paused, deadlocked, stuck on a dead connection): it gets
SIGTERM, then SIGKILL, and the same restart.

Each child runs in its own session (so its process group can be signalled as a whole, and a
terminal's Ctrl-C reaches only the supervisor, which then stops children in order). On Linux a
child also gets SIGTERM if the supervisor dies without cleaning up, so nothing is orphaned.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import anyio
from anyio.abc import ByteReceiveStream, Process, TaskStatus

from tep.health_watch import HealthWatch, unhealthy_for

__all__ = ["Backoff", "ChildSpec", "Supervisor"]

_log = logging.getLogger("tep.up")

_DRAIN_S = 1.0
"""How long a child's output is still read after it exited (a grandchild may hold the pipe)."""
_REAP_S = 1.0
"""How long a killed child is waited for."""
_TERMINATE_GRACE_S = 2.5
"""How long an unhealthy child has between SIGTERM and SIGKILL."""

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


# Run by a fresh interpreter that then becomes the child (same pid; the flag survives exec).
_PDEATHSIG_THEN_EXEC = """\
import ctypes, os, sys
libc, signum, parent, *argv = sys.argv[1:]
ctypes.CDLL(libc, use_errno=True).prctl(1, int(signum), 0, 0, 0)  # PR_SET_PDEATHSIG
if os.getppid() != int(parent):
    sys.exit(1)  # the supervisor died before the flag was set
try:
    os.execvp(argv[0], argv)
except OSError as exc:
    sys.exit(f"cannot run {argv[0]}: {exc.strerror}")
"""


def parent_death_launcher() -> list[str]:
    """The command prefix that asks Linux to SIGTERM the child when its parent dies.

    ``anyio.open_process`` takes no pre-exec hook, so the flag is set by a small interpreter
    (``-I -S``: no site, a few milliseconds) that then execs the real command.
    """
    if not sys.platform.startswith("linux"):
        return []
    libc = ctypes.util.find_library("c")
    if libc is None:
        return []
    signum, parent = str(int(signal.SIGTERM)), str(os.getpid())
    return [sys.executable, "-I", "-S", "-c", _PDEATHSIG_THEN_EXEC, libc, signum, parent]


class _Child:
    def __init__(self, spec: ChildSpec, backoff: Backoff) -> None:
        self.spec = spec
        self.backoff = backoff
        self.process: Process | None = None
        self.restarts = 0


class Supervisor:
    """Runs every child until :meth:`stop`; a child that exits is started again after a delay.

    Args:
        specs: the children.
        sink: receives every line of their output.
        backoff: makes each child's restart delays.
        health: when given, a child with a ``health_url`` that has not answered 200 for
            ``health.grace`` seconds is terminated and restarted.

    Example:
        >>> web = ChildSpec("web", ["python", "-m", "http.server"])
        >>> sup = Supervisor([web], sink)  # doctest: +SKIP
        >>> async with anyio.create_task_group() as tg:  # doctest: +SKIP
        ...     await tg.start(sup.run); ...; await sup.stop()
    """

    def __init__(
        self,
        specs: Sequence[ChildSpec],
        sink: LineSink,
        *,
        backoff: Callable[[], Backoff] = Backoff,
        health: HealthWatch | None = None,
    ) -> None:
        self._children = [_Child(spec, backoff()) for spec in specs]
        self._sink = sink
        self._health = health
        self._launcher = parent_death_launcher()
        self._stopping = False
        self._stop_asked: anyio.Event | None = None
        self._done: anyio.Event | None = None

    def pids(self) -> dict[str, int]:
        """The process id of every child running right now, by name."""
        return {child.spec.name: process.pid for child, process in self._running()}

    def restarts(self) -> dict[str, int]:
        """How often each child has been restarted."""
        return {c.spec.name: c.restarts for c in self._children}

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start every child (then report started) and keep them running until :meth:`stop`.

        Cancelled instead, it kills every child's process group before it returns.
        """
        self._stop_asked, self._done = anyio.Event(), anyio.Event()
        try:
            async with anyio.create_task_group() as group:
                for child in self._children:
                    await group.start(self._keep_alive, child, self._stop_asked)
                task_status.started()
        finally:
            self._done.set()

    async def stop(self, grace: float = 3.0) -> None:
        """SIGTERM every child's process group; SIGKILL what is left after ``grace`` seconds.

        Returns once every child has exited and nothing is restarted any more.
        """
        self._stopping = True
        if self._stop_asked is None or self._done is None:
            return
        self._stop_asked.set()  # wakes the children waiting out a restart delay
        running = self._running()
        for _, process in running:
            _signal_group(process.pid, signal.SIGTERM)
        with anyio.move_on_after(grace):
            for _, process in running:
                await process.wait()
        for child, process in running:
            if process.returncode is None:
                _log.warning(
                    "killing %s (pid %s): it did not stop in time", child.spec.name, process.pid
                )
        for _, process in running:
            # Kill the whole group: grandchildren a role may have started go with it.
            _signal_group(process.pid, signal.SIGKILL)
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        await self._done.wait()

    def _running(self) -> list[tuple[_Child, Process]]:
        return [
            (child, child.process)
            for child in self._children
            if child.process is not None and child.process.returncode is None
        ]

    async def _keep_alive(
        self,
        child: _Child,
        stop_asked: anyio.Event,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run the child, and again after a backoff delay each time it exits, until a stop."""
        process = await self._spawn(child)
        task_status.started()
        while True:
            began = anyio.current_time()
            code = await self._forward_until_exit(child, process)
            if self._stopping:
                return
            delay = child.backoff.next_delay(anyio.current_time() - began)
            _log.warning(
                "%s exited with code %s; restarting in %.1fs",
                child.spec.name,
                code,
                delay,
                extra={"child": child.spec.name, "exit_code": code},
            )
            with anyio.move_on_after(delay):
                await stop_asked.wait()
            if self._stopping:
                return
            child.restarts += 1
            process = await self._spawn(child)

    async def _spawn(self, child: _Child) -> Process:
        process = await anyio.open_process(
            [*self._launcher, *child.spec.argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **child.spec.env},
            start_new_session=True,
        )
        child.process = process
        _log.info(
            "started %s", child.spec.name, extra={"child": child.spec.name, "pid": process.pid}
        )
        if self._stopping:  # stop() came while it was being started, so it missed this one
            _signal_group(process.pid, signal.SIGKILL)
        return process

    async def _forward_until_exit(self, child: _Child, process: Process) -> int:
        """Hand the child's output to the sink line by line until it exits; its exit code."""
        assert process.stdout is not None
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._pump, child.spec.name, process.stdout)
                async with anyio.create_task_group() as watching:
                    if self._health is not None and child.spec.health_url:
                        watching.start_soon(self._restart_when_unhealthy, child, process)
                    code = await process.wait()
                    watching.cancel_scope.cancel()
                group.cancel_scope.deadline = anyio.current_time() + _DRAIN_S
            return code
        finally:
            await _release(process)

    async def _restart_when_unhealthy(self, child: _Child, process: Process) -> None:
        """Terminate the child once it has been unhealthy for too long (it is then restarted
        like any child that exits)."""
        assert self._health is not None and child.spec.health_url is not None
        why = await unhealthy_for(child.spec.health_url, self._health)
        if self._stopping:
            return
        _log.warning(
            "%s (pid %s) is unhealthy: %s; restarting it",
            child.spec.name,
            process.pid,
            why,
            extra={"child": child.spec.name, "pid": process.pid, "unhealthy": why},
        )
        # SIGCONT lets a paused child act on the SIGTERM and hand its work back in time.
        _signal_group(process.pid, signal.SIGTERM)
        _signal_group(process.pid, signal.SIGCONT)
        with anyio.move_on_after(_TERMINATE_GRACE_S):
            await process.wait()
        if process.returncode is None:
            _log.warning(
                "killing %s (pid %s): it did not stop in time", child.spec.name, process.pid
            )
            _signal_group(process.pid, signal.SIGKILL)

    async def _pump(self, name: str, output: ByteReceiveStream) -> None:
        """Every line of ``output``, however long, to the sink; a last one without newline too."""
        line = bytearray()
        async for chunk in output:
            start = 0
            while (end := chunk.find(b"\n", start)) >= 0:
                line += chunk[start:end]
                self._sink(name, line.decode(errors="replace").rstrip("\r"))
                line.clear()
                start = end + 1
            line += chunk[start:]
        if line:
            self._sink(name, line.decode(errors="replace").rstrip("\r"))


async def _release(process: Process) -> None:
    """Close the child's pipe and reap it; kill its group first if it still runs (when the
    supervisor is cancelled rather than stopped)."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(_REAP_S):
        if process.returncode is None:
            _signal_group(process.pid, signal.SIGKILL)
        await process.aclose()


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
