"""All-or-nothing writes of many KV keys at once (a JetStream atomic batch on the bucket).

Each write may carry the key's expected revision; if any does not match, nothing of the batch
is stored and :class:`WriteConflictError` is raised. This is what lets several projector
replicas write one view: every state, index entry, counter and checkpoint of a batch lands
together, or the writer re-reads and tries again.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import msgspec
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.errors import APIError

from eventstore.errors import TepError

__all__ = ["MAX_BATCH", "KvWrite", "WriteConflictError", "commit"]

MAX_BATCH = 1000
"""The server's limit on messages in one atomic batch."""

_WRONG_LAST_SEQUENCE = (10071, 10164)
_EXPECTED = "Nats-Expected-Last-Subject-Sequence"


class KvWrite(msgspec.Struct, frozen=True):
    """One key to write (or delete) in a batch.

    ``expected_revision``: ``None`` writes unconditionally, ``0`` requires the key to be
    absent, ``n`` requires its current revision to be ``n``. ``ttl`` (e.g. ``"60s"``) lets the
    message expire; used for deletion markers.
    """

    key: str
    value: bytes = b""
    expected_revision: int | None = None
    delete: bool = False
    ttl: str | None = None


class WriteConflictError(TepError):
    """A key of the batch was changed by someone else; nothing of the batch was stored."""


async def commit(
    nc: NatsClient, js: JetStreamContext, bucket: str, writes: Sequence[KvWrite]
) -> int:
    """Store ``writes`` atomically in KV ``bucket``.

    Returns:
        The revision of the first write; write ``i`` has revision ``first + i``.

    Raises:
        WriteConflictError: an expected revision did not match.
        ValueError: more than :data:`MAX_BATCH` writes.
    """
    if not writes:
        raise ValueError("nothing to commit")
    if len(writes) > MAX_BATCH:
        raise ValueError(f"{len(writes)} writes exceed the atomic batch limit of {MAX_BATCH}")
    batch_id = uuid.uuid4().hex
    prefix = f"$KV.{bucket}."
    last = len(writes)
    try:
        for index, write in enumerate(writes, start=1):
            headers = {"Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(index)}
            if write.expected_revision is not None:
                headers[_EXPECTED] = str(write.expected_revision)
            if write.delete:
                headers["KV-Operation"] = "DEL"
            if write.ttl is not None:
                headers["Nats-TTL"] = write.ttl
            if index < last:
                await nc.publish(prefix + write.key, write.value, headers=headers)
                continue
            headers["Nats-Batch-Commit"] = "1"
            ack = await js.publish(prefix + write.key, write.value, headers=headers, timeout=30.0)
    except APIError as exc:
        if exc.err_code in _WRONG_LAST_SEQUENCE:
            raise WriteConflictError(f"bucket {bucket}: {exc.description}") from exc
        raise TepError(f"atomic write to bucket {bucket} failed: {exc.description}") from exc
    return int(ack.seq) - last + 1
