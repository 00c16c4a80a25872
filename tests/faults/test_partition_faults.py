"""Partitioned orchestration as real processes: orchestrators share the 16 partitions fairly,
take over a ``kill -9``ed one's partitions, finish plans in flight on every partition with no
double dispatch, and rebalance when one more joins while plans keep completing.

Takeover and rebalance times are printed (``pytest -s``), not asserted: each run must end,
correct, within a generous deadline.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from nats.js.errors import KeyNotFoundError
from roles_support import Role, System, eventually, healthy, start_role
from support.http_target import HttpTarget
from system_support import attempts_per_action, dispatches_per_action
from tep_cli import Processes

from eventstore.config import TepSettings
from eventstore.events import ActionCompleted, ExecutionCompleted
from eventstore.jetstream.connection import NatsClient, connect
from eventstore.jetstream.log import EventLog
from eventstore.jetstream.provision import ensure_log
from eventstore.partitions import (
    DEFAULT_PARTITIONS,
    partition_consumer,
    partition_of,
    partition_stream,
)
from eventstore.plan import Action, Plan, RequestSpec
from orchestrator.config import OrchestratorConfig
from orchestrator.partition_leases import partition_key
from tep.server import EmbeddedServer

pytestmark = pytest.mark.anyio

P = DEFAULT_PARTITIONS
STEPS = ("s0", "s1", "s2", "s3")
SLOW_S = 3.0
"""How long the slow step keeps each plan in flight."""


@pytest.fixture
async def target() -> AsyncIterator[HttpTarget]:
    async with HttpTarget() as server:
        yield server


@dataclass
class Partitioned:
    """A nats-server, orchestrator processes sharing the partitions, an executor."""

    system: System
    processes: Processes
    directory: Path
    frozen: set[str] = field(default_factory=set)
    """Orchestrators stopped with SIGSTOP (not asked for their health)."""

    @property
    def live(self) -> list[Role]:
        return [
            r
            for r in self.system.orchestrators
            if r.process.poll() is None and r.name not in self.frozen
        ]

    def add_orchestrator(self, name: str) -> Role:
        role = start_role(
            self.processes,
            "orchestrator",
            name,
            self.system.server.url,
            self.directory,
            "--instance-id",
            name,
        )
        self.system.orchestrators.append(role)
        return role

    async def holdings(self) -> dict[str, tuple[list[int], list[str]]] | None:
        """Each live orchestrator's partitions and the members it sees (``None`` while one
        does not answer)."""
        found = {}
        async with aiohttp.ClientSession() as session:
            for role in self.live:
                health = await role.health(session)
                if health is None:
                    return None
                found[role.name] = (list(health["partitions"]), list(health["members"]))
        return found

    async def lease_holders(self) -> dict[int, str | None]:
        """Each partition's holder as its lease key says."""
        kv = await self.system.nc.jetstream().key_value(OrchestratorConfig().lease_bucket)
        holders: dict[int, str | None] = {}
        for partition in range(P):
            try:
                entry = await kv.get(partition_key(partition))
            except KeyNotFoundError:
                holders[partition] = None
                continue
            holders[partition] = json.loads(entry.value or b"{}").get("holder")
        return holders

    async def wait_shared(self, sizes: set[int], timeout: float, why: str) -> dict[str, list[int]]:
        """Wait until the live orchestrators hold every partition once, each a count in
        ``sizes``, each seeing all of them as members, the leases agreeing; their holdings."""
        names = sorted(r.name for r in self.live)

        async def shared() -> dict[str, list[int]] | None:
            found = await self.holdings()
            if found is None or sorted(found) != names:
                return None
            held = {name: partitions for name, (partitions, _) in found.items()}
            if not fair(held, sizes) or any(m != names for _, m in found.values()):
                return None
            leases = await self.lease_holders()
            expected = {p: name for name, ps in held.items() for p in ps}
            return held if leases == expected else None

        result: dict[str, list[int]] = await eventually(shared, timeout, why, 0.05)
        return result


