"""The whole system with authentication on: orchestrator, executor and projector as ``tep``
processes, each with its own ``--nkey``, and a client submitting through
:class:`StateManager` with the client's. Plans complete, fail, are cancelled and hit their
deadline as without auth, and the server logs no permission violation: a role that needs a
permission it lacks shows up here as ``<role>: Publish <subject>``.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support.http_target import HttpTarget
from support.nats_auth import Admin, AuthServer, provision
from support.waiting import eventually

from eventstore.access import Role
from eventstore.events import ExecutionCancelRequested
from eventstore.jetstream.log import EventLog
from projections import StateManager
from tep.server import find_free_port

_E2E = str(Path(__file__).resolve().parents[1] / "e2e")
if _E2E not in sys.path:
    sys.path.insert(0, _E2E)

from tep_cli import Processes, child_env, tep_command  # noqa: E402

pytestmark = pytest.mark.anyio


@pytest.fixture
def auth(tmp_path: Path) -> Iterator[AuthServer]:
    server = AuthServer(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
async def provisioned(auth: AuthServer) -> AsyncIterator[Admin]:
    async with provision(auth) as admin:
        yield admin


async def _healthy(session: aiohttp.ClientSession, port: int) -> bool:
    try:
        async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:]


@pytest.fixture
async def system(auth: AuthServer, provisioned: Admin, tmp_path: Path) -> AsyncIterator[AuthServer]:
    """Orchestrator, executor and projector as ``tep`` processes, each with its own ``--nkey``."""
    processes = Processes()
    try:
        async with aiohttp.ClientSession() as session:
            for role in (Role.ORCHESTRATOR, Role.EXECUTOR, Role.PROJECTOR):
                port = find_free_port()
                log = tmp_path / f"{role.value}.log"
                command = tep_command(
                    role.value,
                    "--nats-url",
                    auth.url,
                    "--nkey",
                    str(auth.seed(role)),
                    "--health-host",
                    "127.0.0.1",
                    "--health-port",
                    str(port),
                )
                env = child_env(TEP_EXECUTOR_ALLOW_CIDRS='["127.0.0.0/8"]', TEP_LOG_LEVEL="WARNING")
                process = processes.start(command, env, log)

                async def up(port: int = port, log: Path = log, process: Any = process) -> bool:
                    if process.poll() is not None:
                        raise AssertionError(f"exited:\n{_tail(log)}")
                    return await _healthy(session, port)

                await eventually(up, 30, f"{role.value} not healthy")
        yield auth
    finally:
        processes.stop_all()


async def test_plans_run_end_to_end_with_every_role_on_its_own_identity(
    system: AuthServer, http_target: HttpTarget
) -> None:
    target = http_target
    plan = {
        "id": "with-auth",
        "input": {"user": "ada"},
        "actions": [
            {
                "id": "fetch",
                "request": {"method": "POST", "url": target.url("/echo/fetch"), "json": {"u": 1}},
            },
            {
                "id": "flaky",
                "depends_on": ["fetch"],
                "request": {"url": target.url("/flaky/1/auth")},
                "retry": {"max_attempts": 3, "min_backoff_ms": 10, "max_backoff_ms": 20},
            },
            {
                "id": "skipped",
                "depends_on": ["fetch"],
                "when": {"path": "input.user", "equals": "bob"},
                "request": {"url": target.url("/echo/skipped")},
            },
        ],
    }
    failing = {
        "id": "fails",
        "actions": [{"id": "gone", "request": {"url": target.url("/status/404/x")}}],
    }
    slow = {
        "id": "slow",
        "actions": [{"id": "wait", "request": {"url": target.url("/slow/cancel?delay=30")}}],
    }
    # A deadline is a message schedule the orchestrator stores; one that ends first ignores it...
    early = {
        "id": "early",
        "timeout_s": 120,
        "actions": [{"id": "quick", "request": {"url": target.url("/echo/early")}}],
    }
    # ... and at the deadline the server itself writes the cancel request.
    late = {
        "id": "late",
        "timeout_s": 1,
        "actions": [{"id": "wait", "request": {"url": target.url("/slow/late?delay=30")}}],
    }
    manager = await StateManager.connect(settings=system.settings(Role.CLIENT))
    try:
        await manager.initialize_state(plan, "auth-ok")
        await manager.initialize_state(failing, "auth-fail")
        await manager.initialize_state(slow, "auth-cancel")
        await manager.initialize_state(late, "auth-late")
        await manager.initialize_state(early, "auth-early")
        await eventually(lambda: target.hits_for("/slow/cancel"), 20, "the call never started")
        await EventLog(manager.nc, manager.settings).append(
            ExecutionCancelRequested(execution_id="auth-cancel", reason="test")
        )

        ok = await manager.wait_for_completion("auth-ok", timeout=30)
        failed = await manager.wait_for_completion("auth-fail", timeout=30)
        cancelled = await manager.wait_for_completion("auth-cancel", timeout=30)
        late_state = await manager.wait_for_completion("auth-late", timeout=30)
        early_state = await manager.wait_for_completion("auth-early", timeout=30)
        listed = {summary.execution_id for summary in await manager.list_executions()}
    finally:
        await manager.close()

    assert ok.status == "completed", ok
    assert {a: s.status for a, s in ok.actions.items()} == {
        "fetch": "completed",
        "flaky": "completed",
        "skipped": "skipped",
    }
    assert ok.actions["flaky"].attempts == 2
    assert failed.status == "failed"
    assert cancelled.status == "cancelled"
    assert (late_state.status, late_state.cancel_reason) == ("cancelled", "deadline exceeded")
    assert early_state.status == "completed"
    assert listed == {"auth-ok", "auth-fail", "auth-cancel", "auth-late", "auth-early"}
    assert [str(v) for v in system.violations()] == []
