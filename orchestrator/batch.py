"""Outcomes of one execution that wait in its lane together, decided as one.

While the orchestrator works on one event of an execution, its executors go on reporting: a
for-each at concurrency 200 has up to 200 outcomes queued behind the one in hand. Deciding
them one at a time costs a round trip to the log each. :class:`LaneBatcher` takes the
``action.completed`` and ``action.failed`` messages at the head of an execution's lane (up to
``max_batch``) and, on one state, does for each in order what
:class:`~orchestrator.processor.EventProcessor` does for one: fold it in, decide, fold the
decisions in (the next message is decided on a state that includes them). Every decision then
goes into ONE atomic append, each with its guard and the trace of the event it answers, and
only after that is every message acknowledged.

Nothing is acknowledged before its decisions are stored, and they are stored all or none. A
crash in between leaves the decisions stored and the messages unacknowledged: they come back,
and deciding again on the log's state (deterministic ids, guards) stores nothing twice. A
guard conflict (another writer got there first) reloads the state from the log, which holds
every event of the batch, and decides the batch again; if it keeps conflicting, or anything
else fails, each message takes the single path, which knows how to retry, nak or dead-letter
it.

What the single path treats specially stays there: plan submissions (admission, the
deadline), an execution's end (for a sub-plan's parent), resumes and fired timers (guarded on
a wait's place in the log), cancel and retry requests. A message that does not decode ends the
batch before it (the single path dead-letters it), as does one delivered out of order.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from itertools import islice

import anyio
from nats.aio.msg import Msg

from eventstore import fold
from eventstore.errors import ConcurrencyError
from eventstore.events import ActionCompleted, ActionFailed, ActionWaiting, Event
from eventstore.jetstream.batch import MAX_BATCH
from eventstore.jetstream.payloads import run_with_payloads, store_large_values
from eventstore.metrics import count_consumed
from eventstore.payload_reading import PayloadReader
from eventstore.records import Guard, RecordedEvent
from eventstore.state import ExecutionState
from eventstore.subjects import event_type_of, orchestrator_subject_type
from eventstore.tracing import TraceContext, reset_trace, set_trace, trace_from_headers
from orchestrator.decide import decide
from orchestrator.guards import guard_for
from orchestrator.processor import EventProcessor, note_wait_sequence, settle
from orchestrator.spans import decided, execution_ended, outcome_folded

__all__ = ["LaneBatcher"]

_log = logging.getLogger("tep.orchestrator")

_BATCHED = (ActionCompleted, ActionFailed)
_ROUNDS = 3
"""Conflicting rounds of one batch before its messages take the single path."""
_DECISIONS = MAX_BATCH // 2
"""No further message joins a batch once it holds this many decisions: one message's
decisions (rarely more than a few) then still fit the server's atomic batch."""


@dataclass
class _Batch:
    """What deciding a batch produced: its decisions in append order, and for each its guard,
    the trace it continues and the message it answers (an index into the batch)."""

    decisions: list[Event] = field(default_factory=list)
    guards: list[Guard | None] = field(default_factory=list)
    traces: list[TraceContext | None] = field(default_factory=list)
    answering: list[int] = field(default_factory=list)


