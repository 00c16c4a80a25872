"""Schedules against a real nats-server: ticks fired by leading orchestrators, exactly once.

Real time where the guarantee is about real processes (two orchestrators and a handover, an
outage and its catch-up); a given clock where the test is about which ticks a look fires, so
those need no waiting.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import anyio
import msgspec
import nats.errors
import pytest
from anyio.abc import TaskStatus
from support.nats_auth import AuthServer
from support.waiting import eventually

from eventstore.access import Role
from eventstore.config import TepSettings
from eventstore.jetstream.connection import connect, connect_as
from eventstore.jetstream.log import EventLog
from eventstore.jetstream.schedules import ScheduleStore
from eventstore.plan import Action, Plan, RequestSpec
from eventstore.schedules import (
    SCHEDULE_BUCKET,
    CatchUp,
    ScheduleDefinition,
    parse_stamp,
    stamp,
    tick_execution_id,
)
from orchestrator.config import OrchestratorConfig
from orchestrator.partition_leases import partition_key
from orchestrator.scheduler import CAUGHT_UP, FIRED, SKIPPED, Scheduler
from orchestrator.service import Orchestrator
from tep.provision import provision

_E2E = str(Path(__file__).resolve().parents[1] / "e2e")
if _E2E not in sys.path:
    sys.path.insert(0, _E2E)

from tep_cli import Processes, child_env, tep_command  # noqa: E402

pytestmark = pytest.mark.anyio

QUICK_STOP = OrchestratorConfig(ack_wait_s=2.0, pull_expires_s=0.5)
"""Clean stops hand the lease over at once; the default lease keeps a loaded machine's slow
second from counting as a stall."""
PLAN = Plan(id="tick", actions=[Action(id="a", request=RequestSpec(url="http://127.0.0.1:9/"))])
ONE_SECOND = timedelta(seconds=1)
_TICK = "%Y%m%dT%H%M%SZ"


# ----------------------------------------------------------------------------- helpers


async def add(
    log: EventLog,
    name: str,
    *,
    cron: str = "@every 1s",
    catch_up: CatchUp = "all",
    created_at: datetime | None = None,
) -> ScheduleStore:
    store = await ScheduleStore.ensure(log)
    await store.add(
        ScheduleDefinition(
            name=name,
            cron=cron,
            plan=PLAN,
            catch_up=catch_up,
            created_at=stamp(created_at or datetime.now(UTC)),
        )
    )
    return store


async def fired(log: EventLog, name: str) -> list[datetime]:
    """The ticks of ``name`` that started an execution, from the log, oldest first."""
    ids = [r.subject.split(".")[2] for r in await log.read_subject_raw("plan.submitted.*")]
    assert len(ids) == len(set(ids))  # the log never holds an execution twice
    prefix = f"{name}-"
    return sorted(
        datetime.strptime(i.removeprefix(prefix), _TICK).replace(tzinfo=UTC)
        for i in ids
        if i.startswith(prefix) and not i.startswith(f"{name}-manual-")
    )


def gaps(ticks: list[datetime]) -> list[timedelta]:
    return [b - a for a, b in pairwise(ticks)]


@asynccontextmanager
async def orchestrator(settings: TepSettings, instance_id: str) -> AsyncIterator[Orchestrator]:
    nc = await connect(settings.nats_url, name=instance_id)
    try:
        async with anyio.create_task_group() as tg:
            service = Orchestrator(nc, settings, QUICK_STOP, instance_id=instance_id)
            await tg.start(service.run)
            yield service
            tg.cancel_scope.cancel()
    finally:
        await nc.close()


async def running(
    settings: TepSettings,
    instance_id: str,
    *,
    task_status: TaskStatus[tuple[Orchestrator, anyio.CancelScope]] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """An orchestrator in its own task; cancelling the scope it hands back stops it cleanly."""
    with anyio.CancelScope() as scope:
        async with orchestrator(settings, instance_id) as service:
            task_status.started((service, scope))
            await anyio.sleep_forever()


async def at_least(log: EventLog, name: str, count: int, timeout: float = 20) -> list[datetime]:
    async def enough() -> list[datetime] | None:
        ticks = await fired(log, name)
        return ticks if len(ticks) >= count else None

    result: list[datetime] = await eventually(enough, timeout, f"{count} ticks of {name}", 0.1)
    return result


class Clock:
    """A clock the test moves."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


