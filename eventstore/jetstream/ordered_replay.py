"""Reading a stream in order through an ordered push consumer, in batches, to an end or live.

nats-py's ordered consumer recreates itself after a gap or a reconnect, so nothing is skipped
or delivered twice. Records are handed over in batches of whatever arrived since the last one;
while the caller is slower than the server, the consumer's callback waits for room and flow
control pauses the server, so memory stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncGenerator, Sequence

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from eventstore import headers as h
from eventstore.jetstream.acks import delivered_position
from eventstore.records import RawRecord

__all__ = ["NamedEphemeral", "ordered_batches"]


class NamedEphemeral(ConsumerConfig):
    """A consumer config whose name follows its deliver subject.

    Consumers on the log are created by name only (``CONSUMER.CREATE.<stream>.<name>``): the
    unnamed form would let any identity that may read the log create-or-update a consumer of
    any name, durable ones included, so the permissions refuse it. nats-py's ordered consumer
    renews the deliver subject every time it recreates the consumer, so each incarnation gets
    a fresh name.
    """

    @property
    def name(self) -> str | None:
        """``r<hash of the deliver subject>``, or ``None`` before one is assigned."""
        subject = self.deliver_subject
        if not subject:
            return None
        return "r" + hashlib.sha256(subject.encode()).hexdigest()[:22]

    @name.setter
    def name(self, value: str | None) -> None:
        """Names are derived, never set."""


async def ordered_batches(
    js: JetStreamContext,
    stream: str,
    from_sequence: int,
    *,
    end: int | None,
    filters: Sequence[str] | None = None,
    buffer: int = 4096,
    max_batch: int | None = None,
) -> AsyncGenerator[list[RawRecord], None]:
    """Raw messages of ``stream`` from ``from_sequence`` on, in order, in batches.

    Args:
        js: the JetStream context.
        stream: the stream's name.
        from_sequence: the first sequence to deliver.
        end: stop after this sequence (or once the consumer has nothing more pending);
            ``None`` follows the stream until the caller stops iterating.
        filters: only these subjects or filters (default: every message).
        buffer: how many records may be read ahead while the caller works on a batch.
        max_batch: at most this many records per batch (default ``buffer``).

    Schedule holders (messages with a ``Nats-Schedule`` header) are not events and are left
    out. No batch is ever empty.
    """
    follow = end is None
    last = end or 0
    limit = max_batch or buffer
    pending: list[RawRecord] = []
    ready = asyncio.Event()
    room = asyncio.Event()
    room.set()
    state = {"done": False}

    async def collect(msg: Msg) -> None:
        if state["done"]:
            return
        sequence, caught_up, stored_ns = delivered_position(msg.reply)
        if not (msg.headers and h.SCHEDULE in msg.headers):
            pending.append(RawRecord(sequence, msg.subject, msg.data, stored_ns))
        if not follow and (sequence >= last or caught_up):
            state["done"] = True
        ready.set()
        if len(pending) >= buffer:
            room.clear()
            await room.wait()

    if filters:
        subject = filters[0]
        config = NamedEphemeral(opt_start_seq=from_sequence, filter_subjects=list(filters))
    else:
        subject = ">"
        config = NamedEphemeral(opt_start_seq=from_sequence, filter_subject=None)
    sub = await js.subscribe(
        subject,
        stream=stream,
        cb=collect,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        config=config,
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
            if not follow and batch and batch[-1].sequence > last:
                batch = [record for record in batch if record.sequence <= last]
                state["done"] = True
            if batch:
                yield batch
            if state["done"] and not pending:
                return
    finally:
        room.set()
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
