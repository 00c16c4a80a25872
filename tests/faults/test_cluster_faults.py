"""The 3-node cluster of deploy/nats/ (the committed configs, on free loopback ports, with
authentication on and each role its own identity): the stream's leader is killed (SIGKILL)
mid-run, with the roles connected to all three nodes and the streams at three replicas. The
execution must keep every promise of the kill matrix, and the time from the kill to its
completion is reported (the goal: under 10 s).

Marked slow (booting a cluster and electing leaders twice takes longer than CI's budget). The
figures are printed at the end (``-s``) and written into the pytest temp dir.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from matrix_support import (
    FaultReport,
    MatrixSystem,
    MatrixTarget,
    check_execution,
    eventually,
    fault_seed,
    first_after,
    mixed_plan,
)
from roles_support import FaultSystem, Role, healthy, start_role
from system_support import System
from tep_cli import Processes

from eventstore.config import TepSettings
from eventstore.events import EventBase, ExecutionCompleted
from eventstore.jetstream.log import EventLog
from projections import StateManager

_INTEGRATION = str(Path(__file__).resolve().parents[1] / "integration")
if _INTEGRATION not in sys.path:
    sys.path.insert(0, _INTEGRATION)

from test_cluster import (  # noqa: E402
    Node,
    _provision,
    cluster_from_deploy_files,
    cluster_seed,
)

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SEED = fault_seed()


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultReport]:
    figures = FaultReport("cluster_faults", SEED)
    yield figures
    path = figures.write(tmp_path_factory.getbasetemp())
    print(f"\n{figures.summary()}\nfigures: {path}")


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[list[Node]]:
    found = cluster_from_deploy_files(tmp_path)
    try:
        for node in found:
            node.server.start()
        yield found
    finally:
        for node in found:
            node.server.stop()


@pytest.fixture
async def ms(nodes: list[Node], tmp_path: Path) -> AsyncIterator[MatrixSystem]:
    """The roles (2 orchestrators, 2 executors, a projector) on all three nodes, R3 streams."""
    url = ",".join(node.server.url for node in nodes)
    settings = TepSettings(nats_url=url, replicas=3)
    nc = await _provision(url, settings, cluster_seed(tmp_path, "admin"))
    processes = Processes()
    try:
        async with MatrixTarget() as target:

            def role(kind: str, name: str, *args: str) -> Role:
                seed = str(cluster_seed(tmp_path, kind))
                return start_role(
                    processes, kind, name, url, tmp_path, *args, TEP_REPLICAS="3", TEP_NKEY=seed
                )

            system = System(
                server=nodes[0].server,
                nc=nc,
                log=EventLog(nc, settings),
                target=target,
                orchestrators=[
                    role("orchestrator", f"orchestrator-{n}", "--instance-id", f"o{n}")
                    for n in (1, 2)
                ],
                executors=[
                    role("executor", f"executor-{n}", "--queue", "http", "--shutdown-grace", "1")
                    for n in (1, 2)
                ],
            )
            projector = role("projector", "projector")
            for started in [*system.orchestrators, *system.executors, projector]:
                await healthy(started, timeout=60)
            await system.wait_leader(timeout=60)
            fs = FaultSystem(system, projector, settings, processes, tmp_path)
            matrix = MatrixSystem(fs, [projector], StateManager(nc, settings))
            await matrix.sm.open()
            try:
                yield matrix
            finally:
                await matrix.sm.close()
    finally:
        processes.stop_all()
        await nc.close()


async def test_the_stream_leader_killed_mid_run_costs_seconds(
    ms: MatrixSystem, nodes: list[Node], report: FaultReport
) -> None:
    size = 100
    e = ms.system.new_id("cluster")
    plan = mixed_plan(ms.target, e, size, random.Random(SEED))
    await ms.system.submit(e, plan)
    await eventually(lambda: ms.target.called(e) >= size // 3, 60, "a third never ran", 0.02)

    leader = (await ms.log.js.stream_info(ms.log.stream)).cluster.leader
    victim = next(node for node in nodes if node.name == leader)
    victim.server.kill()
    killed_at, progress = time.time(), ms.target.called(e)

    check, history = await check_execution(ms, e, plan, duplicates_allowed=None, timeout=120)
    ends = [t.stored_at for t in history if isinstance(t.event, ExecutionCompleted)]
    new_leader = (await ms.log.js.stream_info(ms.log.stream)).cluster.leader
    recovery = {
        "first_event": first_after(history, killed_at, (EventBase,)),
        "completed_after_kill": round(ends[0] - killed_at, 3) if ends else None,
    }
    report.add(
        f"stream leader {leader} killed, {size} actions",
        check,
        faults=[
            {
                "kind": "nats-server (stream leader)",
                "victim": leader,
                "progress": progress,
                "at": killed_at,
                "new_leader": new_leader,
                "recovery_s": recovery,
            }
        ],
    )

    assert check.problems == [], "\n".join(check.problems)
