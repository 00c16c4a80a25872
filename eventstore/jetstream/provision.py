"""Idempotent creation of the log stream, the dead-letter stream and KV buckets.

Every role calls :func:`ensure_log` at start. An existing stream or bucket whose settings differ
from what we need is reported with :class:`ConfigConflictError`; it is never overwritten.
"""

from __future__ import annotations

import contextlib
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamInfo,
    StreamSource,
    SubjectTransform,
)
from nats.js.errors import (
    BadRequestError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NotFoundError,
)
from nats.js.kv import KeyValue

from eventstore.config import TepSettings
from eventstore.errors import ConfigConflictError
from eventstore.partitions import (
    ORCHESTRATOR_CONSUMER,
    PARTITIONS_KEY,
    partition_consumer,
    partition_filter,
    partition_stream,
    partition_transforms,
)
from eventstore.subjects import DEADLETTER_PREFIX, EVENT_SUBJECT_ROOTS

__all__ = [
    "META_BUCKET",
    "create_kv",
    "deadletter_stream_config",
    "ensure_kv",
    "ensure_log",
    "ensure_partitions",
    "ensure_stream",
    "log_stream_config",
    "partition_consumer_config",
    "partition_count",
    "partition_stream_config",
]

META_BUCKET = "tep_meta"
"""The small bucket of deployment facts: the view pointer, the partition count."""

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


_STREAM_NAME_IN_USE = 10058
"""JetStream's error code for a stream that exists with another configuration."""


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
        return await create_kv(js, bucket, history=history, replicas=replicas)
    return await _open_kv(js, bucket, info, history=history, replicas=replicas)


async def create_kv(
    js: JetStreamContext, bucket: str, *, history: int = 1, replicas: int = 1
) -> KeyValue:
    """Create a KV bucket found missing, or open it if another process created it meanwhile
    (and may already have changed its flags, as the view's buckets get atomic batches).

    Raises:
        ConfigConflictError: it exists with a different history or replica count.
    """
    try:
        return await js.create_key_value(
            KeyValueConfig(
                bucket=bucket,
                history=history,
                replicas=replicas,
                storage=StorageType.FILE,
                direct=True,
            )
        )
    except BadRequestError as exc:
        if exc.err_code != _STREAM_NAME_IN_USE:
            raise
    info = await js.stream_info(f"KV_{bucket}")
    return await _open_kv(js, bucket, info, history=history, replicas=replicas)


async def _open_kv(
    js: JetStreamContext, bucket: str, info: StreamInfo, *, history: int, replicas: int
) -> KeyValue:
    have_history = info.config.max_msgs_per_subject
    have_replicas = info.config.num_replicas
    if have_history != history or have_replicas != replicas:
        raise ConfigConflictError(
            f"KV bucket {bucket} exists with history={have_history}, replicas={have_replicas}; "
            f"wanted history={history}, replicas={replicas}; it was left unchanged"
        )
    return await js.key_value(bucket)


async def ensure_log(js: JetStreamContext, settings: TepSettings) -> None:
    """Ensure the events stream, the dead-letter stream and the partition stream exist with
    our settings."""
    await ensure_stream(js, log_stream_config(settings))
    await ensure_stream(js, deadletter_stream_config(settings))
    await ensure_partitions(js, settings)


def partition_stream_config(
    settings: TepSettings, count: int, *, start_sequence: int = 0, sourced: bool = True
) -> StreamConfig:
    """The partition stream: the orchestrator's events of the log, under
    ``tep.part.<n>.<subject>`` (:mod:`eventstore.partitions`). Interest retention: an event
    leaves it once every consumer of its partition acknowledged it (the log keeps it), so the
    partitions' consumers exist before the log is sourced (``sourced=False`` first)."""
    transforms = [SubjectTransform(src=s, dest=d) for s, d in partition_transforms(count)]
    source = StreamSource(
        name=settings.stream,
        opt_start_seq=start_sequence or None,
        subject_transforms=transforms,
    )
    return StreamConfig(
        name=partition_stream(settings.stream),
        description=f"tep orchestrator partitions ({count}) of {settings.stream}",
        sources=[source] if sourced else None,
        retention=RetentionPolicy.INTEREST,
        storage=StorageType.FILE,
        num_replicas=settings.replicas,
        # A copy is larger than the event it copies (its source header, its subject's
        # prefix): whatever the log took, this stream must take, or routing stops there.
        max_msg_size=-1,
        max_age=settings.max_age_s,
    )


