"""Provisioning is idempotent and never overwrites a differently configured stream or bucket."""

from __future__ import annotations

import pytest

from eventstore.config import TepSettings
from eventstore.errors import ConfigConflictError
from eventstore.jetstream.connection import NatsClient
from eventstore.jetstream.provision import ensure_kv, ensure_log, log_stream_config

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
