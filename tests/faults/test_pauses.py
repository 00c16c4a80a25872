"""Pauses: each role is frozen (SIGSTOP) for longer than its ack wait or lease, as a process that
was only slow or partitioned away, then let go on (SIGCONT). Every action still gets one
outcome, the right one (the target answered 200 within the action's limits: completed), and no
action ever has two attempts in flight at the target (counted per Idempotency-Key).

One system (2 orchestrators, 2 executors, 2 projectors) serves the module; each test has its own
execution. The figures are printed at the end (``-s``) and written into the pytest temp dir.
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import anyio
import pytest
from matrix_support import (
    FaultReport,
    MatrixSystem,
    MatrixTarget,
    action_timeline,
    check_execution,
    eventually,
    fault_seed,
    in_flight_of,
    matrix_system,
    mixed_plan,
    signal_role,
)
from roles_support import Role, healthy

from eventstore.events import ActionAttemptFailed, ActionStarted
from eventstore.plan import Action, Plan, RequestSpec, RetryPolicy
from executor.config import ExecutorConfig
from orchestrator.config import OrchestratorConfig

pytestmark = pytest.mark.anyio

SEED = fault_seed()
MARGIN_S = 2.0  # how much longer than the ack wait or lease a pause lasts


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultReport]:
    figures = FaultReport("pauses", SEED)
    yield figures
    path = figures.write(tmp_path_factory.getbasetemp())
    print(f"\n{figures.summary()}\nfigures: {path}")


@pytest.fixture(scope="module")
async def target() -> AsyncIterator[MatrixTarget]:
    async with MatrixTarget() as server:
        yield server


@pytest.fixture(scope="module")
async def ms(
    tmp_path_factory: pytest.TempPathFactory, target: MatrixTarget
) -> AsyncIterator[MatrixSystem]:
    async with matrix_system(tmp_path_factory.mktemp("pauses"), target, projectors=2) as running:
        yield running


async def pause(role: Role, seconds: float) -> dict[str, float]:
    """SIGSTOP ``role`` (already stopped by the caller or not), keep it stopped for
    ``seconds`` (the fault itself, not a wait for anything), then SIGCONT."""
    signal_role(role, signal.SIGSTOP)
    began = time.time()
    try:
        await anyio.sleep(seconds)
    finally:
        signal_role(role, signal.SIGCONT)
    return {"paused_s": round(time.time() - began, 3), "resumed_at": time.time()}


async def frozen_if(role: Role, holds: Callable[[], Awaitable[Any]]) -> bool:
    """SIGSTOP ``role`` and leave it stopped if ``holds()`` (asked while it is stopped) answers
    something truthy; else SIGCONT. Whether it was left stopped."""
    signal_role(role, signal.SIGSTOP)
    try:
        if await holds():
            return True
    except BaseException:
        signal_role(role, signal.SIGCONT)
        raise
    signal_role(role, signal.SIGCONT)
    return False


def overlapping(target: MatrixTarget, execution_id: str) -> dict[str, int]:
    """Actions of the execution that had more than one call in progress at once."""
    prefix = f"{execution_id}:"
    return {
        key.removeprefix(prefix): n
        for key, n in target.max_overlap.items()
        if key.startswith(prefix) and n > 1
    }


async def test_an_executor_paused_past_its_ack_wait_mid_call(
    ms: MatrixSystem, report: FaultReport
) -> None:
    ack_wait = ExecutorConfig().ack_wait_s
    paused_s = ack_wait + MARGIN_S
    e = ms.system.new_id("pause-executor")
    target = ms.target

    def call(
        action_id: str, delay: float, timeout_s: float = 120.0, retry: RetryPolicy | None = None
    ) -> Action:
        url = target.url(f"/slow/{e}/{action_id}")
        spec = RequestSpec(url=url, query={"delay": str(delay)}, timeout_s=timeout_s)
        return Action(id=action_id, request=spec, retry=retry)

    # Long calls: still running at the target when the paused executor's requests go to the
    # other one (no retries, 120 s limit). Short calls: answered long before the executor
    # resumes, within their 2 x ack-wait limit, with retries left.
    long_calls = [call(f"long-{n}", paused_s + 1.5) for n in range(4)]
    short_calls = [
        call(f"short-{n}", 1.0, timeout_s=2 * ack_wait, retry=RetryPolicy(max_attempts=3))
        for n in range(4)
    ]
    plan = Plan(id="pause-executor", actions=[*long_calls, *short_calls])
    await ms.system.submit(e, plan)

    ids = {str((await healthy(r))["executor_id"]): r for r in ms.system.executors}

    async def busiest() -> tuple[Role, list[str]] | None:
        history = await ms.system.history(e)
        found = [(in_flight_of(history, x, target), role) for x, role in ids.items()]
        calls, role = max(found, key=lambda item: len(item[0]))
        return (role, calls) if calls else None

    victim, cut = await eventually(busiest, 20, "no executor ever had a call in flight", 0.02)
    figures = await pause(victim, paused_s)
    check, history = await check_execution(ms, e, plan, duplicates_allowed=None, timeout=60)
    starts = Counter(t.event.action_id for t in history if isinstance(t.event, ActionStarted))
    timeouts = [
        t.event.action_id
        for t in history
        if isinstance(t.event, ActionAttemptFailed) and t.event.error.code == "timeout"
    ]
    overlaps = overlapping(target, e)
    since = history[0].stored_at
    timelines = {
        action.id: action_timeline(history, action.id, since, target.calls_of(e, action.id))
        for action in plan.actions
    }
    report.add(
        f"SIGSTOP executor {paused_s:.0f}s (ack wait {ack_wait:.0f}s)",
        check,
        faults=[{"kind": "executor", "victim": victim.name, "in_flight": cut, **figures}],
        starts_per_action=dict(starts),
        timeouts_recorded=timeouts,
        two_in_flight=overlaps,
        timelines=timelines,
    )

    assert overlaps == {}, f"two attempts of one action in flight at once: {overlaps} {timelines}"
    assert timeouts == [], f"a pause counted against the call's limit: {timeouts}"
    assert check.problems == [], "\n".join(check.problems)
    assert victim.process.poll() is None, "the paused executor died"


async def test_the_orchestrator_leader_paused_past_its_lease_mid_decision(
    ms: MatrixSystem, report: FaultReport
) -> None:
    config = OrchestratorConfig()
    paused_s = max(config.lease_s, config.ack_wait_s) + MARGIN_S
    e = ms.system.new_id("pause-orchestrator")
    plan = mixed_plan(ms.target, e, 40, random.Random(f"{SEED}-orchestrator"))
    leader = await ms.system.wait_leader(execution_id=e)
    await ms.system.submit(e, plan)

    async def holding() -> bool:
        if ms.target.called(e) < 5:
            return False

        async def unacked() -> int:
            return await ms.system.unsettled(e)

        return await frozen_if(leader, unacked)

    await eventually(holding, 30, "the leader never held an unacked event", 0.02)
    figures = await pause(leader, paused_s)
    check, _ = await check_execution(ms, e, plan, duplicates_allowed=set(), timeout=60)
    new_leader = await ms.system.wait_leader(execution_id=e)
    report.add(
        f"SIGSTOP orchestrator leader {paused_s:.0f}s (lease {config.lease_s:.0f}s)",
        check,
        faults=[{"kind": "orchestrator", "victim": leader.name, **figures}],
        leader_after=new_leader.name,
    )

    assert check.problems == [], "\n".join(check.problems)
    assert leader.process.poll() is None, "the paused orchestrator died"


async def test_a_projector_paused_mid_batch_while_another_goes_on(
    ms: MatrixSystem, report: FaultReport
) -> None:
    paused_s = 3 + MARGIN_S  # a projector has no lease: frozen over several batches of the other
    e = ms.system.new_id("pause-projector")
    plan = mixed_plan(ms.target, e, 40, random.Random(f"{SEED}-projector"))
    victim = ms.projectors[0]
    await ms.system.submit(e, plan)

    async def behind() -> bool:
        if ms.target.called(e) < 5:
            return False

        async def lagging() -> bool:
            return await ms.log.last_sequence() > await ms.view_checkpoint()

        return await frozen_if(victim, lagging)

    await eventually(behind, 30, "the view was never behind the log", 0.02)
    figures = await pause(victim, paused_s)
    last = await ms.log.last_sequence()

    async def caught_up() -> bool:
        async with aiohttp.ClientSession() as session:
            health = await victim.health(session)
        return health is not None and int(health["checkpoint"]) >= last

    await eventually(caught_up, 30, "the paused projector did not catch up after SIGCONT", 0.05)
    caught_up_s = round(time.time() - figures["resumed_at"], 3)
    check, _ = await check_execution(ms, e, plan, duplicates_allowed=set(), timeout=60)
    report.add(
        f"SIGSTOP projector {paused_s:.0f}s (another running)",
        check,
        faults=[{"kind": "projector", "victim": victim.name, **figures}],
        caught_up_after_resume_s=caught_up_s,
    )

    assert check.problems == [], "\n".join(check.problems)
