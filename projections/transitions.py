"""Which event a requested status change becomes, and which changes are allowed. Pure.

``StateManager.update_action_status`` and ``record_action_result`` do not edit state: they
append the event that means the change, after checking it against the execution's state.
Allowed: ``pending -> running | completed | failed | skipped | cancelled`` and
``running -> completed | failed | cancelled``. Nothing leaves a finished status, nothing goes
back to ``pending``, and nothing changes once the execution has ended.
"""

from __future__ import annotations

from typing import Any

import msgspec

from eventstore.error_codes import ErrorCode
from eventstore.events import (
    ActionCancelled,
    ActionCompleted,
    ActionFailed,
    ActionSkipped,
    ActionStarted,
    ErrorInfo,
    Event,
)
from eventstore.state import ACTION_STATUSES, ExecutionState
from projections.errors import ActionNotFoundError, InvalidTransitionError

__all__ = ["ActionResult", "output_document", "result_event", "status_event"]

_ALLOWED: dict[str, frozenset[str]] = {
    "pending": frozenset({"running", "completed", "failed", "skipped", "cancelled"}),
    "running": frozenset({"completed", "failed", "cancelled"}),
}


class ActionResult(msgspec.Struct, kw_only=True):
    """An action's outcome as a caller records it: an ``output``, or an ``error`` for a failure.

    ``error`` may be an :class:`ErrorInfo` or just a message (code ``failed``).
    """

    output: Any = None
    error: ErrorInfo | str | None = None
    duration_ms: float | None = None
    status_code: int | None = None


def output_document(value: Any) -> dict[str, Any]:
    """A result value as an action output: objects as they are, ``None`` as ``{}``, anything
    else wrapped as ``{"value": ...}`` (the contract's rule for non-object JSON)."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    return {"value": msgspec.to_builtins(value)}


def _action_status(state: ExecutionState, action_id: str, requested: str) -> tuple[str, int]:
    action = state.actions.get(action_id)
    if action is None:
        raise ActionNotFoundError(state.execution_id, action_id)
    if state.terminal:
        raise InvalidTransitionError(
            action_id, action.status, requested, f"execution {state.execution_id} is {state.status}"
        )
    allowed = _ALLOWED.get(action.status, frozenset())
    if requested not in allowed:
        why = "it is finished" if action.finished else ""
        raise InvalidTransitionError(action_id, action.status, requested, why)
    return action.status, action.attempts


def status_event(
    state: ExecutionState,
    action_id: str,
    status: str,
    *,
    error: ErrorInfo | str | None = None,
    reason: str | None = None,
) -> Event:
    """The event that moves ``action_id`` to ``status``.

    Raises:
        ActionNotFoundError: the plan has no such action.
        InvalidTransitionError: the action's current status does not allow it.
        ValueError: ``status`` is not an action status.
    """
    if status not in ACTION_STATUSES:
        raise ValueError(f"unknown action status {status!r}; one of {', '.join(ACTION_STATUSES)}")
    _, attempts = _action_status(state, action_id, status)
    execution_id = state.execution_id
    attempt = max(attempts, 1)
    match status:
        case "running":
            return ActionStarted(
                execution_id=execution_id, action_id=action_id, attempt=attempts + 1
            )
        case "completed":
            return ActionCompleted(
                execution_id=execution_id, action_id=action_id, attempt=attempt, output={}
            )
        case "failed":
            return ActionFailed(
                execution_id=execution_id,
                action_id=action_id,
                attempt=attempt,
                error=_error_info(error),
            )
        case "skipped":
            return ActionSkipped(
                execution_id=execution_id,
                action_id=action_id,
                reason="condition_false",
                detail=reason or "set by caller",
            )
        case _:
            return ActionCancelled(execution_id=execution_id, action_id=action_id, reason=reason)


def result_event(state: ExecutionState, action_id: str, result: Any) -> Event:
    """The event recording ``result`` for ``action_id``: completed, or failed if it has an error.

    ``result`` is an :class:`ActionResult`, or any other value, which becomes the output.
    """
    if not isinstance(result, ActionResult):
        result = ActionResult(output=result)
    requested = "failed" if result.error is not None else "completed"
    _, attempts = _action_status(state, action_id, requested)
    execution_id = state.execution_id
    if result.error is not None:
        return ActionFailed(
            execution_id=execution_id,
            action_id=action_id,
            attempt=max(attempts, 1),
            error=_error_info(result.error),
        )
    return ActionCompleted(
        execution_id=execution_id,
        action_id=action_id,
        attempt=max(attempts, 1),
        output=output_document(result.output),
        duration_ms=result.duration_ms,
        status_code=result.status_code,
    )


def _error_info(error: ErrorInfo | str | None) -> ErrorInfo:
    if isinstance(error, ErrorInfo):
        return error
    return ErrorInfo(message=error or "marked failed", code=ErrorCode.FAILED)
