"""Work queues: one durable pull consumer per queue, shared by every executor serving it.

A queue's concurrency limit is operator configuration (``tep queue set NAME --concurrency N``),
stored in the KV bucket :data:`QUEUE_CONFIG_BUCKET` under the queue's name as
``{"concurrency": N}`` (``null``: no limit). It is the consumer's ``max_ack_pending``: the server
never hands out more unfinished requests of the queue at once, however many executors share
it. :func:`set_queue_limit` stores it and updates the consumer at once;
:func:`ensure_queue_consumer` applies the stored value (or the default) whenever an executor
starts, so nothing else (no plan) changes a queue's limit for long.
"""

from __future__ import annotations

import contextlib
import logging

import msgspec
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NoKeysError, NotFoundError
from nats.js.kv import KeyValue

from eventstore.config import TepSettings
from eventstore.errors import TepError
from eventstore.jetstream.provision import ensure_kv
from eventstore.plan_validation.action_checks import NAME_PATTERN
from eventstore.plan_validation.bounds import CONCURRENCY_LIMIT, bound_problems
from eventstore.subjects import queue_filter

__all__ = [
    "DEFAULT_ACK_WAIT_S",
    "DEFAULT_QUEUE_CONCURRENCY",
    "QUEUE_CONFIG_BUCKET",
    "QueueConfigError",
    "QueueLimit",
    "QueueStatus",
    "consumer_name",
    "ensure_queue_consumer",
    "queue_limit_problem",
    "queue_statuses",
    "read_queue_limit",
    "set_queue_limit",
]

_log = logging.getLogger("tep.queues")

QUEUE_CONFIG_BUCKET = "tep_queues"
"""KV bucket of the operator's queue settings: key = queue name, value = :class:`QueueLimit`."""
DEFAULT_QUEUE_CONCURRENCY = 1000
"""The ``max_ack_pending`` of a queue nobody configured (the server's own default)."""
_UNLIMITED = -1

DEFAULT_ACK_WAIT_S = 5.0
"""How long a request may go without an ack or heartbeat before another executor gets it:
the time an executor crash costs. Executors heartbeat every third of it."""


def consumer_name(queue: str) -> str:
    """The durable consumer of ``queue``."""
    return f"queue-{queue}"


class QueueConfigError(TepError, ValueError):
    """A queue name or concurrency limit outside the rules (the message says which)."""


class QueueLimit(msgspec.Struct, frozen=True, kw_only=True):
    """The operator's setting of one queue, as stored in :data:`QUEUE_CONFIG_BUCKET`.

    Attributes:
        concurrency: most unfinished requests of the queue at once, across all executors;
            ``None``: no limit (each executor's ``--concurrency`` alone).
    """

    concurrency: int | None

    @property
    def max_ack_pending(self) -> int:
        """The consumer setting that enforces it (``-1``: unlimited)."""
        return _UNLIMITED if self.concurrency is None else self.concurrency


class QueueStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One queue as the operator sees it.

    Attributes:
        queue: the queue's name.
        limit: the stored setting; ``None`` when never set (the default applies).
        max_ack_pending: the consumer's limit now (``-1``: unlimited); ``None`` without a
            consumer (no executor served the queue yet).
        in_flight: requests handed out and not finished.
        backlog: requests not handed out yet.
    """

    queue: str
    limit: QueueLimit | None
    max_ack_pending: int | None
    in_flight: int | None
    backlog: int | None


def queue_limit_problem(queue: str, concurrency: int | None) -> str | None:
    """Why ``queue`` cannot have this limit, or ``None`` if it can (``None`` = unlimited)."""
    if not NAME_PATTERN.fullmatch(queue):
        return f'queue name "{queue}" must match [A-Za-z0-9_-]{{1,64}}'
    problems = list(
        bound_problems(f'queue "{queue}"', "concurrency", concurrency, CONCURRENCY_LIMIT)
    )
    return problems[0] if problems else None


async def _config_bucket(js: JetStreamContext) -> KeyValue | None:
    try:
        return await js.key_value(QUEUE_CONFIG_BUCKET)
    except BucketNotFoundError:
        return None


def _decoded(queue: str, data: bytes | None) -> QueueLimit | None:
    try:
        limit = msgspec.json.decode(data or b"", type=QueueLimit)
    except msgspec.DecodeError as exc:
        _log.warning("queue %s: stored setting ignored: %s", queue, exc, extra={"queue": queue})
        return None
    problem = queue_limit_problem(queue, limit.concurrency)
    if problem is not None:
        _log.warning("queue %s: stored setting ignored: %s", queue, problem, extra={"queue": queue})
        return None
    return limit


async def _limit_in(kv: KeyValue, queue: str) -> QueueLimit | None:
    try:
        entry = await kv.get(queue)
    except KeyNotFoundError:
        return None
    return _decoded(queue, entry.value)


async def read_queue_limit(js: JetStreamContext, queue: str) -> QueueLimit | None:
    """The stored setting of ``queue``; ``None`` if never set (or unreadable, with a warning)."""
    kv = await _config_bucket(js)
    return None if kv is None else await _limit_in(kv, queue)


def _max_ack_pending(limit: QueueLimit | None) -> int:
    return DEFAULT_QUEUE_CONCURRENCY if limit is None else limit.max_ack_pending


async def set_queue_limit(
    js: JetStreamContext, settings: TepSettings, queue: str, concurrency: int | None
) -> int | None:
    """Store the limit of ``queue`` and apply it to the queue's consumer at once.

    Args:
        js: JetStream.
        settings: the stream and the replica count of the bucket, if it is created.
        queue: the queue's name.
        concurrency: most unfinished requests at once, 1 to 10,000; ``None``: no limit.

    Returns:
        The consumer's ``max_ack_pending`` now; ``None`` if the queue has no consumer yet
        (the first executor of the queue creates it with this limit).

    Raises:
        QueueConfigError: the name or the limit is outside the rules.
    """
    problem = queue_limit_problem(queue, concurrency)
    if problem is not None:
        raise QueueConfigError(problem)
    limit = QueueLimit(concurrency=concurrency)
    kv = await ensure_kv(js, QUEUE_CONFIG_BUCKET, replicas=settings.replicas)
    await kv.put(queue, msgspec.json.encode(limit))
    try:
        info = await js.consumer_info(settings.stream, consumer_name(queue))
    except NotFoundError:
        return None
    if info.config.max_ack_pending != limit.max_ack_pending:
        config = info.config
        config.max_ack_pending = limit.max_ack_pending
        info = await js.add_consumer(settings.stream, config=config)
    applied: int | None = info.config.max_ack_pending
    return applied


async def queue_statuses(
    js: JetStreamContext, settings: TepSettings, queue: str | None = None
) -> list[QueueStatus]:
    """Every queue with a setting or a consumer (or just ``queue``), by name."""
    kv = await _config_bucket(js)
    names: list[str] = []
    if queue is not None:
        names = [queue]
    elif kv is not None:
        with contextlib.suppress(NoKeysError):
            names = await kv.keys()
    limits = {name: None if kv is None else await _limit_in(kv, name) for name in names}
    consumers = await _queue_consumers(js, settings, queue)
    statuses = []
    for name in sorted(set(limits) | set(consumers)):
        info = consumers.get(name)
        statuses.append(
            QueueStatus(
                queue=name,
                limit=limits.get(name),
                max_ack_pending=None if info is None else info.config.max_ack_pending,
                in_flight=None if info is None else info.num_ack_pending,
                backlog=None if info is None else info.num_pending,
            )
        )
    return statuses


async def _queue_consumers(
    js: JetStreamContext, settings: TepSettings, queue: str | None
) -> dict[str, ConsumerInfo]:
    if queue is not None:
        try:
            return {queue: await js.consumer_info(settings.stream, consumer_name(queue))}
        except NotFoundError:
            return {}
    found: dict[str, ConsumerInfo] = {}
    prefix = consumer_name("")
    offset = 0
    while True:
        try:
            page = await js.consumers_info(settings.stream, offset=offset)
        except NotFoundError:  # no stream yet: no role has started
            return found
        for info in page:
            name = info.name or ""
            if name.startswith(prefix) and info.config.filter_subject == queue_filter(
                name.removeprefix(prefix)
            ):
                found[name.removeprefix(prefix)] = info
        if not page:
            return found
        offset += len(page)


async def ensure_queue_consumer(
    js: JetStreamContext,
    settings: TepSettings,
    queue: str,
    *,
    ack_wait_s: float | None = None,
) -> ConsumerInfo:
    """Create the queue's durable consumer, or bring its concurrency limit and ack wait in line.

    The limit is the operator's stored setting (:func:`set_queue_limit`), else
    :data:`DEFAULT_QUEUE_CONCURRENCY`: a limit left on the consumer by anything else is put
    back. ``ack_wait_s=None`` keeps an existing consumer's ack wait (new consumers get
    :data:`DEFAULT_ACK_WAIT_S`). A consumer already as asked is left alone.

    Returns:
        The consumer's info as the server holds it now.
    """
    name = consumer_name(queue)
    max_ack_pending = _max_ack_pending(await read_queue_limit(js, queue))
    try:
        info: ConsumerInfo | None = await js.consumer_info(settings.stream, name)
    except NotFoundError:
        info = None
    if info is not None:
        config = info.config
        changed = False
        if config.max_ack_pending != max_ack_pending:
            config.max_ack_pending = max_ack_pending
            changed = True
        if ack_wait_s is not None and config.ack_wait != ack_wait_s:
            config.ack_wait = ack_wait_s
            changed = True
        if changed:
            return await js.add_consumer(settings.stream, config=config)
        return info
    return await js.add_consumer(
        settings.stream,
        config=ConsumerConfig(
            durable_name=name,
            filter_subject=queue_filter(queue),
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait_s or DEFAULT_ACK_WAIT_S,
            max_deliver=-1,
            max_ack_pending=max_ack_pending,
            max_waiting=512,
            num_replicas=settings.replicas,
        ),
    )
