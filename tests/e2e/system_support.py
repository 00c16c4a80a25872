"""The whole system as real processes: a nats-server, `tep orchestrator` replicas and
`tep executor` processes, plus what a test needs to submit plans and read what happened.

Every role is a ``tep`` subprocess with a health port (its own process group, so a test can
SIGKILL one); the test talks to the system through the log only (:class:`EventLog`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from nats.js.errors import NotFoundError
from support.http_target import HttpTarget
from support.waiting import eventually
from tep_cli import Processes, child_env, tep_command

from eventstore.codec import decode_event
from eventstore.config import TepSettings
from eventstore.events import (
    ActionExecuteRequested,
    ActionStarted,
    Event,
    ExecutionCancelled,
    ExecutionCompleted,
    ExecutionFailed,
    PlanSubmitted,
)
from eventstore.headers import STREAM_SOURCE
from eventstore.jetstream.connection import NatsClient, connect
from eventstore.jetstream.log import EventLog
from eventstore.jetstream.provision import ensure_log, partition_count
from eventstore.partitions import (
    PARTITION_PREFIX,
    partition_consumer,
    partition_of,
    partition_stream,
    source_sequence,
)
from eventstore.plan import Plan
from eventstore.subjects import orchestrator_subject_type
from orchestrator.config import OrchestratorConfig
from projections import StateManager
from tep.server import EmbeddedServer, find_free_port

__all__ = [
    "Role",
    "System",
    "attempts_per_action",
    "dispatches_per_action",
    "eventually",
    "projected",
    "running_system",
]

Terminal = ExecutionCompleted | ExecutionFailed | ExecutionCancelled


@dataclass
class Role:
    """One ``tep`` role process with its ``/healthz`` port."""

    kind: str
    name: str
    process: subprocess.Popen[bytes]
    health_port: int
    log_path: Path

    async def health(self, session: aiohttp.ClientSession) -> dict[str, Any] | None:
        """The health document while the role answers 200, else ``None``."""
        if self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{tail}")
        try:
            url = f"http://127.0.0.1:{self.health_port}/healthz"
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=1)) as response:
                if response.status != 200:
                    return None
                document: dict[str, Any] = await response.json()
                return document
        except (aiohttp.ClientError, TimeoutError):
            return None

    def kill(self) -> int:
        """SIGKILL the role (no clean stop: no lease release, no nak); its exit code."""
        os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait(10)


@dataclass
class System:
    """A running system: log access for the test, the roles, the HTTP target they call."""

    server: EmbeddedServer
    nc: NatsClient
    log: EventLog
    target: HttpTarget
    orchestrators: list[Role]
    executors: list[Role]
    executor_ids: set[str] = field(default_factory=set)
    executions: list[str] = field(default_factory=list)
    """Every execution submitted through :meth:`submit`, in order."""

    @staticmethod
    def new_id(name: str) -> str:
        """A fresh execution id that says which test it belongs to."""
        return f"{name}-{uuid.uuid4().hex[:8]}"

    async def submit(self, execution_id: str, plan: Plan) -> None:
        """Append ``plan.submitted`` (what ``tep submit`` does) and remember the execution."""
        await self.log.append(PlanSubmitted(execution_id=execution_id, plan=plan))
        self.executions.append(execution_id)

    async def end_of(self, execution_id: str) -> Terminal | None:
        """The execution's terminal event, if it has one."""
        try:
            msg = await self.log.js.get_last_msg(
                self.log.stream, f"execution.*.{execution_id}", direct=True
            )
        except NotFoundError:
            return None
        event = decode_event(msg.data or b"")
        assert isinstance(event, Terminal), event
        return event

    async def sequence_of(self, subject: str) -> int | None:
        """The stream sequence of the last event on ``subject``, if there is one."""
        try:
            msg = await self.log.js.get_last_msg(self.log.stream, subject, direct=True)
        except NotFoundError:
            return None
        return int(msg.seq or 0)

    async def wait_end(self, execution_id: str, timeout: float = 15.0) -> Terminal:
        """Wait until the execution completed, failed or was cancelled."""
        end: Terminal = await eventually(
            lambda: self.end_of(execution_id), timeout, f"{execution_id} did not end"
        )
        return end

    async def history(self, execution_id: str) -> list[Event]:
        """The execution's events, in log order."""
        return [record.event for record in await self.log.read_execution(execution_id)]

    async def wait_orchestrated(self, sequence: int, timeout: float = 15.0) -> None:
        """Wait until the orchestrators have decided on (and acked) the event at ``sequence``:
        whatever they would append in response is in the log by then. (The partition stream
        keeps an event until its partition's consumer acknowledged it.)"""
        js = self.log.js
        stream = partition_stream(self.log.stream)
        subject = (await js.get_msg(self.log.stream, sequence, direct=True)).subject or ""
        routed = orchestrator_subject_type(subject)
        if routed is None:
            return  # not an event the orchestrators decide on
        count = await partition_count(js) or 0
        copy = f"{PARTITION_PREFIX}.{partition_of(routed[1], count)}.{subject}"

        async def processed() -> bool:
            sources = (await js.stream_info(stream)).sources or []
            if any(source.lag for source in sources):
                return False  # not routed into its partition yet
            try:
                msg = await js.get_last_msg(stream, copy)
            except NotFoundError:
                return True
            return source_sequence((msg.headers or {}).get(STREAM_SOURCE)) != sequence

        await eventually(processed, timeout, f"orchestrators never decided on sequence {sequence}")

    async def holders(self) -> dict[int, list[Role]]:
        """Which live orchestrators say they serve each partition."""
        found: dict[int, list[Role]] = {}
        async with aiohttp.ClientSession() as session:
            for role in self.orchestrators:
                if role.process.poll() is not None:
                    continue
                health = await role.health(session)
                for partition in (health or {}).get("partitions", []):
                    found.setdefault(int(partition), []).append(role)
        return found

    async def wait_leader(
        self, timeout: float = 20.0, *, execution_id: str | None = None
    ) -> Role:
        """The orchestrator serving ``execution_id``'s partition (partition 0's holder, which
        makes the schedule ticks, when ``None``), once every partition is served by exactly
        one live orchestrator."""
        count = await partition_count(self.log.js) or 0
        wanted = 0 if execution_id is None else partition_of(execution_id, count)

        async def served() -> Role | None:
            holders = await self.holders()
            once = all(len(roles) == 1 for roles in holders.values())
            if count and once and sorted(holders) == list(range(count)):
                return holders[wanted][0]
            return None

        leader: Role = await eventually(served, timeout, "the partitions are not served", 0.05)
        return leader

    async def unsettled(self, execution_id: str) -> int:
        """Events of ``execution_id``'s partition delivered to its holder, not yet acked."""
        count = await partition_count(self.log.js) or 0
        consumer = partition_consumer(
            OrchestratorConfig().consumer, partition_of(execution_id, count)
        )
        info = await self.log.js.consumer_info(partition_stream(self.log.stream), consumer)
        return int(info.num_ack_pending or 0)

    def hits_per_action(self, execution_id: str) -> Counter[str]:
        """How often the target was called per action of the execution (by Idempotency-Key)."""
        prefix = f"{execution_id}:"
        return Counter(
            key.removeprefix(prefix)
            for key in (hit.idempotency_key for hit in self.target.hits)
            if key is not None and key.startswith(prefix)
        )


