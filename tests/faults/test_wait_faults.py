"""Waits survive everything dying: ``kill -9`` of every role (both orchestrators, the executor,
the projector) and of nats-server while a waitpoint, a sleep and a waitpoint with a timeout
wait. Nothing of a wait lives in a process: the pause is ``action.waiting`` in the log, the
wake-up and the timeout are message schedules on the log's stream that the server itself fires
(they fire while no role runs at all), and the resume is an event like any other.

After the outage, each execution must keep every promise: its correct end, one
``action.waiting`` per wait (the same one: same token, same deadline), exactly one outcome per
action, caused by what ended the wait, every later call made once, the view equal to a fresh
fold, and a rebuilt view equal to the live one.

The short form is one outage; the long form (slow) resumes while everything is down and goes
through three outages in a row.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import pytest
from matrix_support import (
    MatrixSystem,
    MatrixTarget,
    check_execution,
    eventually,
    matrix_system,
)
from nats.js.errors import NotFoundError

from eventstore.error_codes import ErrorCode
from eventstore.events import (
    ActionCompleted,
    ActionFailed,
    ActionResumeRequested,
    ActionTimerFired,
    ActionWaiting,
    Event,
    ExecutionCompleted,
    ExecutionFailed,
)
from eventstore.jetstream.scan import scan_keys
from eventstore.plan import Action, Plan, RequestSpec
from projections import rebuild
from projections.buckets import ensure_meta_bucket, read_pointer
from projections.view import STATS_KEY, decode_stats

pytestmark = pytest.mark.anyio

SCHEMA = {"type": "object", "required": ["approved"], "properties": {"amount": {"type": "integer"}}}
TIMER_S = 4
"""When the sleep wakes and the timeout passes: after every role and the server are down."""


@pytest.fixture
async def target() -> AsyncIterator[MatrixTarget]:
    async with MatrixTarget() as server:
        yield server


@pytest.fixture
async def ms(tmp_path: Path, target: MatrixTarget) -> AsyncIterator[MatrixSystem]:
    async with matrix_system(tmp_path, target, orchestrators=2, executors=1) as running:
        yield running


def after(target: MatrixTarget, e: str, upstream: str, **query: str) -> Action:
    url = target.url(f"/slow/{e}/after")
    spec = RequestSpec(url=url, query={"delay": "0.01", **query})
    return Action(id="after", depends_on=[upstream], request=spec)


def plans(target: MatrixTarget, approve: str, nap: str, expire: str) -> dict[str, Plan]:
    """A waitpoint resumed after the outage, a sleep and a waitpoint timing out during it."""
    amount = "{{actions.approve.output.amount}}"
    return {
        approve: Plan(
            id="approve",
            actions=[
                Action(id="approve", type="wait", schema=SCHEMA),
                after(target, approve, "approve", amount=amount),
            ],
        ),
        nap: Plan(
            id="nap",
            actions=[Action(id="nap", type="sleep", duration_s=TIMER_S), after(target, nap, "nap")],
        ),
        expire: Plan(
            id="expire",
            actions=[
                Action(id="approve", type="wait", timeout_s=TIMER_S, schema=SCHEMA),
                after(target, expire, "approve"),
            ],
        ),
    }


async def history(ms: MatrixSystem, e: str) -> list[Event]:
    return [r.event for r in await ms.log.read_execution(e, timeout=30)]


async def all_waiting(ms: MatrixSystem, ids: list[str]) -> dict[str, ActionWaiting]:
    """Each execution's ``action.waiting``, once every one has it."""

    async def found() -> dict[str, ActionWaiting] | None:
        waiting = {}
        for e in ids:
            events = [x for x in await history(ms, e) if isinstance(x, ActionWaiting)]
            if not events:
                return None
            waiting[e] = events[0]
        return waiting

    result: dict[str, ActionWaiting] = await eventually(found, 20, "not every wait started")
    return result


async def outage(
    ms: MatrixSystem,
    timers_of: Sequence[str] = (),
    while_down: Callable[[], Awaitable[object]] | None = None,
) -> None:
    """SIGKILL every role and nats-server and start the server again. With ``timers_of``,
    wait until those executions' timers fired while no role runs; then ``while_down``; then
    start every role anew."""
    dead = ms.every_role()
    for role in dead:
        role.kill()
    ms.system.server.kill()
    ms.system.server.start()

    async def fired() -> bool:
        for e in timers_of:
            with contextlib.suppress(NotFoundError, TimeoutError):
                await ms.log.js.get_last_msg(
                    ms.log.stream, f"action.timer.fired.{e}.*", direct=True
                )
                continue
            return False
        return True

    await eventually(fired, 30, "the server never fired the timers", 0.1)
    if while_down is not None:
        await while_down()
    for role in dead:
        ms.roles(role.kind).remove(role)
        ms.start(role.kind)
    await ms.all_healthy(60)


