"""Idempotent creation of the log stream, the dead-letter stream and KV buckets.

Every role calls :func:`ensure_log` at start. An existing stream or bucket whose settings differ
from what we need is reported with :class:`ConfigConflictError`; it is never overwritten.
"""

from __future__ import annotations

from typing import Any

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, KeyValueConfig, StorageType, StreamConfig
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

from eventstore.config import TepSettings
from eventstore.errors import ConfigConflictError
from eventstore.subjects import DEADLETTER_PREFIX, EVENT_SUBJECT_ROOTS

__all__ = [
    "deadletter_stream_config",
    "ensure_kv",
    "ensure_log",
    "ensure_stream",
    "log_stream_config",
]

# Fields we set and therefore check on an existing stream.
_CHECKED_FIELDS = (
    "subjects",
    "storage",
    "num_replicas",
    "duplicate_window",
    "max_msg_size",
    "allow_direct",
    "allow_atomic",
    "allow_msg_schedules",
    "max_age",
)


def log_stream_config(settings: TepSettings) -> StreamConfig:
    """The events stream: file storage, dedupe window, direct get, atomic batches, schedules,
    and the retention ``TEP_MAX_AGE_S`` (0: forever)."""
    return StreamConfig(
        name=settings.stream,
        description="tep event log",
        subjects=list(EVENT_SUBJECT_ROOTS),
        storage=StorageType.FILE,
        num_replicas=settings.replicas,
        duplicate_window=settings.duplicate_window_s,
        max_msg_size=settings.max_msg_bytes,
        max_age=settings.max_age_s,
        discard=DiscardPolicy.OLD,
        allow_direct=True,
        allow_atomic=True,
        allow_msg_schedules=True,
    )


def deadletter_stream_config(settings: TepSettings) -> StreamConfig:
    """Events that could not be processed, kept for inspection."""
    return StreamConfig(
        name=settings.deadletter_stream,
        description="tep dead letters: events no role could process",
        subjects=[f"{DEADLETTER_PREFIX}.>"],
        storage=StorageType.FILE,
        num_replicas=settings.replicas,
        max_msg_size=settings.max_msg_bytes,
        allow_direct=True,
    )


def _normalized(value: Any) -> Any:
    if isinstance(value, list):
        return sorted(value)
    if isinstance(value, float):
        return round(value, 3)
    return value


async def ensure_stream(js: JetStreamContext, wanted: StreamConfig) -> None:
    """Create ``wanted`` if absent; verify it matches if present.

    Raises:
        ConfigConflictError: the stream exists with different settings (each named).
    """
    assert wanted.name is not None
    try:
        info = await js.stream_info(wanted.name)
    except NotFoundError:
        await js.add_stream(wanted)
        return
    conflicts = []
    for field in _CHECKED_FIELDS:
        want = getattr(wanted, field)
        have = getattr(info.config, field)
        if isinstance(want, bool):
            have = bool(have)
        elif not want:
            continue  # left to the server's default
        if _normalized(want) != _normalized(have):
            conflicts.append(f"{field}: existing {have!r}, wanted {want!r}")
    if conflicts:
        raise ConfigConflictError(
            f"stream {wanted.name} exists with a different configuration ("
            + "; ".join(conflicts)
            + "); it was left unchanged: delete it or change the settings to match"
        )


async def ensure_kv(
    js: JetStreamContext, bucket: str, *, history: int = 1, replicas: int = 1
) -> KeyValue:
    """Create or open a KV bucket, checking history and replicas of an existing one.

    Raises:
        ConfigConflictError: the bucket exists with a different history or replica count.
    """
    try:
        info = await js.stream_info(f"KV_{bucket}")
    except NotFoundError:
        return await js.create_key_value(
            KeyValueConfig(
                bucket=bucket,
                history=history,
                replicas=replicas,
                storage=StorageType.FILE,
                direct=True,
            )
        )
    have_history = info.config.max_msgs_per_subject
    have_replicas = info.config.num_replicas
    if have_history != history or have_replicas != replicas:
        raise ConfigConflictError(
            f"KV bucket {bucket} exists with history={have_history}, replicas={have_replicas}; "
            f"wanted history={history}, replicas={replicas}; it was left unchanged"
        )
    return await js.key_value(bucket)


async def ensure_log(js: JetStreamContext, settings: TepSettings) -> None:
    """Ensure the events stream and the dead-letter stream exist with our settings."""
    await ensure_stream(js, log_stream_config(settings))
    await ensure_stream(js, deadletter_stream_config(settings))
