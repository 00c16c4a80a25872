"""Synthetic execution histories, appended straight to the log (no roles needed)."""

from __future__ import annotations

from eventstore.events import (
    ActionAttemptFailed,
    ActionCompleted,
    ActionExecuteRequested,
    ActionFailed,
    ActionSkipped,
    ActionStarted,
    ErrorInfo,
    Event,
    ExecutionCompleted,
    ExecutionFailed,
    PlanSubmitted,
)
from eventstore.jetstream.log import EventLog
from eventstore.plan import Action, Plan, RequestSpec

PLAN = Plan(
    id="two-steps",
    actions=[
        Action(id="fetch", request=RequestSpec(url="http://127.0.0.1:9/fetch")),
        Action(id="send", depends_on=["fetch"], request=RequestSpec(url="http://127.0.0.1:9/send")),
    ],
)

_UNAVAILABLE = ErrorInfo(message="HTTP 503", code="http_5xx", status_code=503, retryable=True)
_NOT_FOUND = ErrorInfo(message="HTTP 404", code="http_4xx", status_code=404)


def started(execution_id: str) -> list[Event]:
    """Submitted, first action dispatched and running."""
    e = execution_id
    return [
        PlanSubmitted(execution_id=e, plan=PLAN),
        ActionExecuteRequested(
            execution_id=e,
            action_id="fetch",
            action_type="http",
            queue="http",
            request=PLAN.actions[0].request,
        ),
        ActionStarted(execution_id=e, action_id="fetch", attempt=1),
    ]


def completed_rest(execution_id: str) -> list[Event]:
    """From a running ``fetch``: one failed attempt, success, ``send`` skipped, completed."""
    e = execution_id
    return [
        ActionAttemptFailed(
            execution_id=e, action_id="fetch", attempt=1, error=_UNAVAILABLE, retry_in_ms=200
        ),
        ActionStarted(execution_id=e, action_id="fetch", attempt=2),
        ActionCompleted(
            execution_id=e,
            action_id="fetch",
            attempt=2,
            output={"tier": "free"},
            duration_ms=12.5,
            status_code=200,
        ),
        ActionSkipped(
            execution_id=e, action_id="send", reason="condition_false", detail="tier is not premium"
        ),
        ExecutionCompleted(execution_id=e),
    ]


def failed_rest(execution_id: str) -> list[Event]:
    """From a running ``fetch``: it fails with a 404, ``send`` is skipped, execution failed."""
    e = execution_id
    return [
        ActionFailed(execution_id=e, action_id="fetch", attempt=1, error=_NOT_FOUND),
        ActionSkipped(execution_id=e, action_id="send", reason="dependency_failed"),
        ExecutionFailed(execution_id=e, error=_NOT_FOUND, failed_actions=["fetch"]),
    ]


async def append_all(log: EventLog, events: list[Event]) -> None:
    """Append in order, each acknowledged before the next."""
    for event in events:
        await log.append(event)
