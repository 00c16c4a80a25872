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
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

import msgspec
from nats.aio.msg import Msg

from eventstore.codec import decode_event
from eventstore.error_codes import ErrorCode
from eventstore.errors import EventDecodeError, EventTooLargeError
from eventstore.events import (
    ActionAttemptFailed,
    ActionCompleted,
    ActionExecuteRequested,
    ActionFailed,
    ActionStarted,
    ErrorInfo,
    Event,
)
from eventstore.jetstream.deadletter import publish_dead_letter
from eventstore.jetstream.log import EventLog
from eventstore.plan import RequestSpec
from eventstore.subjects import action_subject
from executor.classify import error_for_exception
from executor.config import ExecutorConfig
from executor.errors import ActionError, NonRetryableError
from executor.handlers import AttemptInfo, Handler, HandlerResult, set_current_attempt
from executor.outcome import (
    attempt_timeout_s,
    completed_event,
    failure_event,
    max_attempts,
    started_event,
)
from executor.output import encoded_size, output_from_value
from executor.request import idempotency_key
from executor.secrets import SecretScope

__all__ = ["ENVELOPE_RESERVE_BYTES", "AttemptRunner", "Disposition", "output_limit"]

ENVELOPE_RESERVE_BYTES = 16 * 1024
"""Room left in a message for the event around an output (ids, timestamps, headers)."""

# Deliveries that never got as far as `action.started` before the message is given up on.
_MAX_UNSTARTED_DELIVERIES = 10
_APPEND_TRIES = 6
_ABANDON_DELAY_S = 1.0

Disposition = Literal["completed", "failed", "retry", "duplicate", "poison", "abandoned"]

_log = logging.getLogger("tep.executor")


def output_limit(log: EventLog, config: ExecutorConfig) -> int:
    """The largest output kept: the configured cap, bounded by what fits in one message."""
    message_limit = min(
        log.nc.max_payload or log.settings.max_msg_bytes, log.settings.max_msg_bytes
    )
    return min(config.max_output_bytes, message_limit - ENVELOPE_RESERVE_BYTES)


