"""One consumed message of the orchestrator: load state -> fold -> decide -> append -> ack.

The execution's state comes from the cache or, on a miss, from its history in the log; the
event is folded in; :func:`orchestrator.decide.decide` returns decisions; they are appended
atomically with their guards (:mod:`orchestrator.guards`); the message is acknowledged only
after that. A guard conflict (another writer got there first) reloads the state from the log
and decides again.

Where a decision looks into a value stored by reference (a template or condition reaching into
a large output or input), ``decide`` asks for it (:mod:`eventstore.payload_reading`): the
processor fetches it from the payload bucket, keeps it in a cache, and decides again. A
decision carrying a value above the inline limit (an output, a request body built from large
upstream values, a child plan's input) stores it first and is appended with its reference.

No message is retried forever. One no decision can come from (undecodable, on the wrong
subject) and one whose processing raises anything but a failure of NATS (a ``RecursionError``
from a hostile payload, a decision too large to store, a bug) go to the dead-letter stream at
once, with the reason. A failure of NATS (timeouts, no answer, a lost connection, conflicts
that do not settle) naks the message with a growing delay, until ``max_deliveries``; then it
is dead-lettered too. Only the first ``plan.submitted`` of an execution is acted on: a second
one, published around the log's guard, is acknowledged and ignored.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable
from datetime import datetime
from functools import partial

from anyio.abc import TaskGroup
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError

from eventstore import fold
from eventstore.action_keys import parse_action_key
from eventstore.config import TepSettings
from eventstore.errors import ConcurrencyError, EventDecodeError, NatsUnavailableError, TepError
from eventstore.events import (
    ActionCompleted,
    ActionExecuteRequested,
    ActionFailed,
    ActionStarted,
    ActionWaiting,
    Event,
    ExecutionCancelled,
    ExecutionCompleted,
    ExecutionFailed,
    PlanSubmitted,
)
from eventstore.jetstream.deadletter import dead_letter
from eventstore.jetstream.log import EventLog
from eventstore.jetstream.payloads import PayloadStore, run_with_payloads, store_large_values
from eventstore.metrics import count_consumed
from eventstore.payload_reading import PayloadCache, PayloadReader
from eventstore.records import RawRecord, RecordedEvent
from eventstore.runs import current_action
from eventstore.state import ExecutionState
from eventstore.subjects import PLAN_SUBMITTED_PREFIX, event_type_of, orchestrator_subject_type
from eventstore.tracing import reset_trace, set_trace, trace_from_headers
from orchestrator.cache import StateCache
from orchestrator.config import OrchestratorConfig
from orchestrator.deadline import deadline_at, schedule_deadline
from orchestrator.decide import decide
from orchestrator.guards import guard_for
from orchestrator.input_check import checked_input
from orchestrator.intake import UnroutableMessageError, admit_plan
from orchestrator.spans import decided, execution_ended, outcome_folded
from orchestrator.subplan_service import SubplanService
from orchestrator.subplans import may_be_child
from orchestrator.timers import schedule_wait_timer

__all__ = [
    "EventProcessor",
    "execution_of",
    "note_wait_sequence",
    "outcome_of_unseen_dispatch",
    "settle",
]

_log = logging.getLogger("tep.orchestrator")

RELOADS_LATE = "reloads_late"
RELOADS_UNSEEN = "reloads_unseen"
RELOADS_UNCACHED = "reloads_uncached"
"""Counters in the orchestrator's stats: states folded again from the log because an event
came late for the cached state, was the outcome of a dispatch the cached state had not seen,
or found nothing cached (evicted, dropped after a conflict or an error, or another process's
until now)."""
_ENDS = (ExecutionCompleted, ExecutionFailed, ExecutionCancelled)
_RETRY_DELAY_S = 1.0
_MAX_RETRY_DELAY_S = 60.0


def execution_of(subject: str) -> str | None:
    """The execution id in the subject of an event the orchestrator consumes."""
    routed = orchestrator_subject_type(subject)
    return None if routed is None else routed[1]


def _deliveries(msg: Msg) -> int:
    try:
        return int(msg.metadata.num_delivered)
    except Exception:
        return 1


def _retry_delay(deliveries: int) -> float:
    """1 s, doubling with each delivery up to a minute: an outage is waited out, not hammered."""
    return float(min(_RETRY_DELAY_S * 2 ** min(deliveries - 1, 6), _MAX_RETRY_DELAY_S))


def is_transient(exc: BaseException) -> bool:
    """Whether retrying may help: NATS did not answer or refused for now, or writers raced.

    The adapter reports a missing answer as a plain :class:`TepError`; its subclasses say
    something about the data (too large, undecodable...), which a retry does not change.
    """
    return (
        isinstance(
            exc, NatsError | TimeoutError | OSError | ConcurrencyError | NatsUnavailableError
        )
        or type(exc) is TepError
    )


async def settle(action: Awaitable[None], msg: Msg) -> None:
    """Nak or term without failing: if it is lost, the message comes back after ack_wait."""
    try:
        await action
    except Exception as exc:
        _log.warning("could not settle a message: %s", exc, extra={"subject": msg.subject})


class _Poison(TepError):
    """A message no decision can come from; it goes to the dead-letter stream."""


class EventProcessor:
    """Handles the leader's messages, one at a time per execution (the caller's lanes).

    Args:
        log: the event log.
        settings: shared settings (stream, plan limits).
        config: the orchestrator's settings.
        cache: execution states kept between messages.
        stats: counters updated in place (``processed``, ``appended``, ``conflicts``,
            ``dead_lettered``, ``retried``).

    Attributes:
        background: where follow-up work that must not delay an ack runs (purging the
            deadline of an ended execution); set while leading.
    """

    def __init__(
        self,
        log: EventLog,
        settings: TepSettings,
        config: OrchestratorConfig,
        cache: StateCache,
        stats: dict[str, int],
    ) -> None:
        self.log = log
        self.js = log.js
        self.settings = settings
        self.config = config
        self.cache = cache
        self.stats = stats
        self.background: TaskGroup | None = None
        self.payloads = PayloadStore(log.nc, settings)
        self.subplans = SubplanService(log, settings, payloads=self.payloads)
        self.payload_cache = PayloadCache()

    async def handle(self, msg: Msg) -> None:
        """Process ``msg`` and settle it (ack, nak with a delay, or dead-letter); never raises."""
        execution_id = execution_of(msg.subject)
        where = {"execution_id": execution_id, "subject": msg.subject}
        count_consumed("orchestrator", event_type_of(msg.subject))
        # Decisions on this event continue its trace (each a new span of it).
        traced = set_trace(trace_from_headers(msg.headers))
        try:
            await self._process(msg, execution_id)
        except _Poison as exc:
            await self._dead_letter(msg, str(exc), "unprocessable")
        except Exception as exc:
            if execution_id is not None:
                self.cache.drop(execution_id)
            reason = f"{type(exc).__name__}: {exc}"
            if not is_transient(exc):
                # Retrying cannot help: the same input fails the same way. (No traceback for a
                # recursion: thousands of frames saying the same.)
                trace = None if isinstance(exc, RecursionError) else exc
                _log.error("event cannot be processed: %s", reason, exc_info=trace, extra=where)
                await self._dead_letter(msg, f"processing failed: {reason}", "processing_failed")
                return
            deliveries = _deliveries(msg)
            if deliveries >= self.config.max_deliveries:
                await self._dead_letter(
                    msg, f"gave up after {deliveries} deliveries: {reason}", "retries_exhausted"
                )
                return
            _log.warning(
                "event not processed (delivery %d); it will be retried: %s",
                deliveries,
                reason,
                extra=where,
            )
            self.stats["retried"] += 1
            await settle(msg.nak(delay=_retry_delay(deliveries)), msg)
        finally:
            reset_trace(traced)

    async def _process(self, msg: Msg, execution_id: str | None) -> None:
        if execution_id is None:
            raise _Poison(f"no execution id in subject {msg.subject}")
        meta = msg.metadata
        if msg.subject.startswith(PLAN_SUBMITTED_PREFIX):
            if not await self._first_on_subject(msg):
                _log.warning(
                    "a second plan.submitted (sequence %d) is ignored: the execution exists",
                    meta.sequence.stream,
                    extra={"execution_id": execution_id},
                )
                self.stats["processed"] += 1
                await msg.ack()
                return
            try:
                admitted = admit_plan(
                    msg.subject,
                    msg.data,
                    limits=self.settings.plan_limits,
                )
            except UnroutableMessageError as exc:
                raise _Poison(str(exc)) from exc
            if isinstance(admitted, PlanSubmitted):
                admitted = await checked_input(self.payloads, admitted, msg.data)
            if isinstance(admitted, ExecutionFailed):
                await self._reject_plan(msg, admitted)
                return
            event: Event = admitted
        else:
            event = self._decode(msg, execution_id)
        await self._decide(RecordedEvent(meta.sequence.stream, msg.subject, event), meta)
        self.stats["processed"] += 1
        await msg.ack()

    async def _first_on_subject(self, msg: Msg) -> bool:
        """Whether ``msg`` is the oldest message on its subject (one direct get)."""
        sequence = msg.metadata.sequence.stream
        try:
            first = await self.js.get_msg(
                self.settings.stream, seq=1, subject=msg.subject, next=True, direct=True
            )
        except NotFoundError:
            return True  # removed meanwhile: nothing older is there either
        return int(first.seq or sequence) >= sequence

    @staticmethod
    def _decode(msg: Msg, execution_id: str) -> Event:
        # The one rule every reader applies: an event is believed only on its own subject.
        try:
            event = RawRecord(msg.metadata.sequence.stream, msg.subject, msg.data).decode().event
        except EventDecodeError as exc:
            raise _Poison(str(exc)) from exc
        routed = orchestrator_subject_type(msg.subject)
        if routed is None or not isinstance(event, routed[0]) or event.execution_id != execution_id:
            raise _Poison(
                f"a {event.__struct_config__.tag} event of execution {event.execution_id} "
                f"on subject {msg.subject}"
            )
        return event

    async def _reject_plan(self, msg: Msg, failure: ExecutionFailed) -> None:
        _log.warning(
            "invalid plan rejected: %s",
            failure.error.message,
            extra={"execution_id": failure.execution_id},
        )
        # A conflict means the execution already ended (this message was handled before).
        with contextlib.suppress(ConcurrencyError):
            await self.log.append(failure, guard=guard_for(failure))
        self.stats["processed"] += 1
        await msg.ack()

    async def _decide(self, record: RecordedEvent, meta: Msg.Metadata) -> None:
        began = time.perf_counter()
        execution_id = record.event.execution_id
        if isinstance(record.event, _ENDS) and not may_be_child(execution_id):
            return  # an execution's end is consumed for a sub-plan's parent only
        if self.cache.after_end(record.event):
            return  # stored with the end (a for-each's or a wait's outcome): nothing follows
        for round_ in range(self.config.max_conflict_rounds):
            # After a conflict the log knows better than a first delivery: always read it.
            first_delivery = meta.num_delivered == 1 and round_ == 0
            state = await self._state_with(record, first_delivery=first_delivery)
            if round_ == 0:
                outcome_folded(state, record.event)
            if (
                state is not None
                and state.parent is not None
                and state.terminal
                and isinstance(record.event, _ENDS)
            ):
                # A sub-plan's child ended: its parent's action gets the outcome.
                self._finished(state)
                await self.subplans.child_ended(state, record.event.event_id)
                return
            subplans = await self.subplans.context_for(state)
            # Templates may look into values stored by reference: fetched, then decided again.
            decisions = await run_with_payloads(
                self.payloads,
                PayloadReader(self.payload_cache),
                partial(decide, state, record.event, now=meta.timestamp, subplans=subplans),
            )
            if state is None or not decisions:
                return
            decisions = [await store_large_values(self.payloads, d) for d in decisions]
            if isinstance(record.event, PlanSubmitted) and any(
                isinstance(d, ActionExecuteRequested | ActionWaiting | ActionStarted)
                for d in decisions
            ):
                await self._prepare(state, meta.timestamp)
            await self._schedule_timers(decisions)
            guards = [guard_for(d, state) for d in decisions]
            try:
                results = await self.log.append_atomic(decisions, guards=guards)
            except ConcurrencyError:
                # Someone else decided first: start over from the log.
                self.stats["conflicts"] += 1
                self.cache.drop(execution_id)
                continue
            self.stats["appended"] += len(decisions)
            decided(len(decisions), meta.timestamp, began)
            for decision, stored in zip(decisions, results, strict=True):
                if decision.execution_id != execution_id:
                    continue  # a sub-plan's child: an execution of its own
                fold.apply_event(state, decision)
                if isinstance(decision, ActionWaiting):
                    note_wait_sequence(state, decision.action_id, stored.sequence)
            if state.terminal:
                execution_ended(state)
                self._finished(state)
            return
        _log.warning(
            "still conflicting after %d rounds; retrying later",
            self.config.max_conflict_rounds,
            extra={"execution_id": execution_id},
        )
        raise ConcurrencyError(execution_id, 0)

    async def _state_with(
        self, record: RecordedEvent, *, first_delivery: bool
    ) -> ExecutionState | None:
        """The execution's state with ``record`` folded in (cached, else from the log)."""
        execution_id = record.event.execution_id
        state = self.cache.get(execution_id)
        if state is not None and (
            record.sequence <= state.last_sequence
            or outcome_of_unseen_dispatch(state, record.event)
        ):
            # A late delivery (a replica held it, then gave it back): the cached state may have
            # moved past it without it, and the fold would ignore it. Or an outcome of a
            # dispatch the cache never saw (another process decided meanwhile). The log has
            # both in place.
            self._count(RELOADS_LATE if record.sequence <= state.last_sequence else RELOADS_UNSEEN)
            state = await self._load(execution_id)
        if state is None:
            if isinstance(record.event, PlanSubmitted) and first_delivery:
                # First delivery of a new plan: nothing can have been decided for it yet.
                # (Were it wrong, the guards would turn the decision into a reload.)
                state = None
            else:
                self._count(RELOADS_UNCACHED)
                state = await self._load(execution_id)
        state = fold.apply(state, record)
        if state is not None and not state.terminal:
            self.cache.put(execution_id, state)
        return state

    def _count(self, key: str) -> None:
        self.stats[key] = self.stats.get(key, 0) + 1

    async def _load(self, execution_id: str) -> ExecutionState | None:
        # What is no event of the execution is skipped (and logged) by the reader.
        return fold.fold(await self.log.read_execution(execution_id))

    async def _prepare(self, state: ExecutionState, submitted_at: datetime) -> None:
        """Before the first dispatch: the deadline, counted from the moment the log stored the
        plan (the same for every replica and every retry). A plan's queue limits need nothing
        here: :func:`~orchestrator.decide.decide` enforces them within the execution."""
        plan = state.plan
        assert plan is not None
        if plan.timeout_s is not None:
            at = deadline_at(submitted_at, plan.timeout_s)
            await schedule_deadline(self.js, state.execution_id, at)

    async def _schedule_timers(self, decisions: list[Event]) -> None:
        """Store the timers of the waits these decisions start, before the decisions: a crash
        in between leaves a timer that fires into nothing, never a wait without its timer."""
        ended = {d.action_id for d in decisions if isinstance(d, ActionCompleted | ActionFailed)}
        for decision in decisions:
            if isinstance(decision, ActionWaiting) and decision.action_id not in ended:
                await schedule_wait_timer(self.js, decision)

    def _finished(self, state: ExecutionState) -> None:
        self.cache.end(state.execution_id)

    async def _dead_letter(self, msg: Msg, reason: str, code: str) -> None:
        try:
            await dead_letter(
                self.js,
                msg,
                role="orchestrator",
                stream=self.settings.stream,
                reason=reason,
                reason_code=code,
                max_bytes=self.settings.max_msg_bytes,
            )
        except Exception as exc:
            _log.error("dead-letter publish failed: %s", exc, extra={"subject": msg.subject})
            await settle(msg.nak(delay=_RETRY_DELAY_S), msg)
            return
        self.stats["dead_lettered"] += 1


def note_wait_sequence(state: ExecutionState, key: str, sequence: int) -> None:
    """Where our own ``action.waiting`` landed: the guard of the wait's outcome."""
    action_id = current_action(state, key)
    action = state.actions[action_id] if action_id is not None else None
    if action is not None and action.wait is not None:
        action.wait.sequence = sequence


def outcome_of_unseen_dispatch(state: ExecutionState, event: Event) -> bool:
    """Whether ``event`` is the outcome of an action ``state`` has not seen dispatched."""
    if not isinstance(event, ActionCompleted | ActionFailed):
        return False
    key = parse_action_key(event.action_id)
    if key is None or key.item is not None:
        return False
    action = state.actions.get(key.action_id)
    # Dispatched means pending until the executor's action.started, which is not consumed here.
    return action is not None and action.status == "pending" and action.dispatched_at is None
