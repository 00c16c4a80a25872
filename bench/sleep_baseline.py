"""The baseline of the sleep bench: raw nats-py message schedules on a scratch stream, and how
late the server stores their targets. (The server runs due schedules at most every 250 ms:
spread schedules are up to that late by design.)"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig

from eventstore import headers as h

SCRATCH_STREAM = "BENCH_SLEEP_SCHEDULES"
SCRATCH_ROOT = "bench.sleep"


async def baseline(admin: NatsClient, due: list[datetime]) -> list[float]:
    """Raw message schedules due at ``due``: how late the server stored each target, in s."""
    js = admin.jetstream()
    run = uuid.uuid4().hex[:8]
    await js.add_stream(
        StreamConfig(
            name=SCRATCH_STREAM,
            subjects=[f"{SCRATCH_ROOT}.>"],
            storage=StorageType.FILE,
            allow_msg_schedules=True,
        )
    )
    stored: dict[int, datetime] = {}
    complete = asyncio.Event()

    async def collect(msg: Msg) -> None:
        stored[int(msg.subject.rsplit(".", 1)[1])] = msg.metadata.timestamp
        if len(stored) >= len(due):
            complete.set()

    inbox = admin.new_inbox()
    sub = await admin.subscribe(inbox, cb=collect)
    await js.add_consumer(
        SCRATCH_STREAM,
        config=ConsumerConfig(
            name=f"fired{run}",
            deliver_subject=inbox,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.NONE,
            filter_subject=f"{SCRATCH_ROOT}.fired.>",
            mem_storage=True,
        ),
    )
    due = [at.replace(microsecond=at.microsecond // 1000 * 1000) for at in due]
    remaining = iter(enumerate(due))
    too_late = 0

    async def publisher() -> None:
        nonlocal too_late
        for n, at in remaining:
            stamp = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            headers = {
                h.SCHEDULE: f"@at {stamp}",
                h.SCHEDULE_TARGET: f"{SCRATCH_ROOT}.fired.{n}",
            }
            await js.publish(f"{SCRATCH_ROOT}.hold.{n}", b"{}", headers=headers)
            too_late += datetime.now(UTC) > at

    try:
        await asyncio.gather(*(publisher() for _ in range(64)))
        if too_late:
            print(f"warning: {too_late} baseline schedules were stored after their due time")
        wait = (max(due) - datetime.now(UTC)).total_seconds() + 120
        await asyncio.wait_for(complete.wait(), wait)
    finally:
        await sub.unsubscribe()
        await js.delete_stream(SCRATCH_STREAM)
    return [(stored[n] - at).total_seconds() for n, at in enumerate(due)]
