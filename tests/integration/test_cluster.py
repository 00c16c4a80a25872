"""A 3-node JetStream cluster booted from deploy/nats/: a plan survives losing a node.

The three server configs are the committed files; only their ports (loopback, picked free),
store directories (a temp dir) and route password are rewritten, and ``tep creds init`` writes
the identities they include, so the test exercises what operators deploy: authentication on,
each role with its own seed.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from nats.js.errors import Error as JetStreamError

from eventstore.access import Role
from eventstore.config import TepSettings
from eventstore.errors import TepError
from eventstore.events import (
    ActionCompleted,
    ActionExecuteRequested,
    ExecutionCompleted,
    PlanSubmitted,
)
from eventstore.jetstream.connection import NatsClient, connect
from eventstore.jetstream.log import EventLog
from eventstore.jetstream.partition_status import partition_backlogs
from eventstore.plan import Action, Plan, RequestSpec, RetryPolicy
from eventstore.records import RecordedEvent
from orchestrator.config import OrchestratorConfig
from orchestrator.partition_leases import read_leases
from tep.creds import init_credentials, seed_path
from tep.provision import provision
from tep.server import EmbeddedServer, find_free_port

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "deploy" / "nats"
_ADDRESS = re.compile(r"127\.0\.0\.1:(\d+)")
_STORE_DIR = re.compile(r'store_dir:\s*"[^"]*"')
_CLIENT_LISTEN = re.compile(r"^listen:\s*127\.0\.0\.1:(\d+)", re.MULTILINE)
_SERVER_NAME = re.compile(r"^server_name:\s*(\S+)", re.MULTILINE)
_ROUTE_PASSWORD = "change-this-route-password"

LEVELS, WIDTH = 10, 10  # 100 actions: 10 levels of 10, each level waiting for the one before


@dataclass
class Node:
    name: str
    server: EmbeddedServer


def _free_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(find_free_port())
    return sorted(ports)


def cluster_seed(directory: Path, role: Role | str) -> Path:
    """The seed of ``role`` among the identities :func:`cluster_from_deploy_files` wrote."""
    return seed_path(directory / "creds", role)


def cluster_from_deploy_files(directory: Path) -> list[Node]:
    """Copies of deploy/nats/cluster-{1,2,3}.conf with free ports, private store dirs and a
    fresh route password, next to the identities they include (``directory/creds``)."""
    init_credentials(directory / "creds", settings=TepSettings())
    texts = [(CONFIG_DIR / f"cluster-{n}.conf").read_text() for n in (1, 2, 3)]
    assert all(_ROUTE_PASSWORD in text for text in texts), "cluster-N.conf: route password"
    password = secrets.token_hex(24)
    named = sorted({int(p) for text in texts for p in _ADDRESS.findall(text)})
    mapping = dict(zip(named, _free_ports(len(named)), strict=True))
    nodes = []
    for n, text in enumerate(texts, start=1):
        rewritten = _ADDRESS.sub(lambda m: f"127.0.0.1:{mapping[int(m.group(1))]}", text)
        rewritten = _STORE_DIR.sub(f'store_dir: "{directory / f"store-{n}"}"', rewritten)
        rewritten = rewritten.replace(_ROUTE_PASSWORD, password)
        path = directory / f"cluster-{n}.conf"
        path.write_text(rewritten)
        client = _CLIENT_LISTEN.search(text)
        name = _SERVER_NAME.search(text)
        assert client is not None and name is not None, f"cluster-{n}.conf: listen/server_name"
        server = EmbeddedServer(
            port=mapping[int(client.group(1))],
            config_file=path,
            log_file=directory / f"node-{n}.log",
        )
        nodes.append(Node(name.group(1), server))
    return nodes


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[Node]]:
    nodes = cluster_from_deploy_files(tmp_path)
    try:
        for node in nodes:
            node.server.start()
        yield nodes
    finally:
        for node in nodes:
            node.server.stop()


def _slow_target(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tep.cli.main", "demo-target", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _role(role: str, url: str, log: Path, seed: Path) -> subprocess.Popen[bytes]:
    # The loopback allowance of tests/conftest.py passes: the targets listen on loopback.
    loopback = "TEP_EXECUTOR_ALLOW_CIDRS"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEP_") or k == loopback}
    env.update(TEP_NATS_URL=url, TEP_REPLICAS="3", TEP_NKEY=str(seed))
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tep.cli.main", role, "--nats-url", url],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def layered_plan(target: str) -> Plan:
    """LEVELS x WIDTH slow calls; every action of a level depends on the whole level before."""
    actions = []
    for level in range(LEVELS):
        previous = [f"l{level - 1}-{i}" for i in range(WIDTH)] if level else []
        for i in range(WIDTH):
            actions.append(
                Action(
                    id=f"l{level}-{i}",
                    depends_on=previous,
                    request=RequestSpec(url=f"{target}/slow", query={"ms": "150"}, timeout_s=10),
                    retry=RetryPolicy(max_attempts=5, min_backoff_ms=200),
                )
            )
    return Plan(id="cluster-100", actions=actions)


async def _provision(url: str, settings: TepSettings, admin_seed: Path) -> NatsClient:
    """Connect as the admin and create the R3 streams and buckets (what ``tep provision``
    does) once the cluster has elected a meta leader."""
    nc = await connect(url, name="cluster-test", nkeys_seed=str(admin_seed))
    with anyio.fail_after(30):
        while True:
            try:
                await provision(nc.jetstream(timeout=5.0), settings)
                return nc
            except (JetStreamError, TepError, TimeoutError):
                await anyio.sleep(0.25)


async def _history(log: EventLog, execution_id: str) -> list[RecordedEvent]:
    """The execution's history, retried through leader elections."""
    with anyio.fail_after(30):
        while True:
            try:
                return await log.read_execution(execution_id, timeout=5.0)
            except Exception:  # any JetStream hiccup during a failover: read again
                await anyio.sleep(0.25)


