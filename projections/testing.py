"""Test helpers for the read side: synthetic histories and a projector running in a task.

The histories are the events orchestrator and executors would write for runs with retries,
skips, failures and cancellations, interleaved like concurrent executions: no HTTP and no
orchestrator needed to exercise projections, rebuilds and benchmarks.

Example:
    >>> events = synthetic_run("e1", actions=3)
    >>> [type(e).__name__ for e in events[:3]]
    ['PlanSubmitted', 'ActionExecuteRequested', 'ActionStarted']
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Literal

import anyio
from nats.aio.client import Client as NatsClient

from eventstore.config import TepSettings
from eventstore.events import (
    ActionAttemptFailed,
    ActionCancelled,
    ActionCompleted,
    ActionExecuteRequested,
    ActionFailed,
    ActionSkipped,
    ActionStarted,
    ErrorInfo,
    Event,
    ExecutionCancelled,
    ExecutionCancelRequested,
    ExecutionCompleted,
    ExecutionFailed,
    PlanSubmitted,
)
from eventstore.plan import Action, Plan, RequestSpec, RetryPolicy
from projections.projector import Projector

__all__ = [
    "Outcome",
    "interleave",
    "running_projector",
    "synthetic_plan",
    "synthetic_run",
    "synthetic_runs",
]

Outcome = Literal["completed", "failed", "cancelled", "running"]
"""How a synthetic run ends; ``running`` stops half-way without a terminal event."""

_TIMEOUT = ErrorInfo(message="timed out after 10s", code="timeout", retryable=True)
_SERVER_ERROR = ErrorInfo(message="HTTP 500", code="http_5xx", status_code=500)


def synthetic_plan(plan_id: str, actions: int) -> Plan:
    """A chain of ``actions`` HTTP actions, each retried up to 3 times."""
    return Plan(
        id=plan_id,
        input={"user_id": "42"},
        actions=[
            Action(
                id=f"a{i}",
                depends_on=[f"a{i - 1}"] if i else [],
                request=RequestSpec(url=f"http://127.0.0.1:9/step/{i}"),
                retry=RetryPolicy(max_attempts=3),
            )
            for i in range(actions)
        ],
    )


def synthetic_run(
    execution_id: str,
    *,
    plan_id: str = "synthetic",
    actions: int = 16,
    outcome: Outcome = "completed",
    retries: Sequence[int] = (),
    skips: Sequence[int] = (),
    output_bytes: int = 16,
) -> list[Event]:
    """The events of one execution of :func:`synthetic_plan`, in order.

    Args:
        actions: how many actions the plan has (a completed run without retries or skips
            has ``3 * actions + 2`` events).
        outcome: ``failed`` fails the middle action; ``cancelled`` cancels at the middle
            action (the rest are cancelled); ``running`` stops at the middle action.
        retries: indexes of actions whose first attempt fails with a retryable timeout.
        skips: indexes of actions skipped by their condition.
        output_bytes: size of each completed action's output text.
    """
    plan = synthetic_plan(plan_id, actions)
    e = execution_id
    events: list[Event] = [PlanSubmitted(execution_id=e, plan=plan)]
    middle = actions // 2
    for index, action in enumerate(plan.actions):
        a = action.id
        if index in skips:
            events.append(ActionSkipped(execution_id=e, action_id=a, reason="condition_false"))
            continue
        if outcome == "cancelled" and index == middle:
            events.append(ExecutionCancelRequested(execution_id=e, reason="operator"))
            events += [
                ActionCancelled(execution_id=e, action_id=rest.id) for rest in plan.actions[index:]
            ]
            events.append(ExecutionCancelled(execution_id=e, reason="operator"))
            return events
        events.append(
            ActionExecuteRequested(execution_id=e, action_id=a, action_type="http", queue="http")
        )
        if outcome == "running" and index == middle:
            events.append(ActionStarted(execution_id=e, action_id=a, attempt=1))
            return events
        attempt = 1
        if index in retries:
            events.append(ActionStarted(execution_id=e, action_id=a, attempt=1))
            events.append(
                ActionAttemptFailed(
                    execution_id=e, action_id=a, attempt=1, error=_TIMEOUT, retry_in_ms=200
                )
            )
            attempt = 2
        events.append(ActionStarted(execution_id=e, action_id=a, attempt=attempt))
        if outcome == "failed" and index == middle:
            events.append(
                ActionFailed(execution_id=e, action_id=a, attempt=attempt, error=_SERVER_ERROR)
            )
            events += [
                ActionSkipped(execution_id=e, action_id=rest.id, reason="dependency_failed")
                for rest in plan.actions[index + 1 :]
            ]
            events.append(ExecutionFailed(execution_id=e, error=_SERVER_ERROR, failed_actions=[a]))
            return events
        events.append(
            ActionCompleted(
                execution_id=e,
                action_id=a,
                attempt=attempt,
                output={"step": index, "text": "x" * output_bytes},
                duration_ms=12.5,
                status_code=200,
            )
        )
    events.append(ExecutionCompleted(execution_id=e))
    return events


def synthetic_runs(
    count: int,
    *,
    prefix: str = "e",
    actions: int = 16,
    seed: int = 7,
    plans: int = 3,
) -> list[list[Event]]:
    """``count`` runs with a deterministic mix of outcomes, retries and skips."""
    rng = random.Random(seed)
    outcomes: list[Outcome] = ["completed", "completed", "completed", "completed"]
    outcomes += ["failed", "cancelled", "running"]
    runs = []
    for n in range(count):
        retries = [i for i in range(actions) if rng.random() < 0.1]
        skips = [i for i in range(actions) if i not in retries and rng.random() < 0.05]
        runs.append(
            synthetic_run(
                f"{prefix}{n}",
                plan_id=f"plan-{n % plans}",
                actions=actions,
                outcome=rng.choice(outcomes),
                retries=retries,
                skips=skips,
            )
        )
    return runs


def interleave(
    runs: Sequence[Sequence[Event]], *, concurrency: int = 100, seed: int = 7
) -> Iterator[Event]:
    """The events of ``runs`` as a log would hold them: ``concurrency`` runs in flight at
    once, each one's events in order, the next event taken from a random run in flight."""
    rng = random.Random(seed)
    waiting = iter(runs)
    active: list[tuple[Sequence[Event], int]] = []
    while True:
        while len(active) < concurrency:
            run = next(waiting, None)
            if run is None:
                break
            if run:
                active.append((run, 0))
        if not active:
            return
        slot = rng.randrange(len(active))
        run, position = active[slot]
        yield run[position]
        if position + 1 < len(run):
            active[slot] = (run, position + 1)
        else:
            active[slot] = active[-1]
            active.pop()


@contextlib.asynccontextmanager
async def running_projector(
    nc: NatsClient, settings: TepSettings, **options: int
) -> AsyncIterator[Projector]:
    """A :class:`Projector` running in a task for the duration of the block."""
    projector = Projector(nc, settings, **options)
    async with anyio.create_task_group() as group:
        group.start_soon(projector.run)
        try:
            yield projector
        finally:
            group.cancel_scope.cancel()
