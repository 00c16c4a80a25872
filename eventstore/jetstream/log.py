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
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import APIError, NotFoundError

from eventstore import headers as h
from eventstore.codec import encode_event
from eventstore.config import Settings
from eventstore.errors import (
    ConcurrencyError,
    EventTooLargeError,
    ExecutionExistsError,
    TepError,
)
from eventstore.events import Event, PlanSubmitted
from eventstore.records import AppendResult, Guard, RawRecord, RecordedEvent
from eventstore.subjects import action_version_filter, execution_filters, subject_for

__all__ = ["EventLog"]

_WRONG_LAST_SEQUENCE = 10071
_BATCH_DUPLICATE = 10201
_BATCH_LIMIT = 1000


class EventLog:
    """The append-only log of every execution, in one JetStream stream.

    Example:
        >>> log = EventLog(nc, Settings())  # doctest: +SKIP
        >>> await log.append(PlanSubmitted(execution_id="e1", plan=plan))  # doctest: +SKIP
        >>> [r.event for r in await log.read_execution("e1")]  # doctest: +SKIP
    """

    def __init__(self, nc: NatsClient, settings: Settings | None = None) -> None:
        self.nc = nc
        self.settings = settings or Settings()
        self.js: JetStreamContext = nc.jetstream(timeout=10.0)
        self.stream = self.settings.stream

    # ---------------------------------------------------------------- append

    def _message(
        self, event: Event, extra_headers: dict[str, str] | None = None
    ) -> tuple[str, bytes, dict[str, str]]:
        subject = subject_for(event)
        payload = encode_event(event)
        headers = {h.MSG_ID: event.event_id}
        if extra_headers:
            headers.update(extra_headers)
        size = len(payload) + len(subject) + sum(len(k) + len(v) + 4 for k, v in headers.items())
        limit = min(self.nc.max_payload or self.settings.max_msg_bytes, self.settings.max_msg_bytes)
        if size + 64 > limit:
            raise EventTooLargeError(
                f"{event.__struct_config__.tag} for execution {event.execution_id} is {size} bytes;"
                f" the limit for one message is {limit} bytes"
            )
        return subject, payload, headers

    @staticmethod
    def _expectation(
        execution_id: str, expected_version: int | None, guard: Guard | None = None
    ) -> dict[str, str]:
        if guard is not None:
            if expected_version is not None:
                raise ValueError("one event cannot carry both expected_version and a guard")
            return guard.headers()
        if expected_version is None:
            return {}
        return {
            h.EXPECTED_LAST_SUBJECT_SEQUENCE: str(expected_version),
            h.EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT: action_version_filter(execution_id),
        }

    async def append(
        self, event: Event, *, expected_version: int | None = None, guard: Guard | None = None
    ) -> AppendResult:
        """Append one event and wait until the server stored it.

        Args:
            event: the event; its ``event_id`` is the dedupe key.
            expected_version: fail with :class:`ConcurrencyError` unless the execution's version
                (see :meth:`execution_version`) is exactly this.
            guard: instead of ``expected_version``, an expectation on any subject (see
                :class:`Guard`); a retry of an append that already stored this event returns
                it as a duplicate.

        Raises:
            ConcurrencyError: another writer appended first.
            ExecutionExistsError: a ``plan.submitted`` for an execution that already exists.
            EventTooLargeError: the event does not fit one message.
        """
        headers = self._expectation(event.execution_id, expected_version, guard)
        if isinstance(event, PlanSubmitted):
            # An execution starts once: the plan.submitted subject must be empty.
            headers = Guard().headers()
        subject, payload, headers = self._message(event, headers)
        try:
            ack = await self.js.publish(subject, payload, headers=headers)
        except APIError as exc:
            # The server checks expectations before dedupe: a retried append of an event that
            # is already the last one looks like a conflict. Recognise it by its id.
            stored_at = _parse_int_suffix(exc.description)
            if (
                exc.err_code == _WRONG_LAST_SEQUENCE
                and stored_at
                and await self._stored_event_id(stored_at) == event.event_id
            ):
                return AppendResult(stored_at, True)
            raise self._translate(exc, event, expected_version) from exc
        return AppendResult(ack.seq, bool(ack.duplicate))

    async def _stored_event_id(self, sequence: int) -> str | None:
        try:
            msg = await self.js.get_msg(self.stream, sequence, direct=True)
        except NotFoundError:
            return None
        return (msg.headers or {}).get(h.MSG_ID)

    def _translate(self, exc: APIError, event: Event, expected: int | None) -> TepError:
        if exc.err_code == _WRONG_LAST_SEQUENCE:
            if isinstance(event, PlanSubmitted):
                return ExecutionExistsError(event.execution_id)
            actual = _parse_int_suffix(exc.description)
            return ConcurrencyError(event.execution_id, expected or 0, actual)
        return TepError(f"append of {event.__struct_config__.tag} failed: {exc.description}")

    async def append_atomic(
        self,
        events: Sequence[Event],
        *,
        expected_version: int | None = None,
        guards: Sequence[Guard | None] | None = None,
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

        Raises:
            ConcurrencyError: another writer appended first, a guard did not hold, or some of
                the events are already stored (a batch is never partly deduplicated); nothing
                of the batch was stored.
        """
        if not events:
            return []
        if guards is not None and len(guards) != len(events):
            raise ValueError(f"{len(guards)} guards for {len(events)} events")
        if len(events) == 1:
            guard = guards[0] if guards is not None else None
            return [await self.append(events[0], expected_version=expected_version, guard=guard)]
        results: list[AppendResult] = []
        for start in range(0, len(events), _BATCH_LIMIT):
            chunk = events[start : start + _BATCH_LIMIT]
            chunk_guards = None if guards is None else guards[start : start + _BATCH_LIMIT]
            results += await self._append_batch(
                chunk, expected_version if start == 0 else None, chunk_guards
            )
        return results

    async def _append_batch(
        self,
        events: Sequence[Event],
        expected_version: int | None,
        guards: Sequence[Guard | None] | None = None,
    ) -> list[AppendResult]:
        batch_id = uuid.uuid4().hex
        messages = []
        for index, event in enumerate(events, start=1):
            extra = {h.BATCH_ID: batch_id, h.BATCH_SEQUENCE: str(index)}
            guard = guards[index - 1] if guards is not None else None
            if index == 1 or guard is not None:
                extra.update(
                    self._expectation(
                        event.execution_id, expected_version if index == 1 else None, guard
                    )
                )
            if index == len(events):
                extra[h.BATCH_COMMIT] = "1"
            messages.append(self._message(event, extra))
        for subject, payload, headers in messages[:-1]:
            await self.nc.publish(subject, payload, headers=headers)
        subject, payload, headers = messages[-1]
        try:
            ack = await self.js.publish(subject, payload, headers=headers)
        except APIError as exc:
            if exc.err_code == _BATCH_DUPLICATE:
                # Some of these events are already stored (a racing writer, or an earlier try
                # of ours): nothing of this batch was written. Reload and decide again.
                raise ConcurrencyError(events[0].execution_id, expected_version or 0) from exc
            raise self._translate(exc, events[0], expected_version) from exc
        first = ack.seq - len(events) + 1
        return [AppendResult(first + i) for i in range(len(events))]

    async def append_many(
        self, events: Sequence[Event], *, max_in_flight: int = 512
    ) -> list[AppendResult]:
        """Append many events pipelined: up to ``max_in_flight`` unacknowledged at once.

        Each event is still deduplicated by its id; no version checks. Returns results in order.
        """
        pending: list[asyncio.Future[Any]] = []
        window = asyncio.Semaphore(max_in_flight)
        inbox_prefix = self.nc.new_inbox()
        futures: dict[str, asyncio.Future[Any]] = {}
        loop = asyncio.get_running_loop()

        async def on_ack(msg: Msg) -> None:
            future = futures.pop(msg.subject, None)
            if future is not None and not future.done():
                future.set_result(msg.data)
            window.release()

        sub = await self.nc.subscribe(f"{inbox_prefix}.*", cb=on_ack)
        try:
            for index, event in enumerate(events):
                subject, payload, headers = self._message(event)
                await window.acquire()
                reply = f"{inbox_prefix}.{index}"
                future: asyncio.Future[Any] = loop.create_future()
                futures[reply] = future
                pending.append(future)
                await self.nc.publish(subject, payload, reply=reply, headers=headers)
            acks = await asyncio.wait_for(asyncio.gather(*pending), timeout=30.0)
        finally:
            await sub.unsubscribe()
        results = []
        for event, raw in zip(events, acks, strict=True):
            ack = _pub_ack_decoder.decode(raw)
            if ack.error is not None:
                raise TepError(
                    f"append of {event.__struct_config__.tag} for {event.execution_id} failed:"
                    f" {ack.error.get('description', ack.error)}"
                )
            results.append(AppendResult(ack.seq, ack.duplicate))
        return results

    # ------------------------------------------------------------------ read

    async def last_sequence(self) -> int:
        """The sequence of the newest message in the log (0 when empty)."""
        info = await self.js.stream_info(self.stream)
        return int(info.state.last_seq)

    async def last_on(self, subject: str) -> RawRecord | None:
        """The newest message on ``subject`` (a subject or filter), or ``None`` if there is none.

        One direct get: cheap whatever the size of the log.
        """
        try:
            msg = await self.js.get_last_msg(self.stream, subject, direct=True)
        except NotFoundError:
            return None
        return RawRecord(int(msg.seq or 0), msg.subject or subject, msg.data or b"")

    async def execution_version(self, execution_id: str) -> int:
        """The execution's current version for ``expected_version`` (0 before any action event)."""
        last = await self.last_on(action_version_filter(execution_id))
        return 0 if last is None else last.sequence

    async def read_execution(
        self, execution_id: str, *, timeout: float = 10.0
    ) -> list[RecordedEvent]:
        """Every event of one execution, in log order. Empty if the execution is unknown.

        Reads through a short-lived consumer filtered to this execution's subjects, so the cost
        depends on the execution's events, not on the size of the log.
        """
        return [r.decode() for r in await self.read_execution_raw(execution_id, timeout=timeout)]

    async def read_execution_raw(
        self, execution_id: str, *, timeout: float = 10.0
    ) -> list[RawRecord]:
        """Like :meth:`read_execution`, without decoding."""
        records: list[RawRecord] = []
        expected: int | None = None
        complete = asyncio.Event()

        async def collect(msg: Msg) -> None:
            if msg.headers and h.SCHEDULE in msg.headers:
                return
            records.append(RawRecord(_stream_sequence(msg), msg.subject, msg.data))
            if expected is not None and len(records) >= expected:
                complete.set()

        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox, cb=collect)
        consumer = None
        try:
            info = await self.js.add_consumer(
                self.stream,
                config=ConsumerConfig(
                    filter_subjects=execution_filters(execution_id),
                    deliver_subject=inbox,
                    deliver_policy=DeliverPolicy.ALL,
                    ack_policy=AckPolicy.NONE,
                    mem_storage=True,
                    num_replicas=1,
                    inactive_threshold=5.0,
                ),
            )
            consumer = info.name
            expected = int(info.num_pending or 0)
            if len(records) >= expected:
                complete.set()
            await asyncio.wait_for(complete.wait(), timeout)
        finally:
            await sub.unsubscribe()
            if consumer is not None:
                with contextlib.suppress(Exception):
                    await self.js.delete_consumer(self.stream, consumer)
        del records[expected or 0 :]
        return records

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
        end = 0
        limit = max_batch or buffer
        if not follow:
            end = await self.last_sequence() if to_sequence is None else to_sequence
            if end < from_sequence:
                return
        pending: list[RawRecord] = []
        ready = asyncio.Event()
        room = asyncio.Event()
        room.set()
        state = {"done": False}

        async def collect(msg: Msg) -> None:
            if state["done"]:
                return
            tokens = msg.reply.split(".")
            v1 = len(tokens) == _V1_TOKENS
            sequence = int(tokens[5] if v1 else tokens[7])
            if not (msg.headers and h.SCHEDULE in msg.headers):
                pending.append(RawRecord(sequence, msg.subject, msg.data))
            if not follow and (sequence >= end or tokens[8 if v1 else 10] == "0"):
                state["done"] = True
            ready.set()
            if len(pending) >= buffer:
                room.clear()
                await room.wait()

        sub = await self.js.subscribe(
            ">",
            stream=self.stream,
            cb=collect,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            config=ConsumerConfig(opt_start_seq=from_sequence, filter_subject=None),
            # Leave nats-py's (large) pending limits: the ordered consumer counts a message as
            # delivered before queueing it, so one dropped as a slow consumer is lost silently.
            # Flow control bounds what the server sends; `room` bounds what we hold.
        )
        try:
            while True:
                await ready.wait()
                batch = pending[:limit]
                del pending[:limit]
                if not pending:
                    ready.clear()
                if len(pending) < buffer:
                    room.set()
                if not follow and batch and batch[-1].sequence > end:
                    batch = [record for record in batch if record.sequence <= end]
                    state["done"] = True
                if batch:
                    yield batch
                if state["done"] and not pending:
                    return
        finally:
            room.set()
            with contextlib.suppress(Exception):
                await sub.unsubscribe()


class _PubAck(msgspec.Struct):
    seq: int = 0
    duplicate: bool = False
    error: dict[str, Any] | None = None


_pub_ack_decoder = msgspec.json.Decoder(_PubAck)


# Ack reply subjects: v1 `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`,
# v2 inserts domain and account hash after `ACK` (and may append a token). Parsing the two
# fields by hand is several times cheaper than building `msg.metadata` on the replay hot path.
_V1_TOKENS = 9


def _stream_sequence(msg: Msg) -> int:
    tokens = msg.reply.split(".")
    return int(tokens[5] if len(tokens) == _V1_TOKENS else tokens[7])


def _parse_int_suffix(text: str | None) -> int | None:
    if not text:
        return None
    tail = text.rsplit(":", 1)[-1].strip()
    return int(tail) if tail.isdigit() else None