async def test_a_100_action_plan_completes_when_a_node_dies_mid_run(
    cluster: list[Node], tmp_path: Path
) -> None:
    url = ",".join(node.server.url for node in cluster)
    settings = TepSettings(nats_url=url, replicas=3)
    nc = await _provision(url, settings, cluster_seed(tmp_path, Role.ADMIN))
    log = EventLog(nc, settings)
    info = await log.js.stream_info(settings.stream)
    assert info.config.num_replicas == 3

    target_port = find_free_port()
    processes = [_slow_target(target_port)]
    try:
        processes += [
            _role(role, url, tmp_path / f"{role}.log", cluster_seed(tmp_path, role))
            for role in ("orchestrator", "executor")
        ]
        plan = layered_plan(f"http://127.0.0.1:{target_port}")
        await log.append(PlanSubmitted(execution_id="c1", plan=plan))

        # Let about a third of the plan finish, then kill the stream's leader.
        with anyio.fail_after(60):
            while True:
                before = await _history(log, "c1")
                done = sum(isinstance(r.event, ActionCompleted) for r in before)
                if done >= 30:
                    break
                await anyio.sleep(0.1)
        leader = (await log.js.stream_info(settings.stream)).cluster.leader
        victim = next(node for node in cluster if node.name == leader)
        victim.server.kill()
        killed_at = time.monotonic()

        with anyio.fail_after(120):
            while True:
                history = await _history(log, "c1")
                if any(isinstance(r.event, ExecutionCompleted) for r in history):
                    break
                await anyio.sleep(0.25)
        recovery = time.monotonic() - killed_at
    finally:
        _stop(processes)

    after_ids = {r.event.event_id for r in history}
    missing = [r for r in before if r.event.event_id not in after_ids]
    assert missing == [], f"{len(missing)} acknowledged events lost with node {victim.name}"
    completed = {r.event.action_id for r in history if isinstance(r.event, ActionCompleted)}
    requested = {r.event.action_id for r in history if isinstance(r.event, ActionExecuteRequested)}
    assert completed == {a.id for a in plan.actions} == requested
    assert sum(isinstance(r.event, PlanSubmitted) for r in history) == 1
    assert sum(isinstance(r.event, ExecutionCompleted) for r in history) == 1
    sequences = [r.sequence for r in history]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
    print(f"node {victim.name} killed after {len(before)} events; completed {recovery:.1f}s later")
    await nc.close()


async def test_partitions_spread_over_the_nodes_and_are_shared_by_two_orchestrators(
    cluster: list[Node], tmp_path: Path
) -> None:
    url = ",".join(node.server.url for node in cluster)
    settings = TepSettings(nats_url=url, replicas=3)
    nc = await _provision(url, settings, cluster_seed(tmp_path, Role.ADMIN))
    log = EventLog(nc, settings)
    backlogs = await partition_backlogs(log.js, settings)
    leaders = Counter(backlog.node for backlog in backlogs.values())

    target_port = find_free_port()
    processes = [_slow_target(target_port)]
    try:
        processes += [
            _role(role, url, tmp_path / f"{role}-{n}.log", cluster_seed(tmp_path, role))
            for n, role in enumerate(("orchestrator", "orchestrator", "executor"))
        ]
        leases = await log.js.key_value(OrchestratorConfig().lease_bucket)
        with anyio.fail_after(60):
            while True:
                holders = Counter(
                    lease.holder for lease in (await read_leases(leases, 16)).values()
                )
                if None not in holders and sorted(holders.values()) == [8, 8]:
                    break
                await anyio.sleep(0.2)
        plan = Plan(
            id="spread",
            actions=[
                Action(id="a", request=RequestSpec(url=f"http://127.0.0.1:{target_port}/slow")),
            ],
        )
        ids = [f"spread-{n}" for n in range(8)]
        for execution_id in ids:
            await log.append(PlanSubmitted(execution_id=execution_id, plan=plan))
        with anyio.fail_after(60):
            for execution_id in ids:
                while True:
                    history = await _history(log, execution_id)
                    if any(isinstance(r.event, ExecutionCompleted) for r in history):
                        break
                    await anyio.sleep(0.1)
    finally:
        _stop(processes)
        await nc.close()

    assert set(leaders) <= {node.name for node in cluster}
    assert len(leaders) > 1, leaders  # the partitions' consumers are led by different nodes
    print(f"partition consumers led per node: {dict(sorted(leaders.items()))}")