T0 = datetime(2024, 1, 1, tzinfo=UTC)


# --------------------------------------------------------------- real orchestrators


async def test_two_orchestrators_fire_each_tick_exactly_once_across_a_handover(
    event_log: EventLog, settings: TepSettings
) -> None:
    await add(event_log, "beat")
    async with anyio.create_task_group() as tg:
        one, stop_one = await tg.start(running, settings, "o1")
        two, stop_two = await tg.start(running, settings, "o2")
        before = await at_least(event_log, "beat", 5)
        # The holder of partition 0 makes the ticks; a clean stop hands it to the other.
        leader, standby = (one, two) if 0 in one.held else (two, one)
        (stop_one if leader is one else stop_two).cancel()
        after = await at_least(event_log, "beat", len(before) + 5)
        tg.cancel_scope.cancel()
    counted = one.stats[FIRED] + two.stats[FIRED]

    ticks = await fired(event_log, "beat")
    assert len(ticks) >= len(after)
    assert set(gaps(ticks)) == {ONE_SECOND}  # catch-up all: no tick lost in the handover
    assert counted <= len(ticks)  # no orchestrator counted a tick the other had stored
    assert standby.stats[FIRED] > 0 and leader.stats[FIRED] > 0


@pytest.mark.parametrize(
    "policy",
    [
        "one",
        pytest.param("none", marks=pytest.mark.slow),
        pytest.param("all", marks=pytest.mark.slow),
    ],
)
async def test_after_an_outage_missed_ticks_follow_the_catch_up_policy(
    event_log: EventLog, settings: TepSettings, policy: CatchUp
) -> None:
    await add(event_log, "beat", catch_up=policy)
    async with orchestrator(settings, "before"):
        await at_least(event_log, "beat", 2)
    before = await fired(event_log, "beat")

    await anyio.sleep(5)  # the outage: no orchestrator runs

    async with orchestrator(settings, "after") as service:
        after = await at_least(event_log, "beat", len(before) + 3)
        stats = dict(service.stats)

    restarted = after[len(before) :]
    assert set(gaps(before)) == {ONE_SECOND}
    assert set(gaps(restarted)) == {ONE_SECOND}  # the catch-up tick, then on time
    outage = restarted[0] - before[-1]
    if policy == "all":
        assert outage == ONE_SECOND  # every missed tick fired
        assert stats[CAUGHT_UP] >= 5 and stats[SKIPPED] == 0
    else:
        assert outage >= 5 * ONE_SECOND  # the ticks of the outage were not fired...
        assert stats[SKIPPED] == 1  # ...but skipped, at the one look after the start
        assert stats[CAUGHT_UP] == (1 if policy == "one" else 0)  # exactly one catch-up


async def test_the_state_records_the_last_tick_and_execution(
    event_log: EventLog, settings: TepSettings
) -> None:
    store = await add(event_log, "beat")
    async with orchestrator(settings, "o1"):
        await at_least(event_log, "beat", 2)
    last = (await fired(event_log, "beat"))[-1]

    stored = await store.state("beat")
    state = stored.value

    assert (await store.read_all()).states["beat"].revision == stored.revision
    assert state.last_tick == stamp(last)
    assert state.last_execution_id == tick_execution_id("beat", last)
    assert state.last_fired_at is not None and parse_stamp(state.last_fired_at) >= last


# ------------------------------------------------------------------ a given clock