class LaneBatcher:
    """Settles the head of an execution's lane: a batch of outcomes, or one message.

    Args:
        processor: the single path, and the cache, stats, payloads and sub-plans both use.
        max_batch: the most messages decided together (1: every message alone).
        max_deciding: the most executions decided at once, over every partition served; the
            others' messages wait in their lanes.
    """

    def __init__(self, processor: EventProcessor, max_batch: int, max_deciding: int) -> None:
        self.processor = processor
        self.max_batch = max_batch
        self._deciding = anyio.CapacityLimiter(max_deciding)

    async def handle(self, lane: Iterable[Msg]) -> int:
        """Process and settle the first message(s) of ``lane``; how many. Never raises."""
        async with self._deciding:
            return await self._handle(lane)

    async def _handle(self, lane: Iterable[Msg]) -> int:
        msgs = list(islice(lane, self.max_batch))
        heads = self._heads(msgs)
        if len(heads) < 2:
            await self.processor.handle(msgs[0])
            return 1
        execution_id = heads[0].event.execution_id
        stats = self.processor.stats
        try:
            for round_ in range(_ROUNDS):
                try:
                    await self._decide_and_append(execution_id, heads, msgs, round_ == 0)
                except ConcurrencyError:
                    # Someone else decided first: decide the batch again on the log's state.
                    stats["conflicts"] += 1
                    self.processor.cache.drop(execution_id)
                    continue
                break
            else:
                _log.warning(
                    "a batch of %d outcomes still conflicts; deciding them one at a time",
                    len(heads),
                    extra={"execution_id": execution_id},
                )
                return await self._one_at_a_time(msgs[: len(heads)])
        except Exception as exc:
            _log.warning(
                "a batch of %d outcomes failed (%s: %s); deciding them one at a time",
                len(heads),
                type(exc).__name__,
                exc,
                extra={"execution_id": execution_id},
            )
            self.processor.cache.drop(execution_id)
            return await self._one_at_a_time(msgs[: len(heads)])
        for msg in msgs[: len(heads)]:
            count_consumed("orchestrator", event_type_of(msg.subject))
            await settle(msg.ack(), msg)
        stats["processed"] += len(heads)
        stats["batches"] += 1
        stats["batched"] += len(heads)
        return len(heads)

    def _heads(self, msgs: list[Msg]) -> list[RecordedEvent]:
        """The outcomes at the head of ``msgs`` that can be decided together, in order."""
        heads: list[RecordedEvent] = []
        for msg in msgs:
            routed = orchestrator_subject_type(msg.subject)
            if routed is None or routed[0] not in _BATCHED:
                break
            sequence = msg.metadata.sequence.stream
            if heads and sequence <= heads[-1].sequence:
                break  # a redelivery behind newer ones: the single path reloads for it
            try:
                event = self.processor._decode(msg, routed[1])
            except Exception:
                break  # the single path dead-letters it
            heads.append(RecordedEvent(sequence, msg.subject, event))
        return heads

    async def _one_at_a_time(self, msgs: list[Msg]) -> int:
        for msg in msgs:
            await self.processor.handle(msg)
        return len(msgs)

    async def _state(self, execution_id: str, first: RecordedEvent) -> ExecutionState | None:
        state = self.processor.cache.get(execution_id)
        if state is None or first.sequence <= state.last_sequence:
            # A miss, a conflict (dropped), or a late delivery the cached state moved past.
            state = await self.processor._load(execution_id)
        return state

    async def _decide_and_append(
        self, execution_id: str, heads: list[RecordedEvent], msgs: list[Msg], first_round: bool
    ) -> None:
        began = time.perf_counter()
        processor = self.processor
        if processor.cache.after_end(heads[0].event):
            return  # outcomes stored with the end: nothing follows
        state = await self._state(execution_id, heads[0])
        batch = _Batch()
        stored_at: list[datetime] = []
        for index, record in enumerate(heads):
            if len(batch.decisions) >= _DECISIONS:
                del heads[index:]  # the rest wait for the next batch
                break
            msg = msgs[index]
            meta = msg.metadata
            stored_at.append(meta.timestamp)
            trace = trace_from_headers(msg.headers)
            traced = set_trace(trace)
            try:
                state = fold.apply(state, record)
                if first_round:
                    outcome_folded(state, record.event)
                decisions = await self._decide(state, record, meta)
            finally:
                reset_trace(traced)
            if state is None or not decisions:
                continue
            for decision in decisions:
                batch.decisions.append(decision)
                batch.guards.append(guard_for(decision, state))
                batch.traces.append(trace)
                batch.answering.append(index)
            for decision in decisions:
                if decision.execution_id == execution_id:  # not a sub-plan's child
                    fold.apply_event(state, decision)
        if batch.decisions:
            results = await processor.log.append_atomic(
                batch.decisions, guards=batch.guards, traces=batch.traces
            )
            processor.stats["appended"] += len(batch.decisions)
            for index, count in sorted(Counter(batch.answering).items()):
                decided(count, stored_at[index], began)
            for decision, stored in zip(batch.decisions, results, strict=True):
                if isinstance(decision, ActionWaiting) and decision.execution_id == execution_id:
                    assert state is not None
                    note_wait_sequence(state, decision.action_id, stored.sequence)
        if state is None:
            return
        if state.terminal:
            if batch.decisions:
                execution_ended(state)  # this batch ended it
            processor._finished(state)
        else:
            processor.cache.put(execution_id, state)

    async def _decide(
        self, state: ExecutionState | None, record: RecordedEvent, meta: Msg.Metadata
    ) -> list[Event]:
        """The decisions on one outcome, as the single path takes them: registry plans of
        sub-plans looked up, values by reference fetched, large values stored, timers set."""
        processor = self.processor
        subplans = await processor.subplans.context_for(state)
        decisions = await run_with_payloads(
            processor.payloads,
            PayloadReader(processor.payload_cache),
            partial(decide, state, record.event, now=meta.timestamp, subplans=subplans),
        )
        if state is None or not decisions:
            return []
        decisions = [await store_large_values(processor.payloads, d) for d in decisions]
        await processor._schedule_timers(decisions)
        return decisions
