"""Reading every live key of a bucket that matches a pattern, in one pass.

A short-lived consumer delivers the last message of each matching key (see
:mod:`eventstore.jetstream.consumer_read`); deleted, purged and expired keys are left out. Cost
grows with the matching keys, not with the bucket.
"""

from __future__ import annotations

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from eventstore.jetstream.consumer_read import read_matching
from eventstore.jetstream.kv_protocol import is_deleted, kv_stream, kv_subject_prefix

__all__ = ["scan_keys"]


async def scan_keys(
    nc: NatsClient, bucket: str, pattern: str = ">", *, timeout: float = 30.0
) -> dict[str, bytes]:
    """Every live key of KV ``bucket`` matching ``pattern`` (``*`` and ``>`` wildcards).

    Raises:
        nats.js.errors.NotFoundError: the bucket does not exist.
        asyncio.TimeoutError: the keys did not all arrive within ``timeout``.
    """
    prefix = kv_subject_prefix(bucket)

    def live_key(msg: Msg) -> tuple[str, bytes] | None:
        if msg.headers and is_deleted(msg.headers):
            return None
        return msg.subject.removeprefix(prefix), msg.data

    entries = await read_matching(
        nc,
        nc.jetstream(timeout=timeout),
        kv_stream(bucket),
        [prefix + pattern],
        live_key,
        deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
        timeout=timeout,
    )
    return dict(entries)
