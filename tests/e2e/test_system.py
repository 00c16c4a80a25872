"""The whole system through real processes: 2 `tep orchestrator` replicas and 3 `tep executor`
processes on one nats-server, calling a real HTTP target on loopback.

One system serves the module (each test its own executions); the leader-kill test runs on a
system of its own so the others are not disturbed.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from support.http_target import HttpTarget
from system_support import (
    System,
    attempts_per_action,
    dispatches_per_action,
    eventually,
    running_system,
)

from eventstore.events import (
    ActionAttemptFailed,
    ActionCancelled,
    ActionCompleted,
    ActionExecuteRequested,
    ActionFailed,
    ActionSkipped,
    ActionStarted,
    Event,
    ExecutionCancelled,
    ExecutionCancelRequested,
    ExecutionCompleted,
    ExecutionFailed,
)
from eventstore.plan import Action, Condition, Plan, RequestSpec, RetryPolicy

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    # Module scope: the system and the HTTP target live in one event loop for all tests.
    return "asyncio"


@pytest.fixture(scope="module")
async def target() -> AsyncIterator[HttpTarget]:
    async with HttpTarget() as server:
        yield server


@pytest.fixture(scope="module")
async def system(
    tmp_path_factory: pytest.TempPathFactory, target: HttpTarget
) -> AsyncIterator[System]:
    async with running_system(tmp_path_factory.mktemp("system"), target) as running:
        yield running


def call(
    target: HttpTarget,
    execution_id: str,
    action_id: str,
    *deps: str,
    route: str = "echo",
    retry: RetryPolicy | None = None,
    when: Condition | None = None,
    **request: Any,
) -> Action:
    """An HTTP action calling ``/<route>/<execution>/<action>`` on the target."""
    spec = RequestSpec(url=target.url(f"/{route}/{execution_id}/{action_id}"), **request)
    return Action(id=action_id, depends_on=list(deps), request=spec, retry=retry, when=when)


def of(history: list[Event], kind: type[Any]) -> list[Any]:
    return [event for event in history if isinstance(event, kind)]


def skips(history: list[Event]) -> dict[str, str]:
    return {event.action_id: event.reason for event in of(history, ActionSkipped)}


# ------------------------------------------------------------------------------------ flows


async def test_linear_chain_passes_input_and_upstream_output_to_later_steps(
    system: System, target: HttpTarget
) -> None:
    e = system.new_id("chain")
    plan = Plan(
        id="chain",
        input={"user": "ada", "tier": "gold"},
        actions=[
            call(
                target,
                e,
                "fetch",
                method="POST",
                query={"user": "{{input.user}}"},
                json={"email": "{{input.user}}@example.com", "visits": 7},
            ),
            Action(
                id="send",
                depends_on=["fetch"],
                request=RequestSpec(
                    method="POST",
                    url=target.url(
                        f"/echo/{e}/send/{{{{input.tier}}}}/{{{{actions.fetch.output.json.visits}}}}"
                    ),
                    query={"from": "{{actions.fetch.output.query.user}}"},
                    json={
                        "to": "{{actions.fetch.output.json.email}}",
                        "visits": "{{actions.fetch.output.json.visits}}",
                        "subject": "hello {{input.user}}",
                    },
                ),
            ),
            call(
                target,
                e,
                "audit",
                "send",
                headers={"X-Sent-To": "{{actions.send.output.json.to}}"},
            ),
        ],
    )

    await system.submit(e, plan)
    end = await system.wait_end(e)

    assert isinstance(end, ExecutionCompleted)
    [fetch] = target.hits_for(f"/echo/{e}/fetch")
    [send] = target.hits_for(f"/echo/{e}/send/gold/7")
    [audit] = target.hits_for(f"/echo/{e}/audit")
    assert fetch.query == {"user": "ada"}
    assert send.method == "POST"
    assert send.query == {"from": "ada"}
    assert json.loads(send.body) == {
        "to": "ada@example.com",
        "visits": 7,
        "subject": "hello ada",
    }
    assert audit.headers["x-sent-to"] == "ada@example.com"
    assert fetch.at <= send.at <= audit.at


async def test_fan_out_of_50_then_fan_in(system: System, target: HttpTarget) -> None:
    e = system.new_id("fan")
    branches = [call(target, e, f"b{n}") for n in range(50)]
    plan = Plan(id="fan", actions=[*branches, call(target, e, "join", *(b.id for b in branches))])

    await system.submit(e, plan)
    end = await system.wait_end(e)

    assert isinstance(end, ExecutionCompleted)
    hits = system.hits_per_action(e)
    assert hits == {**{b.id: 1 for b in branches}, "join": 1}
    [join] = target.hits_for(f"/echo/{e}/join")
    assert all(hit.at <= join.at for b in branches for hit in target.hits_for(f"/echo/{e}/{b.id}"))
    history = await system.history(e)
    last_branch = max(
        i
        for i, ev in enumerate(history)
        if isinstance(ev, ActionCompleted) and ev.action_id != "join"
    )
    join_requested = next(
        i
        for i, ev in enumerate(history)
        if isinstance(ev, ActionExecuteRequested) and ev.action_id == "join"
    )
    assert join_requested > last_branch


@pytest.mark.parametrize(
    ("tier", "runs", "skipped"), [("gold", "premium", "basic"), ("silver", "basic", "premium")]
)
async def test_conditional_branch_runs_one_side_and_skips_the_other(
    system: System, target: HttpTarget, tier: str, runs: str, skipped: str
) -> None:
    e = system.new_id(f"branch-{tier}")
    path = "actions.check.output.query.tier"
    plan = Plan(
        id="branch",
        input={"tier": tier},
        actions=[
            call(target, e, "check", query={"tier": "{{input.tier}}"}),
            call(target, e, "premium", "check", when=Condition(path=path, equals="gold")),
            call(target, e, "basic", "check", when=Condition(path=path, not_equals="gold")),
        ],
    )

    await system.submit(e, plan)
    end = await system.wait_end(e)

    assert isinstance(end, ExecutionCompleted)
    history = await system.history(e)
    assert skips(history) == {skipped: "condition_false"}
    assert system.hits_per_action(e) == {"check": 1, runs: 1}
    assert set(dispatches_per_action(history)) == {"check", runs}


async def test_target_failing_twice_succeeds_on_the_third_attempt_with_one_key(
    system: System, target: HttpTarget
) -> None:
    e = system.new_id("flaky")
    retry = RetryPolicy(max_attempts=3, min_backoff_ms=50, jitter=False)
    plan = Plan(id="flaky", actions=[call(target, e, "pay", route="flaky/2", retry=retry)])

    await system.submit(e, plan)
    end = await system.wait_end(e)

    assert isinstance(end, ExecutionCompleted)
    history = await system.history(e)
    failed = of(history, ActionAttemptFailed)
    assert [(f.attempt, f.error.code, f.error.status_code) for f in failed] == [
        (1, "http_5xx", 503),
        (2, "http_5xx", 503),
    ]
    [completed] = of(history, ActionCompleted)
    assert completed.attempt == 3
    assert completed.output == {"attempt": 3, "key": f"{e}:pay"}
    assert [s.attempt for s in of(history, ActionStarted)] == [1, 2, 3]
    hits = target.hits_for(f"/flaky/2/{e}/pay")
    assert [hit.idempotency_key for hit in hits] == [f"{e}:pay"] * 3
    assert dispatches_per_action(history) == {"pay": 1}


async def test_not_found_fails_at_once_and_skips_dependents(
    system: System, target: HttpTarget
) -> None:
    e = system.new_id("missing")
    retry = RetryPolicy(max_attempts=5, min_backoff_ms=50)
    plan = Plan(
        id="missing",
        actions=[
            call(target, e, "lookup", route="status/404", retry=retry),
            call(target, e, "use", "lookup"),
            call(target, e, "report", "use"),
        ],
    )

    await system.submit(e, plan)
    end = await system.wait_end(e)

    assert isinstance(end, ExecutionFailed)
    assert end.failed_actions == ["lookup"]
    history = await system.history(e)
    [failed] = of(history, ActionFailed)
    assert (failed.action_id, failed.attempt, failed.error.code) == ("lookup", 1, "http_4xx")
    assert failed.error.status_code == 404
    assert of(history, ActionAttemptFailed) == []
    assert set(skips(history)) == {"use", "report"}
    assert skips(history)["use"] == "dependency_failed"
    assert system.hits_per_action(e) == {"lookup": 1}


async def test_slow_target_times_out(system: System, target: HttpTarget) -> None:
    e = system.new_id("timeout")
    plan = Plan(
        id="timeout",
        actions=[
            call(
                target,
                e,
                "slow",
                route="slow",
                query={"delay": "3"},
                timeout_s=0.3,
                retry=RetryPolicy(max_attempts=1),
            )
        ],
    )

    await system.submit(e, plan)
    end = await system.wait_end(e)

    assert isinstance(end, ExecutionFailed)
    history = await system.history(e)
    [failed] = of(history, ActionFailed)
    assert failed.error.code == "timeout"
    assert system.hits_per_action(e) == {"slow": 1}


async def test_cancellation_mid_run_stops_everything_pending(
    system: System, target: HttpTarget
) -> None:
    e = system.new_id("cancel")
    plan = Plan(
        id="cancel",
        actions=[
            call(target, e, "slow", route="slow", query={"delay": "1"}),
            call(target, e, "next", "slow"),
            call(target, e, "last", "next"),
        ],
    )
    await system.submit(e, plan)
    await eventually(lambda: system.hits_per_action(e)["slow"], 10, "slow never called")

    await system.log.append(ExecutionCancelRequested(execution_id=e, reason="operator"))
    end = await system.wait_end(e)

    assert isinstance(end, ExecutionCancelled) and end.reason == "operator"

    # The slow call is aborted: its executor records nothing more and acks the request.
    async def settled() -> bool:
        info = await system.log.js.consumer_info(system.log.stream, "queue-http")
        return info.num_ack_pending == 0 and info.num_pending == 0

    await eventually(settled, 10, "the request was never acked")
    history = await system.history(e)
    assert {c.action_id for c in of(history, ActionCancelled)} == {"slow", "next", "last"}
    assert of(history, ActionCompleted) == [] and of(history, ActionFailed) == []
    assert dispatches_per_action(history) == {"slow": 1}
    assert system.hits_per_action(e) == {"slow": 1}
    assert of(history, ExecutionCancelled) == [end]


async def test_deadline_cancels_the_execution(system: System, target: HttpTarget) -> None:
    e = system.new_id("deadline")
    plan = Plan(
        id="deadline",
        timeout_s=1.0,
        actions=[
            call(target, e, "slow", route="slow", query={"delay": "2.5"}),
            call(target, e, "next", "slow"),
        ],
    )
    started = time.monotonic()

    await system.submit(e, plan)
    end = await system.wait_end(e, timeout=10)

    elapsed = time.monotonic() - started
    assert isinstance(end, ExecutionCancelled)
    assert end.reason == "deadline exceeded"
    assert elapsed > 0.8, elapsed  # not before the deadline; wait_end's timeout bounds the rest
    history = await system.history(e)
    assert [r.reason for r in of(history, ExecutionCancelRequested)] == ["deadline exceeded"]
    assert {c.action_id for c in of(history, ActionCancelled)} == {"slow", "next"}
    assert dispatches_per_action(history) == {"slow": 1}


# ------------------------------------------------------------------------- scaling out


async def test_two_orchestrators_never_dispatch_an_action_twice(
    system: System, target: HttpTarget
) -> None:
    # A burst of its own, then every execution this module ran (when run with the others).
    burst = [system.new_id(f"burst{n}") for n in range(6)]
    for e in burst:
        branches = [call(target, e, f"b{n}", "root") for n in range(15)]
        plan = Plan(
            id="burst",
            actions=[
                call(target, e, "root"),
                *branches,
                call(target, e, "join", *(b.id for b in branches)),
            ],
        )
        await system.submit(e, plan)
    for e in burst:
        assert isinstance(await system.wait_end(e), ExecutionCompleted)

    checked = 0
    for e in list(system.executions):
        await system.wait_end(e)
        history = await system.history(e)
        dispatches = dispatches_per_action(history)
        assert set(dispatches.values()) <= {1}, (e, dispatches)
        attempts = attempts_per_action(history)
        hits = system.hits_per_action(e)
        assert set(hits) == set(dispatches), (e, hits, dispatches)
        for action_id, count in hits.items():
            assert count == attempts[action_id], (e, action_id, count, attempts[action_id])
            retried = any(
                isinstance(ev, ActionAttemptFailed) and ev.action_id == action_id for ev in history
            )
            assert count == 1 or retried, (e, action_id, count)
        checked += 1
    assert checked >= len(burst)
    holders = await system.holders()  # every partition served, each by one process
    assert sorted(holders) == list(range(16)) and {len(r) for r in holders.values()} == {1}


async def test_three_executor_processes_share_one_plan(system: System, target: HttpTarget) -> None:
    e = system.new_id("share")
    actions = [call(target, e, f"a{n}", route="slow", query={"delay": "0.1"}) for n in range(60)]

    await system.submit(e, Plan(id="share", actions=actions))
    end = await system.wait_end(e, timeout=30)

    assert isinstance(end, ExecutionCompleted)
    started = of(await system.history(e), ActionStarted)
    by_executor = {s.executor_id for s in started}
    assert len(started) == 60
    assert by_executor == system.executor_ids and len(by_executor) == 3


async def test_plan_completes_after_the_leading_orchestrator_is_killed(
    tmp_path: Path, target: HttpTarget
) -> None:
    async with running_system(tmp_path, target, executors=1) as own:
        e = own.new_id("failover")
        branches = [call(target, e, f"b{n}", "slow") for n in range(10)]
        plan = Plan(
            id="failover",
            actions=[
                call(target, e, "first"),
                call(target, e, "slow", "first", route="slow", query={"delay": "1"}),
                *branches,
                call(target, e, "join", *(b.id for b in branches)),
            ],
        )
        leader = await own.wait_leader()
        await own.submit(e, plan)
        await eventually(lambda: own.hits_per_action(e)["slow"], 10, "slow never called")

        code = leader.kill()
        killed_at = datetime.now(UTC)
        # Up to lease_s (3 s) before the standby leads; any event the dead leader had taken
        # but not acknowledged is back after ack_wait (3 s) by then.
        end = await own.wait_end(e, timeout=30)

        assert code == -signal.SIGKILL
        assert isinstance(end, ExecutionCompleted)
        standby = await own.wait_leader()
        assert standby is not leader
        history = await own.history(e)
        # The rest of the plan was decided after the leader died, i.e. by the standby.
        after_kill = [
            r.action_id
            for r in of(history, ActionExecuteRequested)
            if datetime.fromisoformat(r.occurred_at) > killed_at
        ]
        assert sorted(after_kill) == sorted([*(b.id for b in branches), "join"])
        expected = {"first", "slow", "join", *(b.id for b in branches)}
        assert dispatches_per_action(history) == dict.fromkeys(expected, 1)
        assert own.hits_per_action(e) == dict.fromkeys(expected, 1)