def fair(held: dict[str, list[int]], sizes: set[int]) -> bool:
    """Every partition held exactly once, every holder's count one of ``sizes``."""
    every = [p for partitions in held.values() for p in partitions]
    return sorted(every) == list(range(P)) and all(len(ps) in sizes for ps in held.values())


@asynccontextmanager
async def partitioned(
    directory: Path, target: HttpTarget, *, orchestrators: int
) -> AsyncIterator[Partitioned]:
    """``orchestrators`` orchestrator processes and one executor; all stopped on exit."""
    server = EmbeddedServer(data_dir=directory / "nats")
    server.start()
    processes = Processes()
    nc: NatsClient | None = None
    try:
        nc = await connect(server.url, name="partition-faults")
        settings = TepSettings(nats_url=server.url)
        await ensure_log(nc.jetstream(), settings)
        executor = start_role(
            processes,
            "executor",
            "executor-1",
            server.url,
            directory,
            "--queue",
            "http",
            "--concurrency",
            "64",
            "--shutdown-grace",
            "1",
        )
        system = System(
            server=server,
            nc=nc,
            log=EventLog(nc, settings),
            target=target,
            orchestrators=[],
            executors=[executor],
        )
        cluster = Partitioned(system, processes, directory)
        for n in range(1, orchestrators + 1):
            cluster.add_orchestrator(f"orchestrator-{n}")
        for role in [executor, *system.orchestrators]:
            await healthy(role)
        yield cluster
    finally:
        processes.stop_all()
        if nc is not None:
            await nc.close()
        server.stop()


def one_per_partition(name: str) -> list[str]:
    """Execution ids, the n-th in partition n."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < P:
        candidate = f"{name}-{n}"
        found.setdefault(partition_of(candidate, P), candidate)
        n += 1
    return [found[p] for p in range(P)]


def slow_chain(target: HttpTarget, e: str) -> Plan:
    """Four steps in a row, the second slow: the plan is in flight for a while."""
    urls = {
        "s0": target.url(f"/echo/{e}/s0"),
        "s1": target.url(f"/slow/{e}/s1"),
        "s2": target.url(f"/echo/{e}/s2"),
        "s3": target.url(f"/echo/{e}/s3"),
    }
    return Plan(
        id="slow-chain",
        actions=[
            Action(
                id=step,
                depends_on=[STEPS[n - 1]] if n else [],
                request=RequestSpec(
                    url=urls[step], query={"delay": str(SLOW_S)} if step == "s1" else {}
                ),
            )
            for n, step in enumerate(STEPS)
        ],
    )


def fast_chain(target: HttpTarget, e: str, length: int) -> Plan:
    """``length`` quick steps in a row: a steady stream of outcomes to decide on."""
    return Plan(
        id="fast-chain",
        actions=[
            Action(
                id=f"f{n}",
                depends_on=[f"f{n - 1}"] if n else [],
                request=RequestSpec(url=target.url(f"/echo/{e}/f{n}")),
            )
            for n in range(length)
        ],
    )


async def submit_all(system: System, executions: Iterable[str]) -> None:
    for e in executions:
        await system.submit(e, slow_chain(system.target, e))


async def wait_in_flight(system: System, executions: list[str]) -> None:
    """Until every execution's slow step was called."""
    await eventually(
        lambda: all(system.hits_per_action(e)["s1"] for e in executions),
        30,
        "not every plan reached its slow step",
        0.05,
    )


async def assert_completed_once(
    system: System, executions: list[str], timeout: float, steps: Iterable[str] = STEPS
) -> None:
    """Every execution completed, each action dispatched, completed and called once."""
    started = time.monotonic()
    for e in executions:
        try:
            end = await system.wait_end(e, timeout=max(timeout - (time.monotonic() - started), 1))
        except AssertionError as stalled:
            raise AssertionError(f"{stalled}\n{await stall_report(system, executions)}") from None
        assert isinstance(end, ExecutionCompleted), (e, end)
    once = Counter({step: 1 for step in steps})
    for e in executions:
        history = await system.history(e)
        assert dispatches_per_action(history) == once, e
        assert attempts_per_action(history) == once, e
        completed = Counter(x.action_id for x in history if isinstance(x, ActionCompleted))
        assert completed == once, e
        # The executor was not disturbed: each action's one attempt called the target once.
        assert system.hits_per_action(e) == once, e


