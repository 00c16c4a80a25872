"""What the executor fault tests break things with: `tep` role processes that can be killed,
paused and resumed, and an HTTP target that counts every call per Idempotency-Key.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from support.http_target import HttpTarget
from support.waiting import eventually

from tep.server import find_free_port

__all__ = ["CountingTarget", "RoleProcess", "eventually"]

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
FAULTS = Path(__file__).resolve().parent


@dataclass
class RoleProcess:
    """One ``tep <kind>`` child in its own process group, with a health port."""

    kind: str
    process: subprocess.Popen[bytes]
    health_port: int
    log_path: Path

    @classmethod
    def start(
        cls, kind: str, nats_url: str, directory: Path, *args: str, **env: str
    ) -> RoleProcess:
        """Start ``tep KIND ARGS`` against ``nats_url``; ``env`` adds ``TEP_*`` variables."""
        port = find_free_port()
        log_path = directory / f"{kind}-{port}.log"
        # The loopback allowance of tests/conftest.py passes: the targets listen on loopback.
        keep = "TEP_EXECUTOR_ALLOW_CIDRS"
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("TEP_") or k == keep}
        child_env.update(PYTHONPATH=os.pathsep.join([str(TESTS), str(FAULTS)]))
        child_env.update({"TEP_LOG_LEVEL": "WARNING", **env})
        command = [
            sys.executable,
            "-m",
            "tep.cli.main",
            kind,
            *args,
            "--nats-url",
            nats_url,
            "--health-host",
            "127.0.0.1",
            "--health-port",
            str(port),
        ]
        with log_path.open("ab") as out:
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=child_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return cls(kind, process, port, log_path)

    async def health(self) -> dict[str, Any] | None:
        """The health document while the role answers 200, else ``None``."""
        if self.process.poll() is not None:
            return None
        try:
            async with aiohttp.ClientSession() as session:
                url = f"http://127.0.0.1:{self.health_port}/healthz"
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=1)) as response:
                    if response.status != 200:
                        return None
                    document: dict[str, Any] = await response.json()
                    return document
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def wait_healthy(self, timeout: float = 30.0) -> dict[str, Any]:
        """The health document once the role is up."""
        document: dict[str, Any] = await eventually(
            self.health, timeout, f"{self.kind} not healthy:\n{self.tail()}", 0.05
        )
        return document

    def tail(self) -> str:
        """The end of the role's output."""
        return self.log_path.read_text(errors="replace")[-3000:]

    def signal(self, number: signal.Signals) -> None:
        """Send ``number`` to the role's process group."""
        os.killpg(self.process.pid, number)

    def kill(self) -> None:
        """SIGKILL: no clean stop, no nak, nothing more from it."""
        if self.process.poll() is None:
            self.signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        """Whatever state it is in (paused too): SIGKILL and reap."""
        if self.process.poll() is None:
            self.signal(signal.SIGCONT)
            self.kill()


class CountingTarget(HttpTarget):
    """An :class:`HttpTarget` that also counts per ``Idempotency-Key``: the effects a target
    that deduplicates by the key would perform (one per key), raw calls, calls of one key
    in progress at once, and the wall-clock time of every call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()
        self.called_at: dict[str, list[float]] = {}
        self.max_overlap: Counter[str] = Counter()
        self._running: Counter[str] = Counter()

    @property
    def effects(self) -> set[str]:
        """The keys whose work was done (at most once each, as a deduplicating target)."""
        return set(self.calls)

    @web.middleware
    async def _record(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        key = request.headers.get("Idempotency-Key", request.path)
        self.calls[key] += 1
        self.called_at.setdefault(key, []).append(time.time())
        self._running[key] += 1
        self.max_overlap[key] = max(self.max_overlap[key], self._running[key])
        try:
            return await super()._record(request, handler)
        finally:
            self._running[key] -= 1
