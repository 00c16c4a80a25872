"""How an execution's end is written: a cancellation, or a failure. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from eventstore.error_codes import ErrorCode
from eventstore.events import (
    ActionCancelled,
    ErrorInfo,
    Event,
    ExecutionCancelled,
    ExecutionFailed,
)
from eventstore.state import ActionState, ExecutionState
from orchestrator import ids

__all__ = ["EXECUTION_FAILED_REASON", "cancel_all", "failure_end"]

EXECUTION_FAILED_REASON = "execution failed"


def _cancelled(execution: str, action_id: str, cause: str, reason: str | None) -> ActionCancelled:
    return ActionCancelled(
        execution_id=execution,
        action_id=action_id,
        event_id=ids.cancelled_id(execution, action_id),
        causation_id=cause,
        correlation_id=execution,
        reason=reason,
    )


def cancel_all(state: ExecutionState, cause: str) -> list[Event]:
    """A cancel request granted: every unfinished action cancelled, then the end."""
    execution = state.execution_id
    reason = state.cancel_reason
    events: list[Event] = [
        _cancelled(execution, action.action_id, cause, reason)
        for action in state.actions.values()
        if not action.finished
    ]
    events.append(
        ExecutionCancelled(
            execution_id=execution,
            event_id=ids.terminal_id(execution),
            causation_id=cause,
            correlation_id=execution,
            reason=reason,
        )
    )
    return events


def failure_end(
    execution: str,
    cause: str,
    unfinished: Sequence[str],
    blocking: Sequence[str],
    actions: Mapping[str, ActionState],
) -> list[Event]:
    """A failing execution with nothing in flight: what never ran is cancelled, then
    ``execution.failed`` names the failures (``blocking``, the failed ones first)."""
    events: list[Event] = [
        _cancelled(execution, action_id, cause, EXECUTION_FAILED_REASON)
        for action_id in unfinished
    ]
    failed = [a for a in blocking if actions[a].status == "failed"] or list(blocking)
    first = actions[failed[0]].error
    detail = f": {first.message}" if first is not None else ""
    noun = "action" if len(failed) == 1 else "actions"
    events.append(
        ExecutionFailed(
            execution_id=execution,
            event_id=ids.terminal_id(execution),
            causation_id=cause,
            correlation_id=execution,
            error=ErrorInfo(
                message=f"{noun} {', '.join(failed)} failed{detail}",
                code=ErrorCode.ACTION_FAILED,
            ),
            failed_actions=failed,
        )
    )
    return events
