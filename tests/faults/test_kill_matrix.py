"""The kill matrix: ``kill -9`` of each role, and of nats-server, at random points of a plan of
chains and fan-outs whose calls are in flight (the target answers after a random delay); the
killed process is replaced (the server restarted on its port and data dir) and the execution
must still keep every promise:

- it reaches its correct end (completed: the plan has no failing action);
- no event lost: every action has exactly one outcome in the log;
- no action dispatched twice;
- every action's effect reached the target (each Idempotency-Key called at least once), no call
  was made after the action's outcome was stored, and a second call happened only for a call the
  kill cut off before its outcome (an executor kill) or while the server was away;
- the projected view equals a fresh fold of the log.

The points: an executor frozen while it has calls in flight at the target; the orchestrator
leader frozen while it holds events it consumed and has not acked; a projector frozen while the
log is ahead of the view; nats-server at any moment. Each is frozen (SIGSTOP), looked at, and
killed (SIGKILL) once the point holds.

The short form (one kill per case, 60 actions) runs in CI; the long form (200 actions, 3 kills
per case) is marked slow. The figures (faults, executions, actions, lost, stuck, duplicates,
recovery times, the no-fault duration) are printed at the end of the module (``-s``) and written
as JSON into the pytest temp dir. ``TEP_FAULT_SEED`` replays a run.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict

import pytest
from matrix_support import (
    DECISIONS,
    Fault,
    FaultReport,
    MatrixSystem,
    MatrixTarget,
    TimedEvent,
    check_execution,
    eventually,
    fault_seed,
    first_after,
    kill_executor_mid_call,
    kill_orchestrator_mid_decision,
    kill_projector_mid_batch,
    kill_server,
    matrix_system,
    mixed_plan,
)
from roles_support import Role

from eventstore.events import (
    ActionCompleted,
    ActionFailed,
    ActionStarted,
    EventBase,
    ExecutionCancelled,
    ExecutionCompleted,
    ExecutionFailed,
)

pytestmark = pytest.mark.anyio

SEED = fault_seed()
EXECUTION_ENDS = (ExecutionCompleted, ExecutionFailed, ExecutionCancelled)
KINDS = ["executor", "orchestrator", "projector", "nats-server"]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultReport]:
    figures = FaultReport("kill_matrix", SEED)
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
    async with matrix_system(tmp_path_factory.mktemp("kill-matrix"), target) as running:
        yield running


_baselines: dict[int, float | None] = {}


async def baseline(ms: MatrixSystem, report: FaultReport, size: int) -> float | None:
    """The duration of the same plan without faults (run once per size)."""
    if size not in _baselines:
        e = ms.system.new_id(f"no-fault-{size}")
        plan = mixed_plan(ms.target, e, size, random.Random(f"{SEED}-{size}"))
        await ms.system.submit(e, plan)
        check, _ = await check_execution(ms, e, plan, duplicates_allowed=set())
        report.add(f"no fault, {size} actions", check)
        assert check.problems == [], check.problems
        _baselines[size] = check.duration_s
    return _baselines[size]


async def inject(
    ms: MatrixSystem, kind: str, execution_id: str, rng: random.Random, leader: Role | None
) -> Fault | None:
    """Kill one process of ``kind`` at its point (``None``: the execution ended first)."""
    if kind == "executor":
        return await kill_executor_mid_call(ms, execution_id, rng.choice(ms.system.executors))
    if kind == "orchestrator":
        assert leader is not None
        return await kill_orchestrator_mid_decision(ms, execution_id, leader)
    if kind == "projector":
        return await kill_projector_mid_batch(ms, execution_id)
    return await kill_server(ms, execution_id)


def recovery(fault: Fault, history: list[TimedEvent], until: float) -> None:
    """Fill in how long the system took to move on after ``fault``, and the longest time
    after it (up to ``until``, the next fault) in which the execution's history did not grow
    (where the time went)."""
    at = fault.at
    times = [at, *sorted(t.stored_at for t in history if at < t.stored_at <= until)]
    fault.recovery_s["longest_stall"] = (
        round(max(b - a for a, b in itertools.pairwise(times)), 3) if len(times) > 1 else None
    )
    if fault.kind == "executor":
        cut = set(fault.details["cut_off"])
        settled = [
            t.stored_at
            for t in history
            if t.stored_at > at
            and isinstance(t.event, ActionCompleted | ActionFailed)
            and t.event.action_id in cut
        ]
        fault.recovery_s["cut_off_settled"] = round(max(settled) - at, 3) if settled else None
        started = [
            t
            for t in history
            if isinstance(t.event, ActionStarted)
            and t.event.executor_id == fault.details.get("replacement_id")
        ]
        fault.recovery_s["replacement_first_start"] = first_after(started, at, (ActionStarted,))
    elif fault.kind == "orchestrator":
        fault.recovery_s["first_decision"] = first_after(history, at, DECISIONS)
    elif fault.kind == "nats-server":
        fault.recovery_s["first_event"] = first_after(history, at, (EventBase,))


async def run_case(ms: MatrixSystem, report: FaultReport, kind: str, size: int, kills: int) -> None:
    rng = random.Random(f"{SEED}-{kind}-{size}-{kills}")
    no_fault = await baseline(ms, report, size)
    e = ms.system.new_id(f"kill-{kind.split('-')[0]}")
    plan = mixed_plan(ms.target, e, size, random.Random(f"{SEED}-{size}"))
    points = sorted(rng.uniform(0.1, 0.7) for _ in range(kills))

    await ms.system.submit(e, plan)
    faults: list[Fault] = []
    for point in points:
        wanted = max(1, int(point * size))
        # The leader is looked for before the kill point, not at it.
        leader = (
            await ms.system.wait_leader(execution_id=e) if kind == "orchestrator" else None
        )

        async def progressed(wanted: int = wanted) -> bool:
            return ms.target.called(e) >= wanted or await ms.system.end_of(e) is not None

        await eventually(progressed, 90, f"{e}: never got to {wanted} actions called", 0.01)
        fault = None if await ms.system.end_of(e) else await inject(ms, kind, e, rng, leader)
        if fault is None:
            break
        faults.append(fault)
    allowed: set[str] | None = set()
    if kind == "executor":
        allowed = {a for fault in faults for a in fault.details["cut_off"]}
    elif kind == "nats-server":
        allowed = None  # a call the server's absence cut off may run again before its outcome
    check, history = await check_execution(ms, e, plan, duplicates_allowed=allowed)
    ends = [f.at for f in faults[1:]] + [float("inf")]
    for fault, until in zip(faults, ends[: len(faults)], strict=True):
        recovery(fault, history, until)
    ends = [t.stored_at for t in history if isinstance(t.event, EXECUTION_ENDS)]
    if faults and ends:
        faults[-1].recovery_s["end_after_last_fault"] = round(ends[0] - faults[-1].at, 3)
    ms.note_rss()
    extra = (
        round(check.duration_s - no_fault, 3)
        if check.duration_s is not None and no_fault is not None
        else None
    )
    report.add(
        f"kill -9 {kind} x{kills}, {size} actions",
        check,
        baseline_s=no_fault,
        extra_vs_baseline_s=extra,
        faults=[asdict(f) for f in faults],
        peak_rss_kb=dict(ms.peak_rss_kb),
    )

    assert faults, f"{e} ended before the first kill point"
    assert check.problems == [], "\n".join(check.problems)


@pytest.mark.parametrize("kind", KINDS)
async def test_one_kill_during_a_60_action_plan_breaks_no_promise(
    ms: MatrixSystem, report: FaultReport, kind: str
) -> None:
    await run_case(ms, report, kind, size=60, kills=1)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
async def test_three_kills_during_a_200_action_plan_break_no_promise(
    ms: MatrixSystem, report: FaultReport, kind: str
) -> None:
    await run_case(ms, report, kind, size=200, kills=3)
