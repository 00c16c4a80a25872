"""Provisioning is idempotent and never overwrites a differently configured stream or bucket."""

from __future__ import annotations

import asyncio

import pytest

from eventstore.config import TepSettings
from eventstore.errors import ConfigConflictError
from eventstore.jetstream.connection import NatsClient
from eventstore.jetstream.kv_protocol import kv_stream
from eventstore.jetstream.provision import create_kv, ensure_kv, ensure_log, log_stream_config
from projections.buckets import bucket_name, ensure_view_bucket

pytestmark = pytest.mark.anyio


async def test_ensuring_twice_changes_nothing(nc: NatsClient, settings: TepSettings) -> None:
    js = nc.jetstream()
    before = await js.stream_info(settings.stream)

    await ensure_log(js, settings)

    after = await js.stream_info(settings.stream)
    assert after.config.subjects == before.config.subjects
    assert after.created == before.created


async def test_a_conflicting_stream_is_reported_and_left_unchanged(
    nc: NatsClient, settings: TepSettings
) -> None:
    js = nc.jetstream()
    wanted = settings.model_copy(
        update={
            "duplicate_window_s": 30.0,
            "max_msg_bytes": 512 * 1024,
            "max_plan_bytes": 256 * 1024,
        }
    )

    with pytest.raises(ConfigConflictError) as raised:
        await ensure_log(js, wanted)

    message = str(raised.value)
    assert "duplicate_window" in message and "max_msg_size" in message
    info = await js.stream_info(settings.stream)
    assert info.config.duplicate_window == log_stream_config(settings).duplicate_window


async def test_a_conflicting_bucket_is_reported(nc: NatsClient) -> None:
    js = nc.jetstream()
    await ensure_kv(js, "tep_test", history=1)

    with pytest.raises(ConfigConflictError, match="history=1"):
        await ensure_kv(js, "tep_test", history=5)
    kv = await ensure_kv(js, "tep_test", history=1)
    assert kv is not None


async def test_a_bucket_created_by_another_process_meanwhile_is_opened(
    nc: NatsClient, settings: TepSettings
) -> None:
    # Two processes found the view's bucket missing; the other one created it first and
    # turned on atomic batches and TTLs. This one's plain create was refused ("stream name
    # already in use with a different configuration") and its role or StateManager failed.
    js = nc.jetstream()
    name = bucket_name(7)
    await ensure_view_bucket(js, settings, 7)

    kv = await create_kv(js, name, replicas=settings.replicas)

    assert kv is not None
    info = await js.stream_info(kv_stream(name))
    assert info.config.allow_atomic and info.config.allow_msg_ttl  # left as the other set it
    with pytest.raises(ConfigConflictError, match="history=1"):
        await create_kv(js, name, history=5)


async def test_processes_opening_a_view_bucket_at_once_all_get_it(
    nc: NatsClient, settings: TepSettings
) -> None:
    js = nc.jetstream()

    opened = await asyncio.gather(*(ensure_view_bucket(js, settings, 8) for _ in range(4)))

    assert len(opened) == 4
    info = await js.stream_info(kv_stream(bucket_name(8)))
    assert info.config.allow_atomic and info.config.allow_msg_ttl