async def test_two_schedulers_looking_at_once_submit_each_tick_once(
    event_log: EventLog, settings: TepSettings
) -> None:
    """Leadership aside (both act as leaders): the deterministic ids alone keep each tick to
    one execution."""
    store = await add(event_log, "race", created_at=T0)
    clock = Clock(T0)
    other_nc = await connect(settings.nats_url, name="second")
    try:
        other_log = EventLog(other_nc, settings)
        one = Scheduler(event_log, clock=clock)
        two = Scheduler(other_log, clock=clock)
        other_store = await ScheduleStore.ensure(other_log)
        for second in range(1, 6):
            clock.now = T0 + timedelta(seconds=second, milliseconds=100)
            async with anyio.create_task_group() as tg:
                tg.start_soon(one.look, store, T0)
                tg.start_soon(two.look, other_store, T0)
    finally:
        await other_nc.close()

    ticks = await fired(event_log, "race")
    assert ticks == [T0 + timedelta(seconds=n) for n in range(1, 6)]
    assert one.stats[FIRED] + two.stats[FIRED] == 5
    assert (await store.state("race")).value.last_tick == stamp(T0 + timedelta(seconds=5))


@pytest.mark.parametrize(
    ("policy", "expected", "caught_up"),
    [("none", [13], 0), ("one", [12, 13], 1), ("all", [11, 12, 13], 2)],
)
async def test_the_first_look_after_an_outage(
    event_log: EventLog, policy: CatchUp, expected: list[int], caught_up: int
) -> None:
    store = await add(event_log, "late", created_at=T0 + timedelta(seconds=10), catch_up=policy)
    clock = Clock(T0 + timedelta(seconds=13, milliseconds=300))
    scheduler = Scheduler(event_log, clock=clock)

    await scheduler.look(store, missed_until=T0 + timedelta(seconds=12, milliseconds=500))

    assert await fired(event_log, "late") == [T0 + timedelta(seconds=n) for n in expected]
    assert scheduler.stats[CAUGHT_UP] == caught_up
    state = (await store.state("late")).value
    assert state.last_tick == stamp(T0 + timedelta(seconds=13))
    clock.now += ONE_SECOND  # the next look: on time, whatever the policy
    await scheduler.look(store, missed_until=T0)
    assert (await fired(event_log, "late"))[-1] == T0 + timedelta(seconds=14)


async def test_paused_and_removed_schedules_fire_nothing_and_resume_skips_the_pause(
    event_log: EventLog,
) -> None:
    store = await add(event_log, "sleepy", created_at=T0)
    clock = Clock(T0 + timedelta(seconds=2, milliseconds=1))
    scheduler = Scheduler(event_log, clock=clock)
    await scheduler.look(store, T0)
    assert len(await fired(event_log, "sleepy")) == 2

    await store.change("sleepy", lambda d: msgspec.structs.replace(d, paused=True))
    clock.now += 5 * ONE_SECOND
    await scheduler.look(store, T0)
    assert len(await fired(event_log, "sleepy")) == 2

    resumed_at = clock.now
    await store.change(
        "sleepy",
        lambda d: msgspec.structs.replace(d, paused=False, resumed_at=stamp(resumed_at)),
    )
    clock.now += ONE_SECOND
    await scheduler.look(store, T0)
    ticks = await fired(event_log, "sleepy")
    assert len(ticks) == 3 and ticks[-1] > resumed_at  # the pause's ticks never fire

    await store.remove("sleepy")
    clock.now += 5 * ONE_SECOND
    await scheduler.look(store, T0)
    assert len(await fired(event_log, "sleepy")) == 3