async def check_ends(ms: MatrixSystem, by_id: dict[str, Plan], ids: Sequence[str]) -> None:
    """Every promise of every execution (see the module's docstring)."""
    approve, nap, expire = ids
    for e, plan in by_id.items():
        end = ExecutionFailed if e == expire else ExecutionCompleted
        check, _ = await check_execution(ms, e, plan, expected_end=end, duplicates_allowed=set())
        assert check.problems == [], (e, check.problems)

    resumed = await history(ms, approve)
    [request] = [x for x in resumed if isinstance(x, ActionResumeRequested)]
    [outcome] = [x for x in resumed if isinstance(x, ActionCompleted) and x.action_id == "approve"]
    assert outcome.causation_id == request.event_id
    for e, action_id, kind in ((nap, "nap", "wake"), (expire, "approve", "timeout")):
        events = await history(ms, e)
        [timer] = [x for x in events if isinstance(x, ActionTimerFired)]
        [ended] = [
            x
            for x in events
            if isinstance(x, ActionCompleted | ActionFailed) and x.action_id == action_id
        ]
        assert timer.kind == kind and ended.causation_id == timer.event_id
        if kind == "timeout":
            assert isinstance(ended, ActionFailed) and ended.error.code == ErrorCode.TIMEOUT


async def same_waits(ms: MatrixSystem, before: dict[str, ActionWaiting]) -> None:
    """Each wait was started once: one ``action.waiting``, the one from before the outage."""
    for e, waiting in before.items():
        events = [x for x in await history(ms, e) if isinstance(x, ActionWaiting)]
        assert events == [waiting], e


async def rebuilt_equals_live(ms: MatrixSystem) -> None:
    last = await ms.log.last_sequence()
    await ms.sm.wait_for_sequence(last, timeout=60)
    pointer = await read_pointer(await ensure_meta_bucket(ms.log.js, ms.fs.settings))
    assert pointer is not None
    live = await scan_keys(ms.system.nc, pointer.bucket)
    report = await rebuild(ms.system.nc, ms.fs.settings, keep_old=True)
    rebuilt = await scan_keys(ms.system.nc, report.bucket)

    def comparable(contents: dict[str, bytes]) -> dict[str, object]:
        return {k: decode_stats(v) if k == STATS_KEY else v for k, v in contents.items()}

    assert await ms.log.last_sequence() == last
    assert comparable(rebuilt) == comparable(live)


async def test_a_waitpoint_a_sleep_and_a_timeout_survive_kill_9_of_everything(
    ms: MatrixSystem,
) -> None:
    ids = [ms.system.new_id(name) for name in ("approve", "nap", "expire")]
    by_id = plans(ms.target, *ids)
    for e, plan in by_id.items():
        await ms.system.submit(e, plan)
    before = await all_waiting(ms, ids)

    await outage(ms, timers_of=ids[1:])
    final = await ms.sm.complete_waitpoint(
        ids[0], "approve", {"approved": True, "amount": 7}, timeout=60
    )

    assert final.status == "completed" and final.output == {"approved": True, "amount": 7}
    await check_ends(ms, by_id, ids)
    await same_waits(ms, before)
    after_call = ms.target.calls_of(ids[0], "after")
    assert len(after_call) == 1
    await rebuilt_equals_live(ms)


@pytest.mark.slow
async def test_waits_survive_three_outages_and_a_resume_made_while_everything_is_down(
    ms: MatrixSystem,
) -> None:
    ids = [ms.system.new_id(name) for name in ("approve", "nap", "expire")]
    by_id = plans(ms.target, *ids)
    for e, plan in by_id.items():
        await ms.system.submit(e, plan)
    before = await all_waiting(ms, ids)
    accepted = []

    async def resume_while_down() -> None:
        accepted.append(
            await ms.sm.complete_waitpoint(
                ids[0], "approve", {"approved": True, "amount": 8}, wait=False, timeout=30
            )
        )

    # The resume is stored while no role runs: nobody records its outcome until they are back.
    await outage(ms, timers_of=ids[1:], while_down=resume_while_down)
    # Two more outages, while the outcomes and the later calls are being recorded.
    await outage(ms)
    await outage(ms)

    [waiting] = accepted
    assert waiting.status == "waiting" and waiting.wait is not None
    assert waiting.wait.resume is not None
    await check_ends(ms, by_id, ids)
    await same_waits(ms, before)
    await rebuilt_equals_live(ms)
