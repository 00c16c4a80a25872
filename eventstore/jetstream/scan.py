"""Reading every live key of a bucket that matches a pattern, in one pass.

A short-lived push consumer delivers the last message of each matching key; the number of
messages to expect is known when it is created, so the scan ends exactly when they have all
arrived (a watch that waits for "no more pending" can stop early when the server is faster
than the client). Cost grows with the matching keys, not with the bucket.
"""

from __future__ import annotations

import asyncio
import contextlib

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

__all__ = ["scan_keys"]

_DELETED = frozenset({"DEL", "PURGE"})


async def scan_keys(
    nc: NatsClient, bucket: str, pattern: str = ">", *, timeout: float = 30.0
) -> dict[str, bytes]:
    """Every live key of KV ``bucket`` matching ``pattern`` (``*`` and ``>`` wildcards).

    Raises:
        nats.js.errors.NotFoundError: the bucket does not exist.
        asyncio.TimeoutError: the keys did not all arrive within ``timeout``.
    """
    js = nc.jetstream(timeout=timeout)
    prefix = f"$KV.{bucket}."
    found: dict[str, bytes] = {}
    received = 0
    expected: int | None = None
    complete = asyncio.Event()

    async def collect(msg: Msg) -> None:
        nonlocal received
        received += 1
        headers = msg.headers or {}
        if headers.get("KV-Operation") not in _DELETED and "Nats-Marker-Reason" not in headers:
            found[msg.subject.removeprefix(prefix)] = msg.data
        if expected is not None and received >= expected:
            complete.set()

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=collect)
    consumer = None
    try:
        info = await js._jsm.add_consumer(
            f"KV_{bucket}",
            config=ConsumerConfig(
                filter_subject=prefix + pattern,
                deliver_subject=inbox,
                deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
                ack_policy=AckPolicy.NONE,
                mem_storage=True,
                num_replicas=1,
                inactive_threshold=5.0,
            ),
        )
        consumer = info.name
        expected = int(info.num_pending or 0)
        if received >= expected:
            complete.set()
        await asyncio.wait_for(complete.wait(), timeout)
    finally:
        await sub.unsubscribe()
        if consumer is not None:
            with contextlib.suppress(Exception):
                await js._jsm.delete_consumer(f"KV_{bucket}", consumer)
    return found
