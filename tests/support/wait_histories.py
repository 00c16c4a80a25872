"""Histories of executions with a waitpoint and a sleep, as the orchestrator would write them,
stopped at a chosen stage: for tests of the view, the displays and the resume client that run
without an orchestrator."""

from __future__ import annotations

from typing import Any, Literal

from eventstore.error_codes import ErrorCode
from eventstore.events import (
    ActionCompleted,
    ActionFailed,
    ActionResumeRequested,
    ActionTimerFired,
    ActionWaiting,
    ErrorInfo,
    Event,
    ExecutionCompleted,
    ExecutionFailed,
    PlanSubmitted,
)
from eventstore.plan import Action, Plan

__all__ = ["SCHEMA", "STAGES", "UNTIL", "Stage", "token_of", "wait_history", "wait_plan"]

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["approved"],
    "properties": {"approved": {"type": "boolean"}, "amount": {"type": "integer"}},
}
UNTIL = "2030-01-01T00:00:00.000000Z"

Stage = Literal["waiting", "refused", "resumed", "completed", "timed_out"]
STAGES: tuple[Stage, ...] = ("waiting", "refused", "resumed", "completed", "timed_out")


def wait_plan(plan_id: str = "approval") -> Plan:
    """``approve`` (a waitpoint with a schema and a timeout) and ``nap`` (a sleep), side by
    side."""
    return Plan(
        id=plan_id,
        actions=[
            Action(id="approve", type="wait", timeout_s=60, schema=SCHEMA),
            Action(id="nap", type="sleep", duration_s=60),
        ],
    )


def token_of(execution_id: str) -> str:
    """The token the histories give the execution's waitpoint."""
    return f"{execution_id}.approve.s3cr3t-{execution_id}"


def wait_history(execution_id: str, stage: Stage, plan_id: str = "approval") -> list[Event]:
    """The execution's events up to ``stage``:

    - ``waiting``: both actions wait;
    - ``refused``: and a resume with data that fails the schema was refused;
    - ``resumed``: and a valid resume was accepted (its outcome not yet stored);
    - ``completed``: the waitpoint completed with the data, the sleep woke, the execution
      completed;
    - ``timed_out``: instead of any resume, the waitpoint timed out and failed the execution.
    """
    e = execution_id
    common: dict[str, Any] = {"execution_id": e, "correlation_id": e}
    events: list[Event] = [
        PlanSubmitted(execution_id=e, plan=wait_plan(plan_id)),
        ActionWaiting(
            **common,
            action_id="approve",
            reason="waitpoint",
            until=UNTIL,
            schema=SCHEMA,
            token=token_of(e),
        ),
        ActionWaiting(**common, action_id="nap", reason="sleep", until=UNTIL),
    ]
    if stage == "waiting":
        return events
    if stage == "timed_out":
        timer = ActionTimerFired(**common, action_id="approve", kind="timeout", due_at=UNTIL)
        error = ErrorInfo(message="waitpoint approve was not resumed", code=ErrorCode.TIMEOUT)
        return [
            *events,
            timer,
            ActionFailed(
                **common, action_id="approve", attempt=1, error=error, causation_id=timer.event_id
            ),
            ActionTimerFired(**common, action_id="nap", kind="wake", due_at=UNTIL),
            ActionCompleted(**common, action_id="nap", attempt=1, output={"slept_until": UNTIL}),
            ExecutionFailed(**common, error=error, failed_actions=["approve"]),
        ]
    events.append(
        ActionResumeRequested(
            **common, action_id="approve", data={"approved": "yes"}, requested_by="ops"
        )
    )
    if stage == "refused":
        return events
    accepted = ActionResumeRequested(
        **common, action_id="approve", data={"approved": True, "amount": 3}, requested_by="ana"
    )
    events.append(accepted)
    if stage == "resumed":
        return events
    return [
        *events,
        ActionCompleted(
            **common,
            action_id="approve",
            attempt=1,
            output={"approved": True, "amount": 3},
            causation_id=accepted.event_id,
        ),
        ActionTimerFired(**common, action_id="nap", kind="wake", due_at=UNTIL),
        ActionCompleted(**common, action_id="nap", attempt=1, output={"slept_until": UNTIL}),
        ExecutionCompleted(**common),
    ]
