"""Soak: many executions at once against a target that fails now and then (500s, retried by
the plans' policies) while a random role is killed every few seconds for a bounded time, each
replaced at once. Every execution must end, completed (no action fails more often than its
retries allow), none stuck, and keep the promises of the kill matrix (one outcome and one
dispatch per action, every effect at the target, no call after an outcome was stored, the view
equal to a fresh fold). The peak RSS (VmHWM) of each role is reported.

Executions are kept running side by side for the whole kill window (one ends, the next is
submitted). The short form (8 at once x 10 actions, kills for 8 s) runs in CI; the long form
(50 at once x 20 actions, kills for 30 s) is marked slow. Figures: printed at the end
(``-s``), and JSON in the pytest temp dir.
"""

from __future__ import annotations

import contextlib
import functools
import random
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
from matrix_support import (
    FaultReport,
    MatrixSystem,
    MatrixTarget,
    check_execution,
    eventually,
    fault_seed,
    matrix_system,
    mixed_plan,
)

from eventstore.plan import Plan, RetryPolicy

pytestmark = pytest.mark.anyio

SEED = fault_seed()
KINDS = ("executor", "orchestrator", "projector")
RETRY = RetryPolicy(max_attempts=3, min_backoff_ms=50, max_backoff_ms=500)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultReport]:
    figures = FaultReport("soak", SEED)
    yield figures
    path = figures.write(tmp_path_factory.getbasetemp())
    print(f"\n{figures.summary()}\nfigures: {path}")


@pytest.fixture
async def ms(tmp_path: Any) -> AsyncIterator[MatrixSystem]:
    async with MatrixTarget() as target, matrix_system(tmp_path, target) as running:
        yield running


async def kill_randomly(
    ms: MatrixSystem, rng: random.Random, seconds: float, every: tuple[float, float]
) -> list[dict[str, Any]]:
    """For ``seconds``, SIGKILL a random role every ``every`` seconds and replace it at once."""
    killed = []
    until = time.monotonic() + seconds
    while True:
        await anyio.sleep(rng.uniform(*every))  # the fault schedule, not a wait for anything
        if time.monotonic() > until:
            return killed
        kind = rng.choice(KINDS)
        victim = rng.choice(ms.roles(kind))
        ms.note_rss()
        victim.kill()
        killed.append({"kind": kind, "victim": victim.name, "at": time.time()})
        await ms.replace(victim)


async def keep_running(
    ms: MatrixSystem,
    rng: random.Random,
    plans: dict[str, Plan],
    *,
    concurrent: int,
    actions: int,
    seconds: float,
) -> None:
    """Keep ``concurrent`` executions running for ``seconds``: one ends, the next is submitted
    (every plan submitted lands in ``plans``)."""
    until = time.monotonic() + seconds
    running: set[str] = set()
    while time.monotonic() < until:
        for e in [e for e in running if await ms.system.end_of(e) is not None]:
            running.discard(e)
        while len(running) < concurrent:
            e = ms.system.new_id(f"soak{len(plans)}")
            plans[e] = mixed_plan(
                ms.target, e, actions, rng, delay_s=(0.05, 0.3), failing=0.3, retry=RETRY
            )
            await ms.system.submit(e, plans[e])
            running.add(e)
        await anyio.sleep(0.2)  # how often ends are looked for


async def soak(
    ms: MatrixSystem,
    report: FaultReport,
    *,
    concurrent: int,
    actions: int,
    seconds: float,
    every: tuple[float, float],
) -> None:
    rng = random.Random(f"{SEED}-{concurrent}x{actions}")
    plans: dict[str, Plan] = {}
    began = time.time()
    async with anyio.create_task_group() as group:
        load = functools.partial(keep_running, concurrent=concurrent, actions=actions)
        group.start_soon(functools.partial(load, ms, rng, plans, seconds=seconds))
        killed = await kill_randomly(ms, random.Random(f"{SEED}-kills"), seconds, every)

    async def all_ended() -> bool:
        return all([await ms.system.end_of(e) is not None for e in plans])

    with contextlib.suppress(AssertionError):  # the stuck ones are reported one by one
        await eventually(all_ended, 120, "not every execution ended", 0.2)
    checks = [(await check_execution(ms, e, plan, timeout=1))[0] for e, plan in plans.items()]
    ms.note_rss()
    ends = [c for c in checks if c.end is not None]
    report.add_many(
        f"soak: {concurrent} at once x {actions} actions, kills for {seconds:.0f}s",
        checks,
        faults=killed,
        wall_s=round(time.time() - began, 3),
        longest_execution_s=max((c.duration_s or 0.0) for c in ends) if ends else None,
        failures_served=ms.target.refusals,
        peak_rss_kb=dict(ms.peak_rss_kb),
    )

    problems = {c.execution_id: c.problems for c in checks if c.problems}
    assert killed, "no role was killed"
    assert problems == {}, problems


async def test_a_short_soak_with_kills_and_failing_calls_ends_every_execution(
    ms: MatrixSystem, report: FaultReport
) -> None:
    await soak(ms, report, concurrent=8, actions=10, seconds=8, every=(2.0, 3.0))


@pytest.mark.slow
async def test_50_executions_of_20_actions_with_kills_for_30s_end_every_one(
    ms: MatrixSystem, report: FaultReport
) -> None:
    await soak(ms, report, concurrent=50, actions=20, seconds=30, every=(2.0, 4.0))
