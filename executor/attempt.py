"""One delivery of an ``action.execute.requested`` message: claim the action, call, record, settle.

Every delivery, first or redelivered alike (a consumer's delivery count does not survive every
server restart; the log does):

1. **Position.** Read the last event on the action's filter and decide with
   :func:`executor.position.next_step`: an action that already ended is acked without a call;
   an interrupted attempt starts again while the interruption budget lasts, else the action
   fails with ``interrupted`` and the request is dead-lettered.
2. **Claim.** Append ``action.started`` guarded on that position. If the guard fails another
   delivery got there first: the request is acked if the action has ended meanwhile, else
   dropped unsettled (an ack or nak would act on the other executor's delivery).
3. **Call** the handler under the attempt's time limit, heartbeating the message. The call is
   aborted when the action is cancelled (acked, nothing more recorded) or when a newer
   delivery in this process started the action again.
4. **Outcome**, guarded on our start, so an action's outcome is stored once: a delivery that
   lost its claim meanwhile (paused or cut off past the ack wait while another executor took
   over) learns it here and records nothing. Then ``action.completed`` / ``action.failed`` ->
   ack; ``action.attempt.failed`` -> nak with the backoff as delay (JetStream schedules the
   retry).

A message is acked only after the action's end is durably in the log.

A first delivery (the common case: a request just dispatched) skips the read of step 1: it
claims attempt 1 guarded on "no event on the action's filter", which is what the read finds
for a new action, and saves a round trip. The guard, not the delivery count, decides: when the
action has any event the log refuses the claim, and the delivery reads the position from the
leader and goes on from step 1.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from typing import Literal, NamedTuple, overload

import anyio
from nats.aio.msg import Msg

from eventstore.codec import decode_event
from eventstore.error_codes import ErrorCode
from eventstore.errors import ConcurrencyError, EventDecodeError, EventTooLargeError
from eventstore.events import ActionCompleted, ActionExecuteRequested, ActionStarted, Event
from eventstore.jetstream.heartbeats import Heartbeats
from eventstore.jetstream.log import EventLog
from eventstore.jetstream.payloads import PayloadStore, store_large_output
from eventstore.records import Guard
from executor.action_log import (
    append_outcome,
    append_retrying,
    failed_attempt,
    guard_after,
    read_position,
)
from executor.attempt_trace import attempt_span, delivery_trace, traceparent
from executor.config import ExecutorConfig
from executor.dispositions import (
    Disposition,
    aborted,
    action_ids,
    already_settled,
    leader_position,
    leave_to_holder,
    lost,
    settle_outcome,
)
from executor.errors import NonRetryableError
from executor.handler_call import Outcome, call_handler, outcome_event, output_limits
from executor.handlers import AttemptInfo, Handler, set_current_attempt
from executor.holders import Holder, Holders
from executor.metrics import ACTION_RETRIES
from executor.outcome import (
    attempt_timeout_s,
    failure_event,
    max_attempts,
    started_event,
)
from executor.position import ActionPosition, GiveUp, Settled, Start, next_step
from executor.probe import takeover_wait_s
from executor.request import idempotency_key
from executor.secret_grants import SecretGrants
from executor.secrets import SecretScope
from executor.settle import fail_interrupted, reject, settle

__all__ = ["AttemptRunner"]

_ABANDON_DELAY_S = 1.0
_OUTCOME_PATIENCE_S = 10.0
_PROBE_TIMEOUT_S = 1.0

_NEW_ACTION = Start(attempt=1, interruption=0, after=0)

_log = logging.getLogger("tep.executor")


class _Refused(NamedTuple):
    """The log refused our claim: the action stands at ``position`` (``None``: unreadable)."""

    position: ActionPosition | None


class AttemptRunner:
    """Runs attempts for one queue's deliveries.

    Args:
        log: where events are appended.
        config: the executor's settings.
        resolve_handler: action type -> handler, or ``None`` for an unknown type.
        ack_wait_s: the consumer's ack wait; heartbeats go out every third of it. Run
            :attr:`heartbeats` (``heartbeats.run``) in a task beside the attempts.
        env: where ``TEP_SECRET_*`` values and the ``{{env.NAME}}`` variables the config
            allows are read (default: the process environment); its grants
            (``TEP_SECRET_<NAME>_HOSTS``, the secrets file) are read once, here.
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
        self.ack_wait_s = ack_wait_s
        self.heartbeats = Heartbeats(max(ack_wait_s / 3, 0.05))
        self.holders = Holders()
        self.env = env
        self.grants = SecretGrants.from_env(os.environ if env is None else env)
        self.allowed_env = frozenset(config.allow_env)
        self.rng = rng
        self.limits = output_limits(log, config)
        self.payloads = PayloadStore(log.nc, log.settings, limits=self.limits)
        self._retries = ACTION_RETRIES.labels(config.queue)

    def cancel_action(self, execution_id: str, action_id: str) -> bool:
        """The action was cancelled: abort its attempt in this process, if one runs."""
        return self.holders.abort(execution_id, action_id, "cancelled")

    async def run(self, msg: Msg) -> Disposition:
        """Handle one delivery; returns what became of it.

        Exceptions other than cancellation escape only when the log cannot be written; the
        message is then left unacknowledged and JetStream redelivers it after the ack wait.
        What it appends continues the request's trace (its ``traceparent``).
        """
        with delivery_trace(msg):
            return await self._run(msg)

    async def _run(self, msg: Msg) -> Disposition:
        try:
            event = decode_event(msg.data)
        except EventDecodeError as exc:
            await reject(self.log, msg, str(exc))
            return "poison"
        if not isinstance(event, ActionExecuteRequested):
            await reject(
                self.log, msg, f"expected action.execute.requested, got {type(event).__name__}"
            )
            return "poison"
        request = event
        # From the start: a slow read of the log must not let the request go to another
        # executor, and a nak below needs to know whether this delivery is still ours.
        self.heartbeats.add(msg)
        try:
            return await self._deliver(msg, request)
        except anyio.get_cancelled_exc_class():
            # Stopping: hand the request back to the queue for another executor.
            if self.heartbeats.fresh(msg):
                await settle(msg.nak())
            raise
        except Exception:
            # The log could not be read or written: hand the request back for a retry soon.
            _log.exception("delivery abandoned: the log is unavailable", extra=action_ids(request))
            if self.heartbeats.fresh(msg):
                await settle(msg.nak(delay=_ABANDON_DELAY_S))
            return "abandoned"
        finally:
            self.heartbeats.discard(msg)

    async def _deliver(self, msg: Msg, request: ActionExecuteRequested) -> Disposition:
        if self.holders.running(request.execution_id, request.action_id):
            # Back after this process stalled past the ack wait: the attempt still running
            # here keeps the message alive and settles it.
            _log.info("request redelivered while its attempt runs here", extra=action_ids(request))
            return "lost"
        position: ActionPosition | None = None
        if _first_delivery(msg):
            tried = await self._attempt(msg, request, _NEW_ACTION, new=True)
            if not isinstance(tried, _Refused):
                return tried
            position = tried.position
        if position is None:
            position = await read_position(self.log, request.execution_id, request.action_id)
        step = next_step(position, max_interruptions=self.config.max_interruptions)
        if isinstance(step, Settled):
            return await already_settled(msg, request, step)
        interrupted = isinstance(step, GiveUp) or step.interruption > 0
        if interrupted and isinstance(position.last, ActionStarted):
            wait = await takeover_wait_s(
                self.log.nc,
                position.last,
                own_id=self.config.executor_id,
                limit_s=attempt_timeout_s(request, self.config.default_timeout_s),
                timeout_s=min(_PROBE_TIMEOUT_S, self.ack_wait_s / 2),
            )
            if wait:
                return await leave_to_holder(msg, request, wait, ack_wait_s=self.ack_wait_s)
        if isinstance(step, GiveUp):
            return await self._give_up(msg, request, step)
        return await self._attempt(msg, request, step)

    @overload
    async def _attempt(
        self, msg: Msg, request: ActionExecuteRequested, step: Start, *, new: Literal[False] = ...
    ) -> Disposition: ...

    @overload
    async def _attempt(
        self, msg: Msg, request: ActionExecuteRequested, step: Start, *, new: Literal[True]
    ) -> Disposition | _Refused: ...

    async def _attempt(
        self, msg: Msg, request: ActionExecuteRequested, step: Start, *, new: bool = False
    ) -> Disposition | _Refused:
        """Claim and run ``step``. ``new``: the claim assumed an action with no event yet; its
        refusal is returned (the caller decides again) instead of meaning the action is lost."""
        with attempt_span(request, step.attempt, self.config.queue) as span:
            result = await self._claim_and_call(msg, request, step)
            if isinstance(result, _Refused) and not new:
                result = await lost(self.log, msg, request, result.position)
            span.ended("refused" if isinstance(result, _Refused) else result)
        return result

    async def _claim_and_call(
        self, msg: Msg, request: ActionExecuteRequested, step: Start
    ) -> Disposition | _Refused:
        started = started_event(
            request, step.attempt, self.config.executor_id, interruption=step.interruption
        )
        try:
            claim = await append_retrying(self.log, started, guard=guard_after(started, step.after))
            claimed_at = claim.sequence
        except ConcurrencyError:
            # Refused, unless what stands there is this very start (an earlier try of ours
            # stored it, and the server could not say where).
            position = await leader_position(self.log, request)
            if position is None or not _same(position.last, started):
                return _Refused(position)
            claimed_at = position.sequence
        if step.interruption and await self._ended_meanwhile(request, step.attempt):
            return "lost"
        holder = self.holders.hold(request.execution_id, request.action_id)
        try:
            outcome = await self._call(request, step.attempt, holder, b"{{" in msg.data)
            if outcome is None:
                return await aborted(msg, request, holder)
            try:
                outcome = await self._record_outcome(
                    outcome, request, guard_after(started, claimed_at)
                )
            except ConcurrencyError:
                return await lost(self.log, msg, request)
        finally:
            self.holders.release(holder)
        return await settle_outcome(msg, request, outcome, on_retry=self._retries.inc)

    async def _ended_meanwhile(self, request: ActionExecuteRequested, attempt: int) -> bool:
        """Whether the attempt we started again had ended after all: its holder recorded its
        failure between our read and our start, and its nak schedules the next attempt."""
        if await failed_attempt(self.log, request.execution_id, request.action_id) < attempt:
            return False
        _log.info(
            "attempt %d ended just before it was started again: left to its retry",
            attempt,
            extra=action_ids(request),
        )
        return True

    async def _call(
        self, request: ActionExecuteRequested, attempt: int, holder: Holder, secrets: bool
    ) -> Outcome | None:
        """Run the handler; the outcome event, or ``None`` when the holder was aborted.

        ``secrets``: whether the request mentions any template at all (``{{secrets.*}}``
        and ``{{env.*}}`` are resolved now).
        """
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
                traceparent=traceparent(),
            )
        )
        scope = SecretScope(self.env, self.grants, allowed_env=self.allowed_env)
        began = time.perf_counter()
        with holder.scope:
            result = await call_handler(
                self.resolve_handler(request.action_type),
                request,
                scope,
                timeout_s=timeout,
                queue=self.config.queue,
                resolve_secrets=secrets,
                payloads=self.payloads,
            )
        if holder.scope.cancelled_caught or holder.reason is not None:
            return None
        outcome = outcome_event(
            request,
            attempt,
            result,
            duration_ms=(time.perf_counter() - began) * 1000,
            scope=scope,
            max_output_bytes=self.limits.max_bytes,
            rng=self.rng,
        )
        # Above the inline limit the output goes to the payload bucket first; the event
        # carries its reference.
        return await store_large_output(self.payloads, outcome)

    async def _record_outcome(
        self, outcome: Outcome, request: ActionExecuteRequested, guard: Guard
    ) -> Outcome:
        """Append the outcome under ``guard``.

        Raises:
            ConcurrencyError: the guard did not hold, or the outcome stored under the same id
                is another executor's (not an earlier try of ours).
        """
        try:
            await append_outcome(self.log, outcome, guard, patience_s=_OUTCOME_PATIENCE_S)
        except EventTooLargeError as exc:
            if not isinstance(outcome, ActionCompleted):
                raise
            outcome = failure_event(
                request,
                outcome.attempt,
                NonRetryableError(str(exc), code=ErrorCode.OUTPUT_TOO_LARGE),
                rng=self.rng,
            )
            await append_outcome(self.log, outcome, guard, patience_s=_OUTCOME_PATIENCE_S)
        return outcome

    async def _give_up(
        self, msg: Msg, request: ActionExecuteRequested, step: GiveUp
    ) -> Disposition:
        try:
            await fail_interrupted(self.log, msg, request, step, patience_s=_OUTCOME_PATIENCE_S)
        except ConcurrencyError:
            return await lost(self.log, msg, request)
        return "failed"


def _first_delivery(msg: Msg) -> bool:
    """Whether the consumer delivers ``msg`` for the first time (a hint: the count does not
    survive every server restart, so the claim's guard still decides)."""
    try:
        return msg.metadata.num_delivered == 1
    except Exception:  # not a JetStream delivery (tests, a hand-made message)
        return False


def _same(stored: Event | None, event: Event) -> bool:
    return stored is not None and stored.event_id == event.event_id
