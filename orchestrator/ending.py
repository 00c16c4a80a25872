"""How an execution's end is written: a cancellation, or a failure. Pure.

Each action is cancelled under the key of its current run, and the end carries the id of the
execution's current run (see :func:`orchestrator.ids.terminal_id`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from eventstore.action_keys import action_key
from eventstore.error_codes import ErrorCode
from eventstore.events import (
    ActionCancelled,
    ErrorInfo,
    Event,
    ExecutionCancelled,
    ExecutionFailed,
)
from eventstore.items import unfinished_item_keys
from eventstore.state import ActionState, ExecutionState
from orchestrator import ids
from orchestrator.subplans import cancel_children

__all__ = ["EXECUTION_FAILED_REASON", "cancel_all", "failure_end"]

EXECUTION_FAILED_REASON = "execution failed"


def _cancelled(execution: str, key: str, cause: str, reason: str | None) -> ActionCancelled:
    return ActionCancelled(
        execution_id=execution,
        action_id=key,
        event_id=ids.cancelled_id(execution, key),
        causation_id=cause,
        correlation_id=execution,
        reason=reason,
    )


def cancel_all(state: ExecutionState, cause: str) -> list[Event]:
    """A cancel request granted: every unfinished action cancelled (a for-each action's
    unfinished items first), each running child of a sub-plan action asked to cancel, then the
    end."""
    execution = state.execution_id
    reason = state.cancel_reason
    events: list[Event] = [
        _cancelled(execution, key, cause, reason)
        for action in state.actions.values()
        if not action.finished
        for key in (*unfinished_item_keys(action), action_key(action.action_id, action.run))
    ]
    events += cancel_children(state, cause)
    events.append(
        ExecutionCancelled(
            execution_id=execution,
            event_id=ids.terminal_id(execution, state.run),
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
    *,
    run: int = 1,
) -> list[Event]:
    """A failing execution with nothing in flight: what never ran is cancelled (``unfinished``:
    the keys of their current runs), then ``execution.failed`` of run ``run`` names the failures
    (``blocking``, the failed ones first)."""
    events: list[Event] = [
        _cancelled(execution, key, cause, EXECUTION_FAILED_REASON) for key in unfinished
    ]
    failed = [a for a in blocking if actions[a].status == "failed"] or list(blocking)
    first = actions[failed[0]].error
    detail = f": {first.message}" if first is not None else ""
    noun = "action" if len(failed) == 1 else "actions"
    events.append(
        ExecutionFailed(
            execution_id=execution,
            event_id=ids.terminal_id(execution, run),
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