async def freeze_while_renewing(cluster: Partitioned, victim: Role) -> None:
    """SIGSTOP ``victim`` the moment one of its lease renewals is seen."""
    kv = await cluster.system.nc.jetstream().key_value(OrchestratorConfig().lease_bucket)
    watcher = await kv.watch("partition.*")
    try:
        deadline = time.monotonic() + 10
        current = True  # the bucket's current values come first, then None
        async for entry in watcher:
            assert time.monotonic() < deadline, f"{victim.name} never renewed"
            if entry is None:
                current = False
                continue
            if current:
                continue
            if json.loads(entry.value or b"{}").get("holder") == victim.name:
                os.killpg(victim.process.pid, signal.SIGSTOP)
                return
    finally:
        await watcher.stop()


async def stall_report(system: System, executions: list[str]) -> str:
    """What the executions that did not end last had, and their partitions' consumers."""
    js = system.nc.jetstream()
    stream = partition_stream(system.log.stream)
    lines = []
    for e in executions:
        if await system.end_of(e) is not None:
            continue
        records = await system.log.read_execution(e)
        tail = [
            f"{r.sequence}:{type(r.event).__name__}:{getattr(r.event, 'action_id', '')}"
            for r in records[-4:]
        ]
        partition = partition_of(e, P)
        info = await js.consumer_info(stream, partition_consumer("orchestrator", partition))
        lines.append(
            f"{e} (partition {partition}): {len(records)} events, last {tail}; consumer "
            f"pending {info.num_pending} ack_pending {info.num_ack_pending} redelivered "
            f"{info.num_redelivered} waiting {info.num_waiting} delivered "
            f"{info.delivered.stream_seq if info.delivered else None} ack_floor "
            f"{info.ack_floor.stream_seq if info.ack_floor else None}"
        )
    return "\n".join(lines)


async def test_three_share_a_killed_ones_partitions_are_taken_over_without_double_dispatch(
    tmp_path: Path, target: HttpTarget
) -> None:
    async with partitioned(tmp_path, target, orchestrators=3) as cluster:
        system = cluster.system
        began = time.monotonic()
        held = await cluster.wait_shared({5, 6}, 30, "three never shared the partitions 5-6")
        print(
            f"\nthree orchestrators shared {P} partitions {time.monotonic() - began:.2f}s "
            f"after they answered: {sorted(len(ps) for ps in held.values())}"
        )

        executions = one_per_partition("inflight")
        await submit_all(system, executions)
        await wait_in_flight(system, executions)

        victim = system.orchestrators[0]
        orphaned = (await cluster.holdings() or {})[victim.name][0]
        assert len(orphaned) in (5, 6)
        victim.kill()
        killed = time.monotonic()
        # Each plan of the killed one's partitions needs a decision after the kill.
        orphans = [e for e in executions if partition_of(e, P) in orphaned]
        assert not [e for e in orphans if system.hits_per_action(e)["s2"]], "done too soon"

        async def covered() -> bool:
            found = await cluster.holdings()
            if found is None:
                return False
            return sorted(p for ps, _ in found.values() for p in ps) == list(range(P))

        await eventually(covered, 30, "the killed one's partitions were never taken over", 0.05)
        took_over = time.monotonic() - killed
        after = await cluster.wait_shared({8}, 30, "the two survivors never held 8 each")
        balanced = time.monotonic() - killed
        await assert_completed_once(system, executions, timeout=60)
        finished = time.monotonic() - killed

        survivors = {p: name for name, ps in after.items() for p in ps}
        assert victim.name not in after
        assert all(survivors[p] != victim.name for p in orphaned)
        print(
            f"kill -9 of {victim.name} (held {orphaned}): every partition held again after "
            f"{took_over:.2f}s, 8 each after {balanced:.2f}s; all {len(executions)} plans "
            f"done {finished:.2f}s after the kill"
        )


