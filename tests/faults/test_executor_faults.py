"""The executor under real faults: `tep executor` processes killed with SIGKILL or paused with
SIGSTOP, a nats-server killed and restarted, cancellations while calls are in flight.

Every check is on what the log stored and what the target saw (per Idempotency-Key): one
outcome per action, no call after an action's outcome was stored, never two calls of one
action at once. Recovery times are printed (``pytest -s``), never asserted.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from executor_fault_support import ROOT, CountingTarget, RoleProcess, eventually
from support.executors import http_request, outcome_of, wait_for_outcome

from eventstore.codec import decode_event
from eventstore.config import TepSettings
from eventstore.events import (
    ActionAttemptFailed,
    ActionCompleted,
    ActionExecuteRequested,
    ActionFailed,
    ActionStarted,
    Event,
    ExecutionCancelled,
    ExecutionCompleted,
    PlanSubmitted,
)
from eventstore.jetstream.connection import NatsClient, connect
from eventstore.jetstream.log import EventLog
from eventstore.jetstream.provision import ensure_log
from eventstore.jetstream.queues import consumer_name
from eventstore.plan import Action, Plan, RequestSpec, RetryPolicy
from tep.server import EmbeddedServer

pytestmark = pytest.mark.anyio

# Short ack waits keep the tests short; the default (5 s) is what the printed figures use
# where a test says so.
FAST = {"TEP_EXECUTOR_ACK_WAIT_S": "2"}
RETRY = RetryPolicy(max_attempts=3, min_backoff_ms=10, jitter=False)


@pytest.fixture
async def target() -> AsyncIterator[CountingTarget]:
    async with CountingTarget() as server:
        yield server


async def history(log: EventLog, execution_id: str) -> list[Event]:
    return [record.event for record in await log.read_execution(execution_id)]


def of(events: list[Event], kind: type[Any]) -> list[Any]:
    return [event for event in events if isinstance(event, kind)]


def outcomes_per_action(events: list[Event]) -> Counter[str]:
    return Counter(e.action_id for e in events if isinstance(e, ActionCompleted | ActionFailed))


async def queue_settled(log: EventLog, queue: str = "http") -> bool:
    info = await log.js.consumer_info(log.stream, consumer_name(queue))
    return info.num_ack_pending == 0 and info.num_pending == 0


async def executors(
    settings: TepSettings, directory: Path, count: int, *args: str, **env: str
) -> dict[str, RoleProcess]:
    """``count`` executor processes, healthy, by executor id."""
    started = [
        RoleProcess.start("executor", settings.nats_url, directory, *args, **env)
        for _ in range(count)
    ]
    return {str((await role.wait_healthy())["executor_id"]): role for role in started}


# ------------------------------------------------------------------------- item 1: crashes


async def test_a_killed_executor_costs_the_ack_wait_not_an_attempt(
    settings: TepSettings, event_log: EventLog, target: CountingTarget, tmp_path: Path
) -> None:
    # The default ack wait (5 s): the recovery printed is what a user gets.
    roles = await executors(settings, tmp_path, 2, "--concurrency", "2")
    try:
        for n in range(4):  # no retries: one attempt each
            url = target.url(f"/slow/e1/a{n}?delay=1")
            await event_log.append(http_request("e1", f"a{n}", url, timeout_s=60))
        first = await eventually(
            lambda: _starts(event_log, "e1", 4), 20, "the four attempts never started"
        )
        victim_id = first[0].executor_id
        roles[victim_id].kill()
        killed_at = time.time()

        outcomes = [await wait_for_outcome(event_log, "e1", f"a{n}", 30) for n in range(4)]
    finally:
        for role in roles.values():
            role.stop()

    assert all(isinstance(o, ActionCompleted) and o.attempt == 1 for o in outcomes)
    events = await history(event_log, "e1")
    starts = of(events, ActionStarted)
    taken_over = {s.action_id for s in starts if s.executor_id == victim_id}
    again = [s for s in starts if s.interruption == 1]
    assert {s.action_id for s in again} == taken_over and taken_over
    assert all(s.attempt == 1 and s.executor_id != victim_id for s in again)
    assert outcomes_per_action(events) == {f"a{n}": 1 for n in range(4)}
    assert target.effects == {f"e1:a{n}" for n in range(4)}
    recovery = min(_wall(s.occurred_at) for s in again) - killed_at
    print(f"\nexecutor kill -9: attempts started again {recovery:.2f} s after the kill")


async def test_a_request_that_crashes_every_executor_fails_and_is_dead_lettered(
    settings: TepSettings, event_log: EventLog, nc: NatsClient, tmp_path: Path
) -> None:
    env = {"TEP_EXECUTOR_ACK_WAIT_S": "1", "TEP_EXECUTOR_MAX_INTERRUPTIONS": "2"}
    request = http_request("e1", "boom", "", action_type="crash", queue="crash")
    await event_log.append(request)
    args = ("--queue", "crash", "--handlers", "crashing_handlers")
    started: list[RoleProcess] = []

    async def ended() -> Event | None:
        # Whenever the executor died on the request, start another one.
        if not started or started[-1].process.poll() is not None:
            started.append(RoleProcess.start("executor", settings.nats_url, tmp_path, *args, **env))
        return await outcome_of(event_log, "e1", "boom")

    try:
        outcome = await eventually(ended, 60, "the request never ended", 0.1)
    finally:
        for role in started:
            role.stop()

    assert isinstance(outcome, ActionFailed) and outcome.error.code == "interrupted"
    assert "attempt 1 of 1 was interrupted 3 times" in outcome.error.message
    starts = of(await history(event_log, "e1"), ActionStarted)
    assert [(s.attempt, s.interruption) for s in starts] == [(1, 0), (1, 1), (1, 2)]
    dead = await nc.jetstream().get_last_msg(
        settings.deadletter_stream, "tep.deadletter.executor.action.execute.requested.crash.e1.boom"
    )
    assert dead.headers is not None and dead.headers["Tep-Reason-Code"] == "interrupted"
    assert await queue_settled(event_log, "crash")


# ----------------------------------------------------------- items 12 and 13: pauses


async def test_a_paused_executor_keeps_what_it_may_still_run_and_loses_the_rest(
    settings: TepSettings, event_log: EventLog, target: CountingTarget, tmp_path: Path
) -> None:
    # Paused mid-call, longer than the ack wait: the requests come back to another executor,
    # which asks the paused one (no answer) and takes over only the attempts whose time
    # limit has passed; the others may still be running, at the target, for the paused one.
    taken = [f"short{n}" for n in range(4)]  # 1.5 s limit: over while paused
    kept = [f"long{n}" for n in range(4)]  # 120 s limit: still running at the target
    [paused] = (await executors(settings, tmp_path, 1, "--concurrency", "8", **FAST)).values()
    others: dict[str, RoleProcess] = {}
    try:
        for action in taken:
            url = target.url(f"/slow/e1/{action}?delay=0.5")
            await event_log.append(http_request("e1", action, url, timeout_s=1.5, retry=RETRY))
        for action in kept:
            url = target.url(f"/slow/e1/{action}?delay=4")
            await event_log.append(http_request("e1", action, url, timeout_s=120))
        await eventually(lambda: len(target.calls) == 8, 20, "the calls never reached the target")
        paused.signal(signal.SIGSTOP)
        others = await executors(settings, tmp_path, 1, "--concurrency", "8", **FAST)
        [other] = others.values()
        for action in taken:
            await wait_for_outcome(event_log, "e1", action, 30)

        async def deferred() -> bool:
            health = await other.health()
            return bool(health and health["handled"].get("deferred"))

        await eventually(deferred, 20, "the kept requests never came back to the other executor")
        paused.signal(signal.SIGCONT)
        outcomes = [await wait_for_outcome(event_log, "e1", a, 30) for a in [*taken, *kept]]

        async def paused_done() -> dict[str, int] | None:
            health = await paused.health()
            handled: dict[str, int] = health["handled"] if health else {}
            return handled if sum(handled.values()) == 8 else None

        handled = await eventually(paused_done, 20, "the resumed executor never finished")
        await eventually(lambda: queue_settled(event_log), 20, "requests left unsettled")
    finally:
        paused.stop()
        for role in others.values():
            role.stop()

    assert all(isinstance(o, ActionCompleted) and o.attempt == 1 for o in outcomes)
    # Taken over: the resumed executor learns on appending that the outcome is another's and
    # records nothing (no outcome, no failed attempt, no retry). Kept: it completes them.
    assert handled == {"duplicate": 4, "completed": 4}
    events = await history(event_log, "e1")
    assert outcomes_per_action(events) == dict.fromkeys([*taken, *kept], 1)
    assert of(events, ActionAttemptFailed) == []
    starts = Counter((s.action_id, s.interruption) for s in of(events, ActionStarted))
    assert starts == {**{(a, i): 1 for a in taken for i in (0, 1)}, **{(a, 0): 1 for a in kept}}
    assert target.effects == {f"e1:{a}" for a in [*taken, *kept]}
    assert {a: target.calls[f"e1:{a}"] for a in kept} == dict.fromkeys(kept, 1)
    assert max(target.max_overlap.values()) == 1  # never two calls of one action at once


# ------------------------------------------------------------------ item 11: server kills


async def run_through_server_kills(
    directory: Path, target: CountingTarget, *, actions: int, kills: int
) -> None:
    """``actions`` requests served by two executors while nats-server is killed (SIGKILL)
    and restarted ``kills`` times; then check every action against what the target saw."""
    server = EmbeddedServer(data_dir=directory / "nats")
    server.start()
    settings = TepSettings(nats_url=server.url)
    nc = await connect(server.url, name="fault-test")
    roles: dict[str, RoleProcess] = {}
    try:
        await ensure_log(nc.jetstream(), settings)
        log = EventLog(nc, settings)
        roles = await executors(settings, directory, 2, "--concurrency", "8", **FAST)
        ids = [f"k{n}" for n in range(actions)]
        await log.append_many(
            [http_request("e1", a, target.url(f"/slow/e1/{a}?delay=0.05")) for a in ids]
        )
        for kill in range(1, kills + 1):
            share = actions * kill // (kills + 1)
            await eventually(lambda s=share: len(target.calls) >= s, 60, "no progress")
            server.kill()
            server.start()
        restarted_at = time.time()
        for a in ids:
            outcome = await eventually(lambda a=a: _outcome(log, a), 90, f"{a} never ended")
            assert isinstance(outcome, ActionCompleted)

        events = await history(log, "e1")
        assert outcomes_per_action(events) == dict.fromkeys(ids, 1)
        assert target.effects == {f"e1:{a}" for a in ids}
        stored = {a: await _stored_at(log, a) for a in ids}
        late = {a: sum(1 for t in target.called_at[f"e1:{a}"] if t > stored[a]) for a in ids}
        assert sum(late.values()) == 0, {a: n for a, n in late.items() if n}
        print(
            f"\n{actions} actions, {kills} server kills: last outcome stored "
            f"{max(stored.values()) - restarted_at:.2f} s after the last restart"
        )
        again = sum(target.calls.values()) - actions
        print(f"raw calls {sum(target.calls.values())} ({again} repeated before an outcome)")
    finally:
        for role in roles.values():
            role.stop()
        await nc.close()
        server.stop()


async def test_no_call_after_a_stored_outcome_when_nats_server_is_killed(
    target: CountingTarget, tmp_path: Path
) -> None:
    # The run of the report: 200 actions, nats-server killed three times.
    await run_through_server_kills(tmp_path, target, actions=200, kills=3)


@pytest.mark.slow
@pytest.mark.parametrize("run", range(3))
async def test_no_call_after_a_stored_outcome_over_many_server_kills(
    target: CountingTarget, tmp_path: Path, run: int
) -> None:
    await run_through_server_kills(tmp_path, target, actions=1000, kills=5)


# ----------------------------------------------------------------- item 3: cancellation


async def test_cancelled_actions_never_run_and_calls_in_flight_are_aborted(
    settings: TepSettings, event_log: EventLog, target: CountingTarget, tmp_path: Path
) -> None:
    orchestrator = RoleProcess.start("orchestrator", settings.nats_url, tmp_path)
    roles = await executors(settings, tmp_path, 1, "--concurrency", "1")
    late: list[RoleProcess] = []
    try:
        await eventually(_leads(orchestrator), 30, "the orchestrator never led", 0.1)
        # A 600 s call in flight holds the executor's only slot until it is cancelled.
        await submit(event_log, "long", target.url("/slow/long/wait?delay=600"), timeout_s=700)
        await eventually(lambda: target.calls["long:wait"], 20, "the long call never started")
        await cancel(settings, "long")
        await submit(event_log, "next", target.url("/echo/next/go"))
        assert isinstance(await wait_end(event_log, "next"), ExecutionCompleted)
        assert isinstance(await wait_end(event_log, "long"), ExecutionCancelled)
        await eventually(lambda: queue_settled(event_log), 10, "the aborted call was never acked")

        # Dispatched to a queue nobody serves yet, cancelled, then an executor comes.
        await submit(event_log, "queued", target.url("/echo/queued/never"), queue="later")
        await eventually(
            lambda: _dispatched(event_log, "queued"), 20, "the action was never dispatched"
        )
        await cancel(settings, "queued")
        assert isinstance(await wait_end(event_log, "queued"), ExecutionCancelled)
        late.append(RoleProcess.start("executor", settings.nats_url, tmp_path, "--queue", "later"))
        await late[0].wait_healthy()
        await eventually(lambda: queue_settled(event_log, "later"), 20, "request never settled")
        late_health = await late[0].health()
        [busy] = roles.values()
        busy_health = await busy.health()
    finally:
        orchestrator.stop()
        for role in [*roles.values(), *late]:
            role.stop()

    long_history = await history(event_log, "long")
    assert of(long_history, ActionCompleted) == [] and of(long_history, ActionFailed) == []
    assert target.calls["long:wait"] == 1 and target.calls["next:go"] == 1
    assert "queued:never" not in target.calls
    assert busy_health is not None and busy_health["handled"].get("cancelled") == 1
    assert late_health is not None and late_health["handled"] == {"cancelled": 1}


# ------------------------------------------------------------------------------ helpers


async def _starts(log: EventLog, execution_id: str, count: int) -> list[ActionStarted] | None:
    starts = of(await history(log, execution_id), ActionStarted)
    return starts if len(starts) >= count else None


async def _outcome(log: EventLog, action_id: str) -> Event | None:
    """The action's outcome; ``None`` while there is none or the server is not back yet."""
    try:
        msg = await log.nc.jetstream(timeout=1).get_last_msg(
            log.stream, f"action.*.e1.{action_id}", direct=True
        )
    except Exception:
        return None
    event = decode_event(msg.data or b"")
    return event if isinstance(event, ActionCompleted | ActionFailed) else None