def dispatches_per_action(history: Iterable[Event]) -> Counter[str]:
    """``action.execute.requested`` events per action."""
    return Counter(e.action_id for e in history if isinstance(e, ActionExecuteRequested))


def attempts_per_action(history: Iterable[Event]) -> Counter[str]:
    """``action.started`` events (attempts) per action."""
    return Counter(e.action_id for e in history if isinstance(e, ActionStarted))


def _start_role(
    processes: Processes, kind: str, name: str, nats_url: str, directory: Path, *args: str
) -> Role:
    port = find_free_port()
    log_path = directory / f"{name}.log"
    command = tep_command(
        kind,
        *args,
        "--health-host",
        "127.0.0.1",
        "--health-port",
        str(port),
        "--nats-url",
        nats_url,
    )
    process = processes.start(command, child_env(nats_url, TEP_LOG_LEVEL="WARNING"), log_path)
    return Role(kind, name, process, port, log_path)


@asynccontextmanager
async def running_system(
    directory: Path,
    target: HttpTarget,
    *,
    orchestrators: int = 2,
    executors: int = 3,
    concurrency: int = 8,
) -> AsyncIterator[System]:
    """Start a nats-server and the roles, wait until every one is healthy and every
    partition is served; stop everything (SIGTERM, then SIGKILL) on exit."""
    server = EmbeddedServer(data_dir=directory / "nats")
    server.start()
    processes = Processes()
    nc: NatsClient | None = None
    try:
        nc = await connect(server.url, name="system-test")
        settings = TepSettings(nats_url=server.url)
        await ensure_log(nc.jetstream(), settings)
        system = System(
            server=server,
            nc=nc,
            log=EventLog(nc, settings),
            target=target,
            orchestrators=[
                _start_role(
                    processes,
                    "orchestrator",
                    f"orchestrator-{n}",
                    server.url,
                    directory,
                    "--instance-id",
                    f"orchestrator-{n}",
                )
                for n in range(1, orchestrators + 1)
            ],
            executors=[
                _start_role(
                    processes,
                    "executor",
                    f"executor-{n}",
                    server.url,
                    directory,
                    "--queue",
                    "http",
                    "--concurrency",
                    str(concurrency),
                    "--shutdown-grace",
                    "1",
                )
                for n in range(1, executors + 1)
            ],
        )
        async with aiohttp.ClientSession() as session:
            for role in system.executors:
                health = await eventually(
                    lambda role=role: role.health(session), 30, f"{role.name} not healthy", 0.05
                )
                system.executor_ids.add(str(health["executor_id"]))
            for role in system.orchestrators:
                await eventually(
                    lambda role=role: role.health(session), 30, f"{role.name} not healthy", 0.05
                )
        await system.wait_leader()
        yield system
    finally:
        processes.stop_all()
        if nc is not None:
            await nc.close()
        server.stop()


@asynccontextmanager
async def projected(system: System, directory: Path) -> AsyncIterator[StateManager]:
    """A `tep projector` process on the system's server and an open StateManager reading the
    view it keeps; both stopped on exit."""
    url = system.server.url
    projector = Processes()
    projector.start(
        tep_command("projector", "--nats-url", url),
        child_env(url, TEP_LOG_LEVEL="WARNING"),
        directory / "projector.log",
    )
    sm = StateManager(system.nc, TepSettings(nats_url=url))
    try:
        await sm.open()
        yield sm
    finally:
        await sm.close()
        projector.stop_all()