async def test_a_fourth_joins_rebalancing_to_four_each_while_plans_complete(
    tmp_path: Path, target: HttpTarget
) -> None:
    async with partitioned(tmp_path, target, orchestrators=3) as cluster:
        system = cluster.system
        await cluster.wait_shared({5, 6}, 30, "three never shared the partitions 5-6")
        before = one_per_partition("before")
        await submit_all(system, before)
        await wait_in_flight(system, before)

        joined = time.monotonic()
        fourth = cluster.add_orchestrator("orchestrator-4")
        during = one_per_partition("during")
        await submit_all(system, during)  # while the fourth starts
        await healthy(fourth)
        still = one_per_partition("joined")
        state = await cluster.holdings()
        await submit_all(system, still)  # while the others hand partitions over

        held = await cluster.wait_shared({4}, 30, "four never held 4 partitions each")
        rebalanced = time.monotonic() - joined
        executions = [*before, *during, *still]
        await assert_completed_once(system, executions, timeout=60)
        finished = time.monotonic() - joined

        assert len(held["orchestrator-4"]) == 4
        shown = {name: len(ps) for name, (ps, _) in (state or {}).items()}
        print(
            f"\nfourth orchestrator: 4 each {rebalanced:.2f}s after it started (held when it "
            f"first answered: {shown}); all {len(executions)} plans done {finished:.2f}s "
            "after it started"
        )


async def test_a_frozen_holder_whose_partitions_were_taken_over_wakes_without_double_dispatch(
    tmp_path: Path, target: HttpTarget
) -> None:
    """SIGSTOP one orchestrator while it holds events it took: the others take its
    partitions over; when it resumes, with stale leases and those events in hand, whatever it
    decides again is refused by the guards, and it rejoins the share."""
    length = 30
    async with partitioned(tmp_path, target, orchestrators=3) as cluster:
        system = cluster.system
        held = await cluster.wait_shared({5, 6}, 30, "three never shared the partitions 5-6")
        victim = system.orchestrators[1]
        frozen_partitions = held[victim.name]
        executions = one_per_partition("frozen")
        for e in executions:
            await system.submit(e, fast_chain(target, e, length))
        await eventually(
            lambda: all(system.hits_per_action(e)["f1"] for e in executions),
            30,
            "the chains never got going",
            0.05,
        )
        # Stopped in the middle of renewing its leases: some renewed a moment before, the
        # rest found taken when it resumes.
        await freeze_while_renewing(cluster, victim)
        stopped = time.monotonic()
        js = system.nc.jetstream()
        stream = partition_stream(system.log.stream)

        async def in_hand() -> bool:
            for partition in frozen_partitions:
                info = await js.consumer_info(stream, partition_consumer("orchestrator", partition))
                if int(info.num_ack_pending or 0) > 0:
                    return True
            return False

        try:
            await eventually(in_hand, 10, "the frozen one took nothing", 0.02)
            cluster.frozen = {victim.name}

            async def taken_over() -> bool:
                found = await cluster.holdings()
                return found is not None and fair(
                    {name: ps for name, (ps, _) in found.items()}, {8}
                )

            await eventually(taken_over, 30, "the frozen one's partitions were not taken", 0.05)
            took_over = time.monotonic() - stopped
        finally:
            os.killpg(victim.process.pid, signal.SIGCONT)
            cluster.frozen = set()
        resumed = time.monotonic()
        await assert_completed_once(
            system, executions, timeout=45, steps=[f"f{n}" for n in range(length)]
        )
        again = await cluster.wait_shared({5, 6}, 30, "the woken one never rejoined the share")
        assert victim.name in again
        async with aiohttp.ClientSession() as session:
            woken = await victim.health(session) or {}
        print(
            f"\nSIGSTOP of {victim.name} (held {frozen_partitions}, events in hand): taken over "
            f"after {took_over:.2f}s; after SIGCONT all {len(executions)} chains done and the "
            f"share back to {sorted(len(ps) for ps in again.values())} "
            f"{time.monotonic() - resumed:.2f}s later; the woken one's counters: "
            f"processed {woken.get('processed')}, conflicts {woken.get('conflicts')}"
        )
