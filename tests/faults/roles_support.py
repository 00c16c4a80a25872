"""Fault tests' system: a nats-server and `tep` role processes started with the settings a test
needs (environment variables per role), a projector among them, and the dead-letter stream.

Builds on tests/e2e/system_support.py (its :class:`System` and :class:`Role`), which it puts on
``sys.path``.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_E2E = str(Path(__file__).resolve().parents[1] / "e2e")
if _E2E not in sys.path:
    sys.path.insert(0, _E2E)

import aiohttp  # noqa: E402
from nats.js.api import RawStreamMsg  # noqa: E402
from nats.js.errors import NotFoundError  # noqa: E402
from support.http_target import HttpTarget  # noqa: E402
from system_support import Role, System, eventually  # noqa: E402
from tep_cli import Processes, child_env, tep_command  # noqa: E402

from eventstore.config import TepSettings  # noqa: E402
from eventstore.jetstream.connection import NatsClient, connect  # noqa: E402
from eventstore.jetstream.log import EventLog  # noqa: E402
from eventstore.jetstream.provision import ensure_log  # noqa: E402
from tep.server import EmbeddedServer, find_free_port  # noqa: E402

__all__ = ["FaultSystem", "Role", "System", "dead_letters", "eventually", "fault_system"]


@dataclass
class FaultSystem:
    """A :class:`System` plus the projector, the settings and the way to add roles."""

    system: System
    projector: Role | None
    settings: TepSettings
    processes: Processes
    directory: Path

    def start_role(self, kind: str, name: str, *args: str, **env: str) -> Role:
        """Start one more ``tep KIND`` process (``env``: extra ``TEP_*`` variables)."""
        return start_role(
            self.processes, kind, name, self.system.server.url, self.directory, *args, **env
        )

    async def restart_projector(self) -> Role:
        """SIGKILL the projector, start a new one and wait until it is healthy."""
        assert self.projector is not None
        self.projector.kill()
        self.projector = self.start_role("projector", f"{self.projector.name}-again")
        await healthy(self.projector)
        return self.projector

    async def projector_health(self) -> dict[str, Any] | None:
        """The projector's health document while it answers 200."""
        assert self.projector is not None
        async with aiohttp.ClientSession() as session:
            return await self.projector.health(session)

    async def wait_projected(self, sequence: int, timeout: float = 20.0) -> None:
        """Wait until the projector's checkpoint reached ``sequence``."""

        async def reached() -> bool:
            health = await self.projector_health()
            return health is not None and int(health["checkpoint"]) >= sequence

        await eventually(reached, timeout, f"the view never reached sequence {sequence}", 0.05)


def start_role(
    processes: Processes,
    kind: str,
    name: str,
    nats_url: str,
    directory: Path,
    *args: str,
    **env: str,
) -> Role:
    """``tep KIND ARGS`` with a health port, its output in ``directory/NAME.log``."""
    port = find_free_port()
    log_path = directory / f"{name}.log"
    command = tep_command(kind, *args, "--health-host", "127.0.0.1", "--health-port", str(port))
    environment = child_env(nats_url, TEP_LOG_LEVEL="WARNING", **env)
    process = processes.start(command, environment, log_path)
    return Role(kind, name, process, port, log_path)


async def healthy(role: Role, timeout: float = 30.0) -> dict[str, Any]:
    """The role's health document once it answers 200."""
    async with aiohttp.ClientSession() as session:
        document: dict[str, Any] = await eventually(
            lambda: role.health(session), timeout, f"{role.name} not healthy", 0.05
        )
        return document


@asynccontextmanager
async def fault_system(
    directory: Path,
    target: HttpTarget,
    *,
    orchestrators: int = 1,
    executors: int = 1,
    projector: bool = True,
    orchestrator_env: dict[str, str] | None = None,
) -> AsyncIterator[FaultSystem]:
    """A nats-server and the roles, each healthy and one orchestrator leading; everything is
    stopped (SIGTERM, then SIGKILL) on exit."""
    server = EmbeddedServer(data_dir=directory / "nats")
    server.start()
    processes = Processes()
    nc: NatsClient | None = None
    try:
        nc = await connect(server.url, name="fault-test")
        settings = TepSettings(nats_url=server.url)
        await ensure_log(nc.jetstream(), settings)

        def role(kind: str, name: str, *args: str, **env: str) -> Role:
            return start_role(processes, kind, name, server.url, directory, *args, **env)

        system = System(
            server=server,
            nc=nc,
            log=EventLog(nc, settings),
            target=target,
            orchestrators=[
                role(
                    "orchestrator",
                    f"orchestrator-{n}",
                    "--instance-id",
                    f"orchestrator-{n}",
                    **(orchestrator_env or {}),
                )
                for n in range(1, orchestrators + 1)
            ],
            executors=[
                role("executor", f"executor-{n}", "--queue", "http", "--shutdown-grace", "1")
                for n in range(1, executors + 1)
            ],
        )
        projector_role = role("projector", "projector") if projector else None
        for started in [*system.executors, *system.orchestrators]:
            await healthy(started)
        for started in system.executors:
            system.executor_ids.add(str((await healthy(started))["executor_id"]))
        if projector_role is not None:
            await healthy(projector_role)
        await system.wait_leader()
        yield FaultSystem(system, projector_role, settings, processes, directory)
    finally:
        processes.stop_all()
        if nc is not None:
            await nc.close()
        server.stop()


async def dead_letters(nc: NatsClient, settings: TepSettings) -> list[RawStreamMsg]:
    """Every message of the dead-letter stream, oldest first."""
    js = nc.jetstream()
    info = await js.stream_info(settings.deadletter_stream)
    found = []
    for sequence in range(int(info.state.first_seq or 1), int(info.state.last_seq or 0) + 1):
        try:
            found.append(await js.get_msg(settings.deadletter_stream, sequence, direct=True))
        except NotFoundError:
            continue
    return found
