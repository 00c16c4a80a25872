"""One instance of every event type (and the plan they carry), shared by codec and schema tests."""

from __future__ import annotations

from eventstore.events import (
    ActionAttemptFailed,
    ActionCancelled,
    ActionCompleted,
    ActionExecuteRequested,
    ActionFailed,
    ActionItemsStarted,
    ActionResumeRequested,
    ActionSkipped,
    ActionStarted,
    ActionTimerFired,
    ActionWaiting,
    ErrorInfo,
    Event,
    ExecutionCancelled,
    ExecutionCancelRequested,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionRetried,
    PlanSubmitted,
)
from eventstore.plan import Action, Condition, Plan, QueueConfig, RequestSpec, RetryPolicy

__all__ = ["ONE_OF_EACH", "PLAN"]

PLAN = Plan(
    id="welcome",
    input={"user_id": "42", "nested": [1, {"x": None}]},
    actions=[
        Action(
            id="fetch",
            request=RequestSpec(
                url="http://127.0.0.1:8080/users/{{input.user_id}}",
                headers={"Authorization": "Bearer {{secrets.TOKEN}}"},
                timeout_s=5,
            ),
            retry=RetryPolicy(max_attempts=3),
        ),
        Action(
            id="send",
            depends_on=["fetch"],
            when=Condition(path="actions.fetch.output.tier", in_=["gold", "premium"]),
            request=RequestSpec(method="POST", url="http://127.0.0.1:8080/send", json={"a": 1}),
            continue_on_error=True,
        ),
    ],
    queues={"http": QueueConfig(concurrency_limit=2)},
)
ERROR = ErrorInfo(message="HTTP 503", code="http_5xx", status_code=503, retryable=True)
COMMON = {"execution_id": "exec-1", "causation_id": "cause", "correlation_id": "corr"}

ONE_OF_EACH: list[Event] = [
    PlanSubmitted(plan=PLAN, **COMMON),
    ActionExecuteRequested(
        action_id="fetch",
        action_type="http",
        queue="http",
        request=PLAN.actions[0].request,
        input={"k": [1, 2]},
        retry=RetryPolicy(max_attempts=3, jitter=False),
        timeout_s=5.0,
        **COMMON,
    ),
    ActionStarted(action_id="fetch", attempt=1, executor_id="exec-host-1", **COMMON),
    ActionAttemptFailed(action_id="fetch", attempt=1, error=ERROR, retry_in_ms=400, **COMMON),
    ActionCompleted(
        action_id="fetch",
        attempt=2,
        output={"tier": "gold", "list": [1, 2.5, None, True]},
        duration_ms=12.5,
        status_code=200,
        headers={"content-type": "application/json"},
        **COMMON,
    ),
    ActionFailed(action_id="send", attempt=3, error=ERROR, **COMMON),
    ActionSkipped(action_id="send", reason="condition_false", detail="tier is bronze", **COMMON),
    ActionCancelled(action_id="send", reason="user", **COMMON),
    ActionWaiting(
        action_id="approve",
        reason="waitpoint",
        until="2030-01-01T00:00:00.000000Z",
        schema={"type": "object", "required": ["approved"]},
        token="exec-1.approve.abc",
        **COMMON,
    ),
    ActionResumeRequested(
        action_id="approve", data={"approved": True}, requested_by="ops", **COMMON
    ),
    ActionTimerFired(
        action_id="approve", kind="timeout", due_at="2030-01-01T00:00:00.000000Z", **COMMON
    ),
    ActionItemsStarted(action_id="send", count=3, concurrency=2, **COMMON),
    ExecutionRetried(run=2, reset=["send"], from_actions=["send"], requested_by="ops", **COMMON),
    ExecutionCompleted(**COMMON),
    ExecutionFailed(error=ERROR, failed_actions=["send"], **COMMON),
    ExecutionCancelRequested(reason="user", **COMMON),
    ExecutionCancelled(reason="user", **COMMON),
]