async def test_a_broken_definition_is_reported_and_the_others_fire(
    event_log: EventLog, caplog: pytest.LogCaptureFixture
) -> None:
    store = await add(event_log, "good", created_at=T0)
    broken = ScheduleDefinition(
        name="bad", cron="* * *", plan=PLAN, created_at=stamp(T0)
    )  # written around the CLI's checks
    await store.add(broken)
    await store.kv.put("def.garbage", b"not json")
    scheduler = Scheduler(event_log, clock=Clock(T0 + timedelta(seconds=1, milliseconds=5)))

    await scheduler.look(store, T0)

    assert await fired(event_log, "good") == [T0 + ONE_SECOND]
    assert "schedule bad cannot fire" in caplog.text


# ----------------------------------------------------------------------- permissions


async def test_with_authentication_the_orchestrator_fires_and_only_the_admin_defines(
    tmp_path: Path,
) -> None:
    server = AuthServer(tmp_path).start()
    try:
        admin_nc = await connect_as(server.settings(Role.ADMIN), Role.ADMIN, name="admin")
        await provision(admin_nc.jetstream(), server.settings(Role.ADMIN))
        admin_log = EventLog(admin_nc, server.settings(Role.ADMIN))
        await add(admin_log, "beat")
        opened = {
            role: await connect_as(server.settings(role), role, name=role.value)
            for role in (Role.ORCHESTRATOR, Role.CLIENT)
        }
        settings = server.settings(Role.ORCHESTRATOR)
        async with anyio.create_task_group() as tg:
            service = Orchestrator(opened[Role.ORCHESTRATOR], settings, QUICK_STOP)
            await tg.start(service.run)
            await at_least(admin_log, "beat", 2)
            tg.cancel_scope.cancel()

        client = EventLog(opened[Role.CLIENT], server.settings(Role.CLIENT))
        store = await ScheduleStore.open(client)
        assert store is not None
        seen = await store.read_all()
        assert list(seen.definitions) == ["beat"] and seen.states["beat"].value.last_tick
        assert [str(v) for v in server.violations()] == []  # firing needs nothing more

        for role, key in (
            (Role.CLIENT, "def.forged"),
            (Role.CLIENT, "state.beat"),
            (Role.ORCHESTRATOR, "def.beat"),
        ):
            kv = await opened[role].jetstream(timeout=0.5).key_value(SCHEDULE_BUCKET)
            with pytest.raises(nats.errors.TimeoutError):
                await kv.put(key, b"{}")
        refused = {
            "client: Publish $KV.tep_schedules.def.forged",
            "client: Publish $KV.tep_schedules.state.beat",
            "orchestrator: Publish $KV.tep_schedules.def.beat",
        }
        await eventually(
            lambda: {str(v) for v in server.violations()} == refused, 5, "the writes refused"
        )
        for nc in (admin_nc, *opened.values()):
            await nc.close()
    finally:
        server.stop()


@pytest.mark.slow
async def test_killing_the_leading_orchestrator_process_loses_no_tick(
    event_log: EventLog, settings: TepSettings, tmp_path: Path
) -> None:
    """``tep orchestrator`` processes; the leader is killed with SIGKILL (no lease release):
    the other takes partition 0 (whose holder makes the ticks) when its lease runs out and
    catches up every missed tick."""
    await add(event_log, "beat")
    env = child_env(settings.nats_url, TEP_ORCHESTRATOR_LEASE_S="2", TEP_ORCHESTRATOR_RENEW_S="0.4")
    processes = Processes()
    try:
        started = {
            name: processes.start(
                tep_command("orchestrator", "--instance-id", name), env, tmp_path / f"{name}.log"
            )
            for name in ("p1", "p2")
        }
        before = await at_least(event_log, "beat", 5, timeout=60)
        lease = await event_log.js.key_value(OrchestratorConfig().lease_bucket)
        entry = await lease.get(partition_key(0))
        holder = json.loads(entry.value or b"{}")["holder"]
        started[holder].kill()
        started[holder].wait()
        await at_least(event_log, "beat", len(before) + 8, timeout=60)
    finally:
        processes.stop_all()

    ticks = await fired(event_log, "beat")
    assert set(gaps(ticks)) == {ONE_SECOND}
