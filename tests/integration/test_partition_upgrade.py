"""A log whose orchestrators shared one consumer before partitions: provisioning routes what
that consumer had not acknowledged into the partitions, and removes it."""

from __future__ import annotations

import anyio
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from eventstore.config import TepSettings
from eventstore.errors import ConfigConflictError
from eventstore.jetstream.connection import NatsClient, connect
from eventstore.jetstream.provision import (
    deadletter_stream_config,
    ensure_partitions,
    ensure_stream,
    log_stream_config,
)
from eventstore.partitions import ORCHESTRATOR_CONSUMER, partition_stream

pytestmark = pytest.mark.anyio


async def test_the_old_shared_consumer_hands_over_what_it_had_not_acknowledged(
    settings: TepSettings,
) -> None:
    nc: NatsClient = await connect(settings.nats_url, name="upgrade")
    try:
        js = nc.jetstream()
        await ensure_stream(js, log_stream_config(settings))
        await ensure_stream(js, deadletter_stream_config(settings))
        await js.add_consumer(
            settings.stream,
            ConsumerConfig(
                durable_name=ORCHESTRATOR_CONSUMER,
                filter_subject="plan.submitted.>",
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
            ),
        )
        for n in range(6):
            await js.publish(f"plan.submitted.old-{n}", b"{}")
        old = await js.pull_subscribe_bind(ORCHESTRATOR_CONSUMER, settings.stream)
        for msg in await old.fetch(4, timeout=5):  # the first four were decided
            await msg.ack_sync()

        count = await ensure_partitions(js, settings)

        stream = partition_stream(settings.stream)
        with anyio.fail_after(10):
            while (await js.stream_info(stream)).state.messages < 2:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        info = await js.stream_info(stream)
        with pytest.raises(NotFoundError):
            await js.consumer_info(settings.stream, ORCHESTRATOR_CONSUMER)
        subjects = set()
        for sequence in range(info.state.first_seq, info.state.last_seq + 1):
            subject = (await js.get_msg(stream, sequence)).subject or ""
            subjects.add(subject.split(".", 3)[3])
    finally:
        await nc.close()

    assert count == 16
    assert subjects == {"plan.submitted.old-4", "plan.submitted.old-5"}


async def test_a_different_partition_count_is_refused_once_provisioned(
    nc: NatsClient, settings: TepSettings
) -> None:
    other = TepSettings(nats_url=settings.nats_url, partitions=8)

    with pytest.raises(ConfigConflictError) as raised:
        await ensure_partitions(nc.jetstream(), other)

    assert "16 orchestrator partitions" in str(raised.value)
    assert "TEP_PARTITIONS=8" in str(raised.value)
    assert await ensure_partitions(nc.jetstream(), settings) == 16