class _Heartbeat:
    """Tells JetStream every ``interval`` seconds that a message is still being worked on.

    Timer callbacks rather than a task: most attempts end long before the first beat.
    """

    def __init__(self, msg: Msg, interval: float) -> None:
        self._msg = msg
        self._interval = interval
        self._loop = asyncio.get_running_loop()
        self._pending: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(interval, self._beat)

    def _beat(self) -> None:
        if self._pending is None or self._pending.done():
            self._pending = self._loop.create_task(self._send())
        self._timer = self._loop.call_later(self._interval, self._beat)

    async def _send(self) -> None:
        try:
            await self._msg.in_progress()
        except Exception as exc:
            _log.debug("heartbeat failed: %s", exc)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class AttemptRunner:
    """Runs attempts for one queue's deliveries.

    Args:
        log: where events are appended.
        config: the executor's settings.
        resolve_handler: action type -> handler, or ``None`` for an unknown type.
        ack_wait_s: the consumer's ack wait; heartbeats go out every third of it.
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
        self.heartbeat_s = max(ack_wait_s / 3, 0.05)
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
        except asyncio.CancelledError:
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
            finished, last_started = await self._history(request)
            if finished:
                await msg.ack()
                _log.info("request redelivered after its outcome: acked", extra=_ids(request))
                return "duplicate"
            attempt = last_started + 1
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
        # Plain asyncio on this per-message path: anyio's backend lookup on every primitive
        # cost about a tenth of the executor's CPU under load.
        started = asyncio.create_task(
            self._append(started_event(request, attempt, self.config.executor_id))
        )
        heartbeat = _Heartbeat(msg, self.heartbeat_s)
        try:
            began = time.perf_counter()
            scope = SecretScope(self.env)
            result = await self._call(request, scope, timeout, resolve=b"{{" in msg.data)
            duration_ms = (time.perf_counter() - began) * 1000
            await started
            outcome = self._outcome(request, attempt, result, duration_ms, scope)
            outcome = await self._record_outcome(outcome, request)
        finally:
            heartbeat.stop()
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

    async def _call(
        self, request: ActionExecuteRequested, scope: SecretScope, timeout: float, *, resolve: bool
    ) -> HandlerResult | ActionError:
        handler = self.resolve_handler(request.action_type)
        if handler is None:
            return NonRetryableError(
                f"no handler for action type {request.action_type!r} on queue "
                f"{self.config.queue!r}",
                code=ErrorCode.UNKNOWN_ACTION_TYPE,
            )
        try:
            if resolve:
                request = _with_secrets(request, scope)
            async with asyncio.timeout(timeout):
                value = await handler(request)
        except Exception as exc:
            return error_for_exception(exc, timeout_s=timeout)
        if isinstance(value, HandlerResult):
            return value
        return HandlerResult(output=value)

    def _outcome(
        self,
        request: ActionExecuteRequested,
        attempt: int,
        result: HandlerResult | ActionError,
        duration_ms: float,
        scope: SecretScope,
    ) -> ActionCompleted | ActionAttemptFailed | ActionFailed:
        if isinstance(result, HandlerResult):
            try:
                output = scope.scrub(output_from_value(result.output))
                size = encoded_size(output)
                if size > self.output_limit:
                    raise NonRetryableError(
                        f"output is {size} bytes; the limit is {self.output_limit} bytes",
                        code=ErrorCode.OUTPUT_TOO_LARGE,
                    )
            except ActionError as exc:
                result = exc
            else:
                return completed_event(
                    request,
                    attempt,
                    output,
                    duration_ms=duration_ms,
                    status_code=result.status_code,
                    headers=scope.scrub(dict(result.headers)),
                )
        if scope.active:
            result.message = scope.scrub_text(result.message)
        return failure_event(request, attempt, result, rng=self.rng)

    async def _record_outcome(
        self,
        outcome: ActionCompleted | ActionAttemptFailed | ActionFailed,
        request: ActionExecuteRequested,
    ) -> ActionCompleted | ActionAttemptFailed | ActionFailed:
        try:
            await self._append(outcome)
        except EventTooLargeError as exc:
            if not isinstance(outcome, ActionCompleted):
                raise
            outcome = failure_event(
                request,
                outcome.attempt,
                NonRetryableError(str(exc), code=ErrorCode.OUTPUT_TOO_LARGE),
                rng=self.rng,
            )
            await self._append(outcome)
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
        await self._append(failed)
        await msg.ack()
        _log.warning("attempts exhausted by interruptions", extra=_ids(request))
        return "failed"

    async def _history(self, request: ActionExecuteRequested) -> tuple[bool, int]:
        """(whether the action has an outcome, the last attempt that was started)."""
        e, a = request.execution_id, request.action_id
        completed, failed, started = await asyncio.gather(
            self.log.last_on(action_subject(ActionCompleted, e, a)),
            self.log.last_on(action_subject(ActionFailed, e, a)),
            self.log.last_on(action_subject(ActionStarted, e, a)),
        )
        last_started = 0
        if started is not None:
            event = decode_event(started.data)
            if isinstance(event, ActionStarted):
                last_started = event.attempt
        return completed is not None or failed is not None, last_started

    async def _append(self, event: Event) -> None:
        delay = 0.05
        for tries in range(1, _APPEND_TRIES + 1):
            try:
                await self.log.append(event)
                return
            except EventTooLargeError:
                raise
            except Exception as exc:
                if tries == _APPEND_TRIES:
                    raise
                _log.warning(
                    "append of %s failed (%s), retrying",
                    type(event).__name__,
                    exc,
                    extra={"execution_id": event.execution_id},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _reject(self, msg: Msg, reason: str) -> None:
        """A message that can never be processed: keep it in the dead-letter stream, stop it."""
        try:
            await publish_dead_letter(
                self.log.js,
                role="executor",
                stream=self.log.stream,
                subject=msg.subject,
                sequence=msg.metadata.sequence.stream,
                data=msg.data,
                reason=reason,
            )
        except Exception as exc:
            _log.error("dead-letter publish failed: %s", exc)
            return  # leave it unacked: it comes back, and we try again
        await msg.term()


async def _settle(action: Awaitable[None]) -> None:
    """Ack/nak without letting a broken connection or a slow server hold us up."""
    try:
        await asyncio.wait_for(action, 2.0)
    except Exception as exc:
        _log.debug("could not settle a message: %s", exc)


def _with_secrets(request: ActionExecuteRequested, scope: SecretScope) -> ActionExecuteRequested:
    """The request with ``{{secrets.*}}`` substituted in its request spec and input."""
    spec = request.request
    if spec is not None:
        resolved: Any = scope.resolve(msgspec.to_builtins(spec))
        spec = msgspec.convert(resolved, RequestSpec)
    return msgspec.structs.replace(request, request=spec, input=scope.resolve(request.input))


def _ids(request: ActionExecuteRequested) -> dict[str, str]:
    return {"execution_id": request.execution_id, "action_id": request.action_id}
