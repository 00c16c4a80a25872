"""Reading what some filters match right now, through a short-lived push consumer.

The consumer is created with the reader's inbox as its deliver subject; the server says in
its answer how many messages it has to deliver (``num_pending``), so the read ends exactly
when they have all arrived. A watch that waits for "no more pending" can stop early when the
server is faster than the client; this cannot. Messages delivered after those (written while
the read runs) are left out, so the result is what matched when the read began. Cost grows
with the matching messages, not with the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Sequence
from typing import TypeVar

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.manager import JetStreamManager

__all__ = ["read_matching"]

T = TypeVar("T")

_INACTIVE_THRESHOLD_S = 5.0


async def read_matching(
    nc: NatsClient,
    js: JetStreamManager,
    stream: str,
    filters: Sequence[str],
    keep: Callable[[Msg], T | None],
    *,
    deliver_policy: DeliverPolicy = DeliverPolicy.ALL,
    timeout: float,
) -> list[T]:
    """The messages of ``stream`` matching ``filters`` when the read starts, in stream order.

    Args:
        nc: the connection to receive on.
        js: the JetStream API to create and delete the consumer with.
        stream: the stream's name.
        filters: subjects or filters (``*``, ``>``), not overlapping.
        keep: turns each message into the item to return, or ``None`` to leave it out.
        deliver_policy: ``ALL``, or ``LAST_PER_SUBJECT`` for the newest message per subject.
        timeout: how long the messages may take to arrive, in seconds.

    Raises:
        nats.js.errors.NotFoundError: the stream does not exist.
        asyncio.TimeoutError: the messages did not all arrive within ``timeout``.
    """
    received: list[T | None] = []
    expected: int | None = None
    complete = asyncio.Event()

    async def collect(msg: Msg) -> None:
        received.append(keep(msg))
        if expected is not None and len(received) >= expected:
            complete.set()

    config = ConsumerConfig(
        deliver_policy=deliver_policy,
        ack_policy=AckPolicy.NONE,
        mem_storage=True,
        num_replicas=1,
        inactive_threshold=_INACTIVE_THRESHOLD_S,
    )
    if len(filters) == 1:
        config.filter_subject = filters[0]
    else:
        config.filter_subjects = list(filters)
    inbox = nc.new_inbox()
    # Created by name: the permissions refuse unnamed creates on the log (see NamedEphemeral).
    config.name = "r" + uuid.uuid4().hex[:22]
    config.deliver_subject = inbox
    sub = await nc.subscribe(inbox, cb=collect)
    consumer = None
    try:
        info = await js.add_consumer(stream, config=config)
        consumer = info.name
        expected = int(info.num_pending or 0)
        if len(received) >= expected:
            complete.set()
        await asyncio.wait_for(complete.wait(), timeout)
    finally:
        await sub.unsubscribe()
        if consumer is not None:
            with contextlib.suppress(Exception):
                await js.delete_consumer(stream, consumer)
    return [item for item in received[:expected] if item is not None]
