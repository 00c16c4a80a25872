"""Asking a child's health endpoint how it is: once (``tep up`` waiting for ready) or until it
has not been healthy for too long (the supervisor then restarts it)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
import anyio

__all__ = ["HealthWatch", "probe", "unhealthy_for", "wait_until_healthy"]


@dataclass(frozen=True)
class HealthWatch:
    """When a supervised child counts as stuck and is restarted.

    Attributes:
        grace: seconds without a 200 since its last 200 before it is restarted.
        startup_grace: seconds a child that never answered 200 yet gets (at least ``grace``):
            starting a role on a busy machine takes a few seconds, and one restarted before it
            could answer would only start over.
        interval: seconds between two probes once it has answered 200 (before that it is
            probed ten times as often, so it counts as started as soon as ``tep up`` says so).
        probe_timeout: how long one probe waits for an answer.
    """

    grace: float = 15.0
    startup_grace: float = 30.0
    interval: float = 1.0
    probe_timeout: float = 1.0


async def probe(session: aiohttp.ClientSession, url: str) -> str | None:
    """``None`` when ``url`` answers 200, otherwise why not (``"HTTP 503"``, ``"no answer"``)."""
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        async with session.get(url) as response:
            return None if response.status == 200 else f"HTTP {response.status}"
    return "no answer"


async def unhealthy_for(url: str, watch: HealthWatch) -> str:
    """Probe ``url`` until it has not answered 200 for ``watch.grace`` seconds; say how.

    A process that is paused (``SIGSTOP``), deadlocked or stuck on a dead connection answers
    503 or nothing at all, while a crashed one is noticed by its exit instead.

    Returns:
        What the last probe saw and for how long, e.g. ``"no answer for 15s"``.
    """
    async with _session(watch.probe_timeout) as session:
        last_ok = anyio.current_time()
        allowed = max(watch.grace, watch.startup_grace)
        interval = watch.interval / 10
        while True:
            await anyio.sleep(interval)
            problem = await probe(session, url)
            now = anyio.current_time()
            if problem is None:
                last_ok, allowed, interval = now, watch.grace, watch.interval
            elif now - last_ok >= allowed:
                return f"{problem} for {now - last_ok:.0f}s"


async def wait_until_healthy(urls: Mapping[str, str], timeout: float) -> list[str]:
    """Poll every URL (by name) until it answers 200; the names still unhealthy at the end."""
    pending = dict(urls)
    async with _session(1.0) as session:
        with anyio.move_on_after(timeout):
            while pending:
                for name, url in list(pending.items()):
                    if await probe(session, url) is None:
                        del pending[name]
                if pending:
                    await anyio.sleep(0.1)
    return sorted(pending)


def _session(probe_timeout: float) -> aiohttp.ClientSession:
    # One connection per probe: a kept-alive one would make the child's health server wait
    # for it when the child shuts down.
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=probe_timeout),
        connector=aiohttp.TCPConnector(force_close=True),
    )
