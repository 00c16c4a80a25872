"""Work queues: one durable pull consumer per queue, shared by every executor serving it."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from eventstore.config import TepSettings
from eventstore.subjects import queue_filter

__all__ = ["DEFAULT_ACK_WAIT_S", "consumer_name", "ensure_queue_consumer"]

DEFAULT_ACK_WAIT_S = 30.0


def consumer_name(queue: str) -> str:
    """The durable consumer of ``queue``."""
    return f"queue-{queue}"


async def ensure_queue_consumer(
    js: JetStreamContext,
    settings: TepSettings,
    queue: str,
    *,
    concurrency_limit: int | None = None,
    ack_wait_s: float = DEFAULT_ACK_WAIT_S,
) -> str:
    """Create the queue's durable consumer, or update its concurrency limit.

    The limit is the consumer's ``max_ack_pending``: the server never hands out more unfinished
    requests of this queue at once, however many executors share it. ``None`` keeps an existing
    consumer's limit (new consumers get 1,000).

    Returns:
        The consumer's name.
    """
    name = consumer_name(queue)
    try:
        info = await js.consumer_info(settings.stream, name)
    except NotFoundError:
        info = None
    if info is not None:
        current = info.config.max_ack_pending
        if concurrency_limit is None or current == concurrency_limit:
            return name
        config = info.config
        config.max_ack_pending = concurrency_limit
        await js.add_consumer(settings.stream, config=config)
        return name
    await js.add_consumer(
        settings.stream,
        config=ConsumerConfig(
            durable_name=name,
            filter_subject=queue_filter(queue),
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait_s,
            max_deliver=-1,
            max_ack_pending=concurrency_limit or 1000,
            max_waiting=512,
            num_replicas=settings.replicas,
        ),
    )
    return name
