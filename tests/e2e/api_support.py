"""The HTTP API against a real stack: a nats-server, an orchestrator, an executor and a
projector as processes, and `tep api` as one more process on a free port, with tokens of
every scope. Tests talk to it through `tep.client` (and raw httpx for auth and errors).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from support.http_target import HttpTarget
from system_support import System, eventually, running_system
from tep_cli import Processes, child_env, tep_command

from tep.client import AsyncTepClient
from tep.server import find_free_port

__all__ = [
    "TOKENS",
    "Api",
    "approval_plan",
    "failing_plan",
    "running_api",
    "scopes_config",
    "slow_plan",
]

TOKENS = {
    "all": "token-with-every-scope-0001",
    "reader": "token-that-only-reads-0002",
    "submitter": "token-that-only-submits-03",
    "operator": "token-that-operates-00004",
}
_SCOPES = {
    "all": ["read", "submit", "operate"],
    "reader": ["read"],
    "submitter": ["submit"],
    "operator": ["operate", "read"],
}


def scopes_config() -> dict[str, dict[str, Any]]:
    """The value of TEP_API_TOKENS for :data:`TOKENS`."""
    return {name: {"token": TOKENS[name], "scopes": _SCOPES[name]} for name in TOKENS}


@dataclass
class Api:
    """The stack, the API's URL, and a client per token."""

    system: System
    url: str
    log_path: Path
    command: list[str]
    env: dict[str, str]
    processes: Processes = field(default_factory=Processes)
    process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        """Start `tep api` and wait until its /healthz answers 200."""
        self.process = self.processes.start(self.command, self.env, self.log_path)
        async with httpx.AsyncClient(base_url=self.url, timeout=1) as http:

            async def healthy() -> bool:
                try:
                    return (await http.get("/healthz")).status_code == 200
                except httpx.HTTPError:
                    return False

            try:
                await eventually(healthy, 30, "tep api never healthy", 0.05)
            except AssertionError as exc:
                raise AssertionError(f"{exc}:\n{_tail(self.log_path)}") from None

    async def restart(self) -> None:
        """Stop `tep api` (SIGTERM: open streams are closed) and start it again."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGTERM)
        await eventually(lambda: self.process.poll() is not None, 10, "tep api did not stop")
        await self.start()

    def client(self, who: str = "all") -> AsyncTepClient:
        """An async client with ``who``'s token (close it, or use ``async with``)."""
        return AsyncTepClient(self.url, TOKENS[who])

    def raw(self, who: str | None = "all") -> httpx.AsyncClient:
        """A plain httpx client, with ``who``'s token (``None``: none)."""
        headers = {"Authorization": f"Bearer {TOKENS[who]}"} if who else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)


def slow_plan(
    target: HttpTarget, execution_id: str, steps: int = 3, delay: float = 0.2
) -> dict[str, Any]:
    """A chain of ``steps`` calls that each take ``delay`` seconds (transitions to watch)."""
    actions = []
    for n in range(1, steps + 1):
        url = target.url(f"/slow/{execution_id}/s{n}")
        action: dict[str, Any] = {
            "id": f"s{n}",
            "request": {"url": url, "query": {"delay": str(delay)}},
        }
        if n > 1:
            action["depends_on"] = [f"s{n - 1}"]
        actions.append(action)
    return {"id": "api-slow", "actions": actions}


APPROVAL_SCHEMA = {
    "type": "object",
    "required": ["approved"],
    "properties": {"approved": {"type": "boolean"}, "amount": {"type": "integer"}},
}


def approval_plan(target: HttpTarget, execution_id: str) -> dict[str, Any]:
    """A waitpoint (with a schema), then a call using its data."""
    url = target.url(f"/echo/{execution_id}/after")
    return {
        "id": "api-approval",
        "actions": [
            {"id": "approve", "type": "wait", "schema": APPROVAL_SCHEMA},
            {"id": "after", "depends_on": ["approve"], "request": {"url": url}},
        ],
    }


def failing_plan(target: HttpTarget, execution_id: str) -> dict[str, Any]:
    """A call that succeeds, then one that always fails (500)."""
    return {
        "id": "api-failing",
        "actions": [
            {"id": "first", "request": {"url": target.url(f"/echo/{execution_id}/first")}},
            {
                "id": "broken",
                "depends_on": ["first"],
                "request": {"url": target.url(f"/status/500/{execution_id}")},
            },
        ],
    }


@asynccontextmanager
async def running_api(directory: Path, target: HttpTarget) -> AsyncIterator[Api]:
    """The stack with `tep api` on a free port, once its /healthz answers 200."""
    async with running_system(directory, target, orchestrators=1, executors=1) as system:
        url = system.server.url
        processes = Processes()
        tokens = scopes_config()
        port = find_free_port()
        env = child_env(url, TEP_LOG_LEVEL="WARNING", TEP_API_TOKENS=json.dumps(tokens))
        command = tep_command("api", "--nats-url", url, "--port", str(port))
        api = Api(system, f"http://127.0.0.1:{port}", directory / "api.log", command, env)
        try:
            processes.start(
                tep_command("projector", "--nats-url", url), env, directory / "projector.log"
            )
            await api.start()
            yield api
        finally:
            api.processes.stop_all()
            processes.stop_all()


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-2000:]
    except OSError:
        return "(no log)"
