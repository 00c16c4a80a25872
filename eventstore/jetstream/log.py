"""The event log on JetStream: append (idempotent, optimistic, pipelined, atomic), read, replay.

Every event is published with ``Nats-Msg-Id: <event_id>``, so a retried append inside the
stream's duplicate window stores nothing new. Optimistic concurrency is per execution: its
*version* is the stream sequence of its last event on :func:`action_version_filter` (every
event that changes what may run next); ``expected_version`` makes the server reject an append
when that moved on, which surfaces as :class:`ConcurrencyError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from eventstore import headers as h
from eventstore.config import TepSettings
from eventstore.errors import ConcurrencyError, EventDecodeError, TepError
from eventstore.events import Event, PlanSubmitted
from eventstore.jetstream.acks import ReplyInbox, decode_pub_ack, stream_sequence
from eventstore.jetstream.api_errors import BATCH_DUPLICATE, is_wrong_last_sequence, sequence_in
from eventstore.jetstream.batch import (
    MAX_BATCH,
    BatchMessage,
    batch_headers,
    publish_atomic_batch,
)
from eventstore.jetstream.consumer_read import read_matching
from eventstore.jetstream.event_messages import (
    append_refused,
    event_message,
    expectation_headers,
)
from eventstore.jetstream.ordered_replay import ordered_batches
from eventstore.metrics import count_appended
from eventstore.records import AppendResult, Guard, RawRecord, RecordedEvent
from eventstore.subjects import action_version_filter, execution_filters
from eventstore.tracing import TraceContext, current_trace, use_trace

__all__ = ["EventLog"]

_API_TIMEOUT_S = 10.0
_PIPELINE_TIMEOUT_S = 30.0
_log = logging.getLogger("tep.log")


class EventLog:
    """The append-only log of every execution, in one JetStream stream.

    Example:
        >>> log = EventLog(nc, TepSettings())  # doctest: +SKIP
        >>> await log.append(PlanSubmitted(execution_id="e1", plan=plan))  # doctest: +SKIP
        >>> [r.event for r in await log.read_execution("e1")]  # doctest: +SKIP
    """

    def __init__(self, nc: NatsClient, settings: TepSettings | None = None) -> None:
        self.nc = nc
        self.settings = settings or TepSettings()
        self.js: JetStreamContext = nc.jetstream(timeout=_API_TIMEOUT_S)
        self.stream = self.settings.stream

    # ---------------------------------------------------------------- append

    def _message(
        self, event: Event, extra_headers: dict[str, str] | None = None
    ) -> tuple[str, bytes, dict[str, str]]:
        limit = min(self.nc.max_payload or self.settings.max_msg_bytes, self.settings.max_msg_bytes)
        return event_message(event, limit, extra_headers)

    async def append(
        self,
        event: Event,
        *,
        expected_version: int | None = None,
        guard: Guard | None = None,
        timeout: float | None = None,
    ) -> AppendResult:
        """Append one event and wait until the server stored it.

        Args:
            event: the event; its ``event_id`` is the dedupe key.
            expected_version: fail with :class:`ConcurrencyError` unless the execution's version
                (see :meth:`execution_version`) is exactly this.
            guard: instead of ``expected_version``, an expectation on any subject (see
                :class:`Guard`); a retry of an append that already stored this event returns
                it as a duplicate.
            timeout: seconds to wait for the server's answer (default: the API timeout).

        Raises:
            ConcurrencyError: another writer appended first.
            ExecutionExistsError: a ``plan.submitted`` for an execution that already exists.
            EventTooLargeError: the event does not fit one message.
        """
        headers = expectation_headers(event.execution_id, expected_version, guard)
        if isinstance(event, PlanSubmitted):
            # An execution starts once: the plan.submitted subject must be empty.
            headers = Guard().headers()
        subject, payload, headers = self._message(event, headers)
        try:
            ack = await self.js.publish(subject, payload, timeout=timeout, headers=headers)
        except APIError as exc:
            # The server checks expectations before dedupe: a retried append of an event that
            # is already the last one looks like a conflict. Recognise it by its id.
            stored_at = sequence_in(exc.description)
            if (
                is_wrong_last_sequence(exc.err_code)
                and stored_at
                and await self._stored_event_id(stored_at) == event.event_id
            ):
                return AppendResult(stored_at, True)
            raise append_refused(exc.err_code, exc.description, event, expected_version) from exc
        if not ack.duplicate:
            count_appended((event,))
        return AppendResult(ack.seq, bool(ack.duplicate))

    async def _stored_event_id(self, sequence: int) -> str | None:
        try:
            msg = await self.js.get_msg(self.stream, sequence, direct=True)
        except NotFoundError:
            return None
        return (msg.headers or {}).get(h.MSG_ID)

    async def append_atomic(
        self,
        events: Sequence[Event],
        *,
        expected_version: int | None = None,
        guards: Sequence[Guard | None] | None = None,
        traces: Sequence[TraceContext | None] | None = None,
    ) -> list[AppendResult]:
        """Append events of one execution all-or-nothing (an atomic batch).

        The version check applies to the whole batch. More than 1,000 events are split into
        several batches, each atomic on its own, the check on the first.

        Args:
            events: the events, in order.
            expected_version: the execution's version the batch is based on.
            guards: one optional :class:`Guard` per event (same length as ``events``), checked
                by the server with the rest of the batch; a guard on the first event replaces
                ``expected_version`` (passing both for it is a ``ValueError``).
            traces: one per event (same length), the trace each event's ``traceparent``
                continues (default: the current one, for all).

        Raises:
            ConcurrencyError: another writer appended first, a guard did not hold, or some of
                the events are already stored (a batch is never partly deduplicated); nothing
                of the batch was stored.
        """
        if not events:
            return []
        if guards is not None and len(guards) != len(events):
            raise ValueError(f"{len(guards)} guards for {len(events)} events")
        if traces is not None and len(traces) != len(events):
            raise ValueError(f"{len(traces)} traces for {len(events)} events")
        if len(events) == 1:
            guard = guards[0] if guards is not None else None
            with use_trace(traces[0] if traces is not None else current_trace()):
                return [
                    await self.append(events[0], expected_version=expected_version, guard=guard)
                ]
        results: list[AppendResult] = []
        for start in range(0, len(events), MAX_BATCH):
            end = start + MAX_BATCH
            results += await self._append_batch(
                events[start:end],
                expected_version if start == 0 else None,
                None if guards is None else guards[start:end],
                None if traces is None else traces[start:end],
            )
        return results

    async def _append_batch(
        self,
        events: Sequence[Event],
        expected_version: int | None,
        guards: Sequence[Guard | None] | None = None,
        traces: Sequence[TraceContext | None] | None = None,
    ) -> list[AppendResult]:
        messages = []
        for index, (event, headers) in enumerate(
            zip(events, batch_headers(len(events)), strict=True)
        ):
            guard = guards[index] if guards is not None else None
            if index == 0 or guard is not None:
                headers.update(
                    expectation_headers(
                        event.execution_id, expected_version if index == 0 else None, guard
                    )
                )
            with use_trace(traces[index] if traces is not None else current_trace()):
                messages.append(BatchMessage(*self._message(event, headers)))
        ack = await publish_atomic_batch(self.nc, messages, timeout=_API_TIMEOUT_S)
        if ack.error is not None:
            if ack.error.err_code == BATCH_DUPLICATE:
                # Some of these events are already stored (a racing writer, or an earlier try
                # of ours): nothing of this batch was written. Reload and decide again.
                raise ConcurrencyError(events[0].execution_id, expected_version or 0)
            error = ack.error
            raise append_refused(error.err_code, error.description, events[0], expected_version)
        count_appended(events)
        first = ack.seq - len(events) + 1
        return [AppendResult(first + i) for i in range(len(events))]

    async def append_many(
        self, events: Sequence[Event], *, max_in_flight: int = 512
    ) -> list[AppendResult]:
        """Append many events pipelined: up to ``max_in_flight`` unacknowledged at once.

        Each event is still deduplicated by its id; no version checks. Returns results in order.
        """
        async with ReplyInbox(self.nc, limit=max_in_flight) as inbox:
            waiting = []
            publish = self.nc.publish
            for event in events:
                subject, payload, headers = self._message(event)
                reply, ack = await inbox.expect(_as_is)
                waiting.append(ack)
                await publish(subject, payload, reply=reply, headers=headers)
            replies = await asyncio.wait_for(asyncio.gather(*waiting), _PIPELINE_TIMEOUT_S)
        # Decoded once all are in: the reply callback stays minimal while acks stream in.
        results = []
        for event, reply_msg in zip(events, replies, strict=True):
            answer = decode_pub_ack(reply_msg)
            if answer.error is not None:
                raise TepError(
                    f"append of {event.__struct_config__.tag} for {event.execution_id} failed:"
                    f" {answer.error.text()}"
                )
            results.append(AppendResult(answer.seq, answer.duplicate))
        count_appended(e for e, r in zip(events, results, strict=True) if not r.duplicate)
        return results

    # ------------------------------------------------------------------ read

    async def last_sequence(self) -> int:
        """The sequence of the newest message in the log (0 when empty)."""
        info = await self.js.stream_info(self.stream)
        return int(info.state.last_seq)

    async def last_on(self, subject: str, *, leader: bool = False) -> RawRecord | None:
        """The newest message on ``subject`` (a subject or filter), or ``None`` if there is none.

        One direct get: cheap whatever the size of the log, and answered by any replica. With
        ``leader`` the stream's leader answers, so the answer includes every append already
        acknowledged (a replica may lag behind).
        """
        try:
            msg = await self.js.get_last_msg(self.stream, subject, direct=not leader)
        except NotFoundError:
            return None
        return RawRecord(int(msg.seq or 0), msg.subject or subject, msg.data or b"")

    async def read_at(self, sequence: int) -> RawRecord | None:
        """The message at ``sequence`` as the stream's leader has it, or ``None``."""
        try:
            msg = await self.js.get_msg(self.stream, sequence)
        except NotFoundError:
            return None
        return RawRecord(sequence, msg.subject or "", msg.data or b"")

    async def execution_version(self, execution_id: str) -> int:
        """The execution's current version for ``expected_version`` (0 before any action event)."""
        last = await self.last_on(action_version_filter(execution_id))
        return 0 if last is None else last.sequence

    async def read_execution(
        self,
        execution_id: str,
        *,
        timeout: float = 10.0,
        on_skipped: Callable[[RawRecord, EventDecodeError], None] | None = None,
    ) -> list[RecordedEvent]:
        """Every event of one execution, in log order. Empty if the execution is unknown.

        Reads through a short-lived consumer filtered to this execution's subjects, so the cost
        depends on the execution's events, not on the size of the log. Anyone may publish on
        those subjects: a record that is no valid event, or an event of another execution, is
        left out and reported to ``on_skipped`` (by default: a warning naming its sequence).
        """
        records = []
        for raw in await self.read_execution_raw(execution_id, timeout=timeout):
            try:
                record = raw.decode()
            except EventDecodeError as exc:
                (on_skipped or _warn_skipped)(raw, exc)
                continue
            records.append(record)
        return records

    async def read_execution_raw(
        self, execution_id: str, *, timeout: float = 10.0
    ) -> list[RawRecord]:
        """Like :meth:`read_execution`, without decoding."""
        return await read_matching(
            self.nc,
            self.js,
            self.stream,
            execution_filters(execution_id),
            _event_record,
            timeout=timeout,
        )

    async def read_subject_raw(self, subject: str, *, timeout: float = 10.0) -> list[RawRecord]:
        """Every message on ``subject`` (a subject or filter) right now, in log order, undecoded.

        For the rare reader that must look past a message someone put there that is no event.
        """
        return await read_matching(
            self.nc, self.js, self.stream, [subject], _event_record, timeout=timeout
        )

    async def follow_execution_raw(self, execution_id: str) -> AsyncGenerator[RawRecord, None]:
        """Every message of one execution from its first, then live ones as they are appended.

        An ordered consumer over the execution's subjects: it survives reconnects and costs
        nothing on the server once the caller stops iterating. Never ends by itself.
        """
        batches = ordered_batches(
            self.js, self.stream, 1, end=None, filters=execution_filters(execution_id)
        )
        async with contextlib.aclosing(batches):
            async for batch in batches:
                for record in batch:
                    yield record

    async def follow_raw(
        self, filters: Sequence[str], from_sequence: int
    ) -> AsyncGenerator[list[RawRecord], None]:
        """Messages on ``filters`` from ``from_sequence`` on, live, in batches, until the caller
        stops iterating (an ordered consumer: it survives reconnects, skips nothing)."""
        batches = ordered_batches(
            self.js, self.stream, from_sequence, end=None, filters=list(filters)
        )
        async with contextlib.aclosing(batches):
            async for batch in batches:
                yield batch

    async def replay(
        self, from_sequence: int = 1, *, to_sequence: int | None = None
    ) -> AsyncIterator[RecordedEvent]:
        """Every event from ``from_sequence`` to ``to_sequence`` (default: the end at call time).

        Raises:
            EventDecodeError: a message is not a valid event (use :meth:`replay_raw` to skip).
        """
        async for record in self.replay_raw(from_sequence, to_sequence=to_sequence):
            yield record.decode()

    async def replay_raw(
        self, from_sequence: int = 1, *, to_sequence: int | None = None, buffer: int = 4096
    ) -> AsyncIterator[RawRecord]:
        """Raw messages of the log in order, through an ordered push consumer.

        The consumer is paused by flow control while the caller is slower than the server, so
        memory stays bounded by ``buffer`` messages.
        """
        async for batch in self.replay_batches(
            from_sequence, to_sequence=to_sequence, buffer=buffer
        ):
            for record in batch:
                yield record

    async def replay_batches(
        self,
        from_sequence: int = 1,
        *,
        to_sequence: int | None = None,
        follow: bool = False,
        buffer: int = 4096,
        max_batch: int | None = None,
    ) -> AsyncIterator[list[RawRecord]]:
        """Raw messages of the log in order, in batches of whatever arrived since the last one.

        A batch holds at most ``max_batch`` records (default ``buffer``; never none); up to
        ``buffer`` records are read ahead while the caller works on a batch, so a ``max_batch``
        well below ``buffer`` keeps the consumer flowing. Without ``follow`` the replay ends at
        ``to_sequence`` (default: the end of the log at call time); with ``follow`` it tails the
        log until the caller stops iterating. Schedule holders (messages with a
        ``Nats-Schedule`` header) are not events and are left out.
        """
        end = None
        if not follow:
            end = await self.last_sequence() if to_sequence is None else to_sequence
            if end < from_sequence:
                return
        batches = ordered_batches(
            self.js, self.stream, from_sequence, end=end, buffer=buffer, max_batch=max_batch
        )
        async with contextlib.aclosing(batches):
            async for batch in batches:
                yield batch


def _warn_skipped(record: RawRecord, exc: EventDecodeError) -> None:
    _log.warning(
        "skipping a record that is no event of this execution: %s",
        exc,
        extra={"sequence": record.sequence, "subject": record.subject},
    )


def _event_record(msg: Msg) -> RawRecord | None:
    """A message of the log as a record; ``None`` for a schedule holder (not an event)."""
    if msg.headers and h.SCHEDULE in msg.headers:
        return None
    return RawRecord(stream_sequence(msg.reply), msg.subject, msg.data)


def _as_is(msg: Msg) -> Msg:
    return msg
