"""One delivery of an ``action.execute.requested`` message: run an attempt, record it, settle it.

For each delivery:

1. On a redelivery, look up the action's outcome; if it has one, ack and stop (the target is
   not called again). The attempt number is one more than the last ``action.started`` recorded,
   so deliveries that never started (lost in a crashed process) do not use up attempts.
2. Attempts exhausted by crashes -> ``action.failed`` (code ``interrupted``), ack.
3. Append ``action.started`` (concurrently with the call), run the handler under the attempt's
   time limit, heartbeating the message while it runs.
4. Append the outcome, then settle the message: ``action.completed`` / ``action.failed`` -> ack;
   ``action.attempt.failed`` -> nak with the backoff as delay, so JetStream schedules the retry.

A message is acked only after its outcome is durably in the log.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, Literal, TypeVar

import anyio
from nats.aio.msg import Msg

from eventstore.codec import decode_event
from eventstore.error_codes import ErrorCode
from eventstore.errors import EventDecodeError, EventTooLargeError
from eventstore.events import (
    ActionAttemptFailed,
    ActionCompleted,
    ActionExecuteRequested,
    ActionFailed,
    ErrorInfo,
)
from eventstore.jetstream.deadletter import dead_letter
from eventstore.jetstream.log import EventLog
from executor.action_log import action_history, append_retrying
from executor.config import ExecutorConfig
from executor.errors import NonRetryableError
from executor.handler_call import Outcome, call_handler, outcome_event, output_limit
from executor.handlers import AttemptInfo, Handler, set_current_attempt
from executor.heartbeat import Heartbeats
from executor.outcome import attempt_timeout_s, failure_event, max_attempts, started_event
from executor.request import idempotency_key
from executor.secrets import SecretScope

__all__ = ["AttemptRunner", "Disposition"]

# Deliveries that never got as far as `action.started` before the message is given up on.
_MAX_UNSTARTED_DELIVERIES = 10
_ABANDON_DELAY_S = 1.0
_SETTLE_TIMEOUT_S = 2.0

Disposition = Literal["completed", "failed", "retry", "duplicate", "poison", "abandoned"]

_log = logging.getLogger("tep.executor")
_T = TypeVar("_T")


def _start_beside(coroutine: Coroutine[Any, Any, _T]) -> asyncio.Task[_T]:
    """Start ``coroutine`` now, beside the caller, which awaits or cancels the task it gets.

    The executor's one plain asyncio task, on its per-message path (the ``action.started``
    append running beside the call): measured, a task group around every attempt costs about
    three times as much (about 30 us against 10 us per attempt here, CPython 3.11, anyio 4).
    """
    return asyncio.get_running_loop().create_task(coroutine)


class AttemptRunner:
    """Runs attempts for one queue's deliveries.

    Args:
        log: where events are appended.
        config: the executor's settings.
        resolve_handler: action type -> handler, or ``None`` for an unknown type.
        ack_wait_s: the consumer's ack wait; heartbeats go out every third of it. Run
            :attr:`heartbeats` (``heartbeats.run``) in a task beside the attempts.
        env: where ``TEP_SECRET_*`` values are read (default: the process environment).
        rng: jitter source (seeded in tests).
    """

    def __init__(
        self,
        log: EventLog,
        config: ExecutorConfig,
        resolve_handler: Callable[[str], Handler | None],
        *,
        ack_wait_s: float,
        env: Mapping[str, str] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.log = log
        self.config = config
        self.resolve_handler = resolve_handler
        self.heartbeats = Heartbeats(max(ack_wait_s / 3, 0.05))
        self.env = env
        self.rng = rng
        self.output_limit = output_limit(log, config)

    async def run(self, msg: Msg) -> Disposition:
        """Handle one delivery; returns what became of it.

        Exceptions other than cancellation escape only when the log cannot be written; the
        message is then left unacknowledged and JetStream redelivers it after the ack wait.
        """
        try:
            event = decode_event(msg.data)
        except EventDecodeError as exc:
            await self._reject(msg, str(exc))
            return "poison"
        if not isinstance(event, ActionExecuteRequested):
            await self._reject(
                msg, f"expected action.execute.requested, got {type(event).__name__}"
            )
            return "poison"
        request = event
        try:
            return await self._deliver(msg, request)
        except anyio.get_cancelled_exc_class():
            # Stopping: hand the request back to the queue for another executor.
            await _settle(msg.nak())
            raise
        except Exception:
            # The log could not be read or written: hand the request back for a retry soon.
            _log.exception("delivery abandoned: the log is unavailable", extra=_ids(request))
            await _settle(msg.nak(delay=_ABANDON_DELAY_S))
            return "abandoned"

    async def _deliver(self, msg: Msg, request: ActionExecuteRequested) -> Disposition:
        delivered = msg.metadata.num_delivered or 1
        attempt = 1
        if delivered > 1:
            history = await action_history(self.log, request)
            if history.finished:
                await msg.ack()
                _log.info("request redelivered after its outcome: acked", extra=_ids(request))
                return "duplicate"
            attempt = history.last_started + 1
            if delivered - attempt >= _MAX_UNSTARTED_DELIVERIES:
                attempt = max(attempt, max_attempts(request) + 1)
        if attempt > max_attempts(request):
            return await self._give_up(msg, request, attempt - 1)
        return await self._attempt(msg, request, attempt)

    async def _attempt(
        self, msg: Msg, request: ActionExecuteRequested, attempt: int
    ) -> Disposition:
        timeout = attempt_timeout_s(request, self.config.default_timeout_s)
        set_current_attempt(
            AttemptInfo(
                execution_id=request.execution_id,
                action_id=request.action_id,
                action_type=request.action_type,
                attempt=attempt,
                max_attempts=max_attempts(request),
                timeout_s=timeout,
                idempotency_key=idempotency_key(request.execution_id, request.action_id),
            )
        )
        started = _start_beside(
            append_retrying(self.log, started_event(request, attempt, self.config.executor_id))
        )
        self.heartbeats.add(msg)
        try:
            began = time.perf_counter()
            scope = SecretScope(self.env)
            result = await call_handler(
                self.resolve_handler(request.action_type),
                request,
                scope,
                timeout_s=timeout,
                queue=self.config.queue,
                resolve_secrets=b"{{" in msg.data,
            )
            duration_ms = (time.perf_counter() - began) * 1000
            await started
            outcome = outcome_event(
                request,
                attempt,
                result,
                duration_ms=duration_ms,
                scope=scope,
                max_output_bytes=self.output_limit,
                rng=self.rng,
            )
            outcome = await self._record_outcome(outcome, request)
        finally:
            self.heartbeats.discard(msg)
            if not started.done():
                started.cancel()
        extra = {**_ids(request), "attempt": attempt}
        if isinstance(outcome, ActionAttemptFailed):
            await msg.nak(delay=outcome.retry_in_ms / 1000)
            _log.warning(
                "attempt failed, retry in %d ms: %s",
                outcome.retry_in_ms,
                outcome.error.message,
                extra={**extra, "code": outcome.error.code},
            )
            return "retry"
        await msg.ack()
        if isinstance(outcome, ActionFailed):
            _log.warning(
                "action failed: %s",
                outcome.error.message,
                extra={**extra, "code": outcome.error.code},
            )
            return "failed"
        return "completed"

    async def _record_outcome(self, outcome: Outcome, request: ActionExecuteRequested) -> Outcome:
        try:
            await append_retrying(self.log, outcome)
        except EventTooLargeError as exc:
            if not isinstance(outcome, ActionCompleted):
                raise
            outcome = failure_event(
                request,
                outcome.attempt,
                NonRetryableError(str(exc), code=ErrorCode.OUTPUT_TOO_LARGE),
                rng=self.rng,
            )
            await append_retrying(self.log, outcome)
        return outcome

    async def _give_up(self, msg: Msg, request: ActionExecuteRequested, last: int) -> Disposition:
        failed = ActionFailed(
            execution_id=request.execution_id,
            action_id=request.action_id,
            event_id=f"{request.execution_id}.{request.action_id}.failed",
            causation_id=request.event_id,
            correlation_id=request.correlation_id,
            attempt=last,
            error=ErrorInfo(
                message=f"attempt {last} of {max_attempts(request)} was interrupted before its "
                "outcome was recorded (an executor stopped or lost its connection)",
                code=ErrorCode.INTERRUPTED,
                retryable=True,
            ),
        )
        await append_retrying(self.log, failed)
        await msg.ack()
        _log.warning("attempts exhausted by interruptions", extra=_ids(request))
        return "failed"

    async def _reject(self, msg: Msg, reason: str) -> None:
        """A message that can never be processed: keep it in the dead-letter stream, stop it."""
        try:
            await dead_letter(
                self.log.js, msg, role="executor", stream=self.log.stream, reason=reason
            )
        except Exception as exc:
            # Left unacked: it comes back after the ack wait, and we try again.
            _log.error("dead-letter publish failed: %s", exc)


async def _settle(action: Awaitable[None]) -> None:
    """Ack/nak without letting a broken connection, a slow server or a stop hold us up."""
    with anyio.move_on_after(_SETTLE_TIMEOUT_S, shield=True):
        try:
            await action
        except Exception as exc:
            _log.debug("could not settle a message: %s", exc)


def _ids(request: ActionExecuteRequested) -> dict[str, str]:
    return {"execution_id": request.execution_id, "action_id": request.action_id}