def _wall(occurred_at: str) -> float:
    return datetime.fromisoformat(occurred_at.replace("Z", "+00:00")).timestamp()


async def _stored_at(log: EventLog, action_id: str) -> float:
    """When the server stored the action's outcome (its own timestamp, wall clock)."""
    stored = await log.js.get_last_msg(log.stream, f"action.completed.e1.{action_id}")
    assert stored.time is not None
    return stored.time.timestamp()


def _leads(role: RoleProcess) -> Any:
    async def leading() -> bool:
        health = await role.health()
        return bool(health and health.get("leader"))

    return leading


async def submit(
    log: EventLog, execution_id: str, url: str, *, queue: str | None = None, **spec: Any
) -> None:
    action = Action(
        id=url.rsplit("/", 1)[-1].split("?")[0], queue=queue, request=RequestSpec(url=url, **spec)
    )
    await log.append(
        PlanSubmitted(execution_id=execution_id, plan=Plan(id=execution_id, actions=[action]))
    )


async def cancel(settings: TepSettings, execution_id: str) -> None:
    """``tep cancel ID``, as a user would."""
    result = await anyio.to_thread.run_sync(
        lambda: subprocess.run(
            [
                sys.executable,
                "-m",
                "tep.cli.main",
                "cancel",
                execution_id,
                "--nats-url",
                settings.nats_url,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    )
    assert result.returncode == 0, result.stderr


async def wait_end(log: EventLog, execution_id: str) -> Event:
    async def end() -> Event | None:
        record = await log.last_on(f"execution.*.{execution_id}")
        return None if record is None else record.decode().event

    found: Event = await eventually(end, 30, f"{execution_id} never ended")
    return found


async def _dispatched(log: EventLog, execution_id: str) -> bool:
    return bool(of(await history(log, execution_id), ActionExecuteRequested))
