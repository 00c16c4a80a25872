"""Sampling a durable consumer's backlog into :mod:`eventstore.metrics` (one API call)."""

from __future__ import annotations

import contextlib

from nats.js import JetStreamContext

from eventstore.metrics import CONSUMER_ACK_PENDING, CONSUMER_PENDING

__all__ = ["forget_consumer", "sample_consumer"]


async def sample_consumer(js: JetStreamContext, stream: str, consumer: str) -> None:
    """Set ``tep_consumer_pending`` and ``tep_consumer_ack_pending`` of ``consumer``.

    Raises:
        nats.js.errors.NotFoundError: the consumer does not exist (yet).
    """
    info = await js.consumer_info(stream, consumer)
    CONSUMER_PENDING.labels(consumer).set(info.num_pending or 0)
    CONSUMER_ACK_PENDING.labels(consumer).set(info.num_ack_pending or 0)


def forget_consumer(consumer: str) -> None:
    """Drop ``consumer``'s samples: this process no longer reads it (a partition handed over),
    and its last figures would be counted beside those of the process that does."""
    for gauge in (CONSUMER_PENDING, CONSUMER_ACK_PENDING):
        with contextlib.suppress(KeyError):
            gauge.remove(consumer)
