"""The events an attempt writes, and which one its result calls for. Pure.

Outcome ids are deterministic, so a retried append stores nothing new:

* ``<execution>.<action>.attempt.<attempt>.failed``
* ``<execution>.<action>.completed`` / ``<execution>.<action>.failed``

A start is one delivery's claim on the action, ``<execution>.<action>.started.<attempt>.
<interruption>.<claim>`` with a random ``claim``: two executors that start the same attempt
at once never look like one append retried (the log's guard lets one of them in).
"""

from __future__ import annotations

import random
import uuid
from typing import Any

from eventstore.error_codes import ErrorCode
from eventstore.events import (
    ActionAttemptFailed,
    ActionCompleted,
    ActionExecuteRequested,
    ActionFailed,
    ActionStarted,
    ErrorInfo,
)
from executor.errors import ActionError
from executor.retry import retry_delay_ms

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "MAX_ERROR_CHARS",
    "attempt_timeout_s",
    "completed_event",
    "error_info",
    "failure_event",
    "interrupted_event",
    "max_attempts",
    "started_event",
]

DEFAULT_TIMEOUT_S = 30.0
MAX_ERROR_CHARS = 2000


def max_attempts(request: ActionExecuteRequested) -> int:
    """How many attempts the action's retry policy allows (at least one)."""
    return max(request.retry.max_attempts, 1)


def attempt_timeout_s(request: ActionExecuteRequested, default: float = DEFAULT_TIMEOUT_S) -> float:
    """The time limit of one attempt: the smaller of the action's and the request's
    ``timeout_s``, else ``default``."""
    limits = [request.timeout_s]
    if request.request is not None:
        limits.append(request.request.timeout_s)
    chosen = [limit for limit in limits if limit is not None and limit > 0]
    return min(chosen) if chosen else default


def _envelope(request: ActionExecuteRequested, suffix: str) -> dict[str, Any]:
    """The fields every event about the request's action carries; its id ends in ``suffix``."""
    return {
        "execution_id": request.execution_id,
        "action_id": request.action_id,
        "event_id": f"{request.execution_id}.{request.action_id}.{suffix}",
        "causation_id": request.event_id,
        "correlation_id": request.correlation_id,
    }


def started_event(
    request: ActionExecuteRequested,
    attempt: int,
    executor_id: str | None,
    *,
    interruption: int = 0,
) -> ActionStarted:
    """``action.started`` for ``attempt``, started again after ``interruption`` cut-offs."""
    claim = uuid.uuid4().hex[:12]
    return ActionStarted(
        **_envelope(request, f"started.{attempt}.{interruption}.{claim}"),
        attempt=attempt,
        executor_id=executor_id,
        interruption=interruption,
    )


def interrupted_event(
    request: ActionExecuteRequested, attempt: int, interruptions: int
) -> ActionFailed:
    """``action.failed`` (code ``interrupted``): ``attempt`` was cut off ``interruptions``
    times, more than the executor's budget."""
    return ActionFailed(
        **_envelope(request, "failed"),
        attempt=attempt,
        error=ErrorInfo(
            message=f"attempt {attempt} of {max_attempts(request)} was interrupted "
            f"{interruptions} times before its outcome was recorded (executors crashed, were "
            "paused or lost their connection); the request is in the dead-letter stream",
            code=ErrorCode.INTERRUPTED,
            retryable=True,
        ),
    )


def completed_event(
    request: ActionExecuteRequested,
    attempt: int,
    output: dict[str, Any],
    *,
    duration_ms: float,
    status_code: int | None = None,
    headers: dict[str, str] | None = None,
) -> ActionCompleted:
    """``action.completed`` with the attempt's output."""
    return ActionCompleted(
        **_envelope(request, "completed"),
        attempt=attempt,
        output=output,
        duration_ms=round(duration_ms, 3),
        status_code=status_code,
        headers=headers or {},
    )


def error_info(error: ActionError) -> ErrorInfo:
    """The error as recorded in events (message truncated to :data:`MAX_ERROR_CHARS`)."""
    message = error.message
    if len(message) > MAX_ERROR_CHARS:
        message = message[:MAX_ERROR_CHARS] + "..."
    return ErrorInfo(
        message=message,
        code=error.code,
        status_code=error.status_code,
        retryable=error.retryable,
    )


def failure_event(
    request: ActionExecuteRequested,
    attempt: int,
    error: ActionError,
    *,
    rng: random.Random | None = None,
) -> ActionAttemptFailed | ActionFailed:
    """``action.attempt.failed`` when another attempt is allowed and may help, else
    ``action.failed``.

    Example:
        >>> from executor.errors import NonRetryableError
        >>> type(failure_event(request, 1, NonRetryableError("no"))).__name__  # doctest: +SKIP
        'ActionFailed'
    """
    info = error_info(error)
    if error.retryable and attempt < max_attempts(request):
        return ActionAttemptFailed(
            **_envelope(request, f"attempt.{attempt}.failed"),
            attempt=attempt,
            error=info,
            retry_in_ms=retry_delay_ms(
                request.retry, attempt, retry_after_s=error.retry_after_s, rng=rng
            ),
        )
    return ActionFailed(
        **_envelope(request, "failed"),
        attempt=attempt,
        error=info,
    )