def partition_consumer_config(
    partition: int,
    *,
    prefix: str = ORCHESTRATOR_CONSUMER,
    ack_wait_s: float = 3.0,
    max_ack_pending: int = 4096,
    replicas: int = 1,
) -> ConsumerConfig:
    """The durable consumer of one partition (created with the stream; each holder updates
    its timings to its own settings)."""
    return ConsumerConfig(
        durable_name=partition_consumer(prefix, partition),
        description=f"tep orchestrator: partition {partition}",
        filter_subject=partition_filter(partition),
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait_s,
        max_deliver=-1,
        max_ack_pending=max_ack_pending,
        max_waiting=512,
        num_replicas=replicas,
    )


async def ensure_partitions(js: JetStreamContext, settings: TepSettings) -> int:
    """The deployment's partition count, its stream and consumers created the first time.

    The count is written once into the meta bucket (``TEP_PARTITIONS`` at that moment) and
    read back ever after. A log whose orchestrators shared one consumer before partitions is
    sourced from where that consumer had acknowledged everything (the consumer is then
    deleted): events after it may be decided again, which every decision's guard makes
    harmless.

    Raises:
        ConfigConflictError: ``TEP_PARTITIONS`` differs from the deployment's count, or the
            partition stream's sources differ from that count's.
    """
    meta = await ensure_kv(js, META_BUCKET, replicas=settings.replicas)
    count = await _partition_count(meta, settings.partitions)
    if count != settings.partitions and "partitions" in settings.model_fields_set:
        raise ConfigConflictError(
            f"this deployment has {count} orchestrator partitions, fixed when it was first "
            f"provisioned; TEP_PARTITIONS={settings.partitions} differs: unset it or set {count}"
        )
    name = partition_stream(settings.stream)
    try:
        info = await js.stream_info(name)
    except NotFoundError:
        await js.add_stream(partition_stream_config(settings, count, sourced=False))
        info = await js.stream_info(name)
    if not info.config.sources:  # new, or its provisioning was interrupted
        start = await _legacy_start(js, settings.stream)
        for partition in range(count):
            with contextlib.suppress(BadRequestError):  # exists already, as a holder set it
                await js.add_consumer(
                    name, partition_consumer_config(partition, replicas=settings.replicas)
                )
        await js.update_stream(partition_stream_config(settings, count, start_sequence=start))
        if start:
            await js.delete_consumer(settings.stream, ORCHESTRATOR_CONSUMER)
        return count
    wanted = partition_transforms(count)
    have = [
        (t.src, t.dest)
        for source in info.config.sources or []
        for t in source.subject_transforms or []
    ]
    if sorted(have) != sorted(wanted):
        raise ConfigConflictError(
            f"stream {name} does not route the log into {count} partitions; it was left "
            "unchanged: delete it (it is made again from the log) or restore the meta "
            f"bucket's {PARTITIONS_KEY}"
        )
    return count


async def partition_count(js: JetStreamContext) -> int | None:
    """The deployment's partition count, ``None`` before it was provisioned."""
    try:
        meta = await js.key_value(META_BUCKET)
        entry = await meta.get(PARTITIONS_KEY)
    except (NotFoundError, KeyNotFoundError):
        return None
    value = (entry.value or b"").decode()
    return int(value) if value.isascii() and value.isdigit() else None


async def _partition_count(meta: KeyValue, wanted: int) -> int:
    try:
        entry = await meta.get(PARTITIONS_KEY)
    except KeyNotFoundError:
        try:
            await meta.create(PARTITIONS_KEY, str(wanted).encode())
            return wanted
        except KeyWrongLastSequenceError:
            entry = await meta.get(PARTITIONS_KEY)  # another process wrote it first
    value = (entry.value or b"").decode()
    if not (value.isascii() and value.isdigit()):
        raise ConfigConflictError(f"the meta bucket's {PARTITIONS_KEY} is not a count: {value!r}")
    return int(value)


async def _legacy_start(js: JetStreamContext, stream: str) -> int:
    """Where to source from: after the old shared consumer's ack floor, or from the start."""
    try:
        info = await js.consumer_info(stream, ORCHESTRATOR_CONSUMER)
    except NotFoundError:
        return 0
    return int(info.ack_floor.stream_seq if info.ack_floor else 0) + 1
