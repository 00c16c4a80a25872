"""All-or-nothing writes of many KV keys at once (a JetStream atomic batch on the bucket).

Each write may carry the key's expected revision; if any does not match, nothing of the batch
is stored and the batch fails with :class:`WriteConflictError`. This is what lets several
projector replicas write one view: every state, index entry, counter and checkpoint of a batch
lands together, or the writer re-reads and tries again.

:meth:`AtomicWriter.send` puts a batch on the wire in order and returns a future for the
server's answer, so a writer that knows it is alone (a rebuild) can fold the next batch while
the previous one is being stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import msgspec
from nats.aio.client import Client as NatsClient

from eventstore import headers as h
from eventstore.errors import TepError
from eventstore.jetstream.acks import PubAck
from eventstore.jetstream.api_errors import is_wrong_last_sequence
from eventstore.jetstream.batch import (
    MAX_BATCH,
    AtomicBatchPublisher,
    BatchMessage,
    batch_headers,
    wait_answered,
)
from eventstore.jetstream.kv_protocol import KV_DELETE, kv_subject_prefix

__all__ = ["MAX_BATCH", "AtomicWriter", "KvWrite", "WriteConflictError", "wait_stored"]

_ACK_TIMEOUT_S = 30.0


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


class AtomicWriter:
    """Sends atomic batches to one KV bucket; call :meth:`start` first, :meth:`close` last."""

    def __init__(self, nc: NatsClient, bucket: str) -> None:
        self.nc = nc
        self.bucket = bucket
        self._prefix = kv_subject_prefix(bucket)
        self._publisher = AtomicBatchPublisher(nc)
        self._started = False

    async def start(self) -> None:
        """Listen for the server's answers."""
        await self._publisher.start()
        self._started = True

    async def close(self) -> None:
        """Stop listening; waiting for batches still unanswered is cancelled."""
        await self._publisher.close()
        self._started = False

    async def commit(self, writes: Sequence[KvWrite]) -> int:
        """Store ``writes`` atomically and wait for the answer.

        Returns:
            The revision of the first write; write ``i`` has revision ``first + i``.

        Raises:
            WriteConflictError: an expected revision did not match.
        """
        return await wait_stored(await self.send(writes))

    async def send(self, writes: Sequence[KvWrite]) -> asyncio.Future[int]:
        """Put a batch on the wire (in order with earlier ones); the future gives its first
        revision, or raises :class:`WriteConflictError` / :class:`TepError`.

        Raises:
            ValueError: no writes, or more than :data:`MAX_BATCH`.
        """
        if not self._started:
            raise RuntimeError("AtomicWriter.start() was not called")
        size = len(writes)

        def first_revision(ack: PubAck) -> int:
            if ack.error is None:
                return ack.seq - size + 1
            if is_wrong_last_sequence(ack.error.err_code):
                raise WriteConflictError(f"bucket {self.bucket}: {ack.error.text()}")
            raise TepError(f"atomic write to {self.bucket} failed: {ack.error.text()}")

        return await self._publisher.send(self._messages(writes), first_revision)

    def _messages(self, writes: Sequence[KvWrite]) -> list[BatchMessage]:
        prefix = self._prefix
        messages = []
        for write, headers in zip(writes, batch_headers(len(writes)), strict=True):
            if write.expected_revision is not None:
                headers[h.EXPECTED_LAST_SUBJECT_SEQUENCE] = str(write.expected_revision)
            if write.delete:
                headers[h.KV_OPERATION] = KV_DELETE
            if write.ttl is not None:
                headers[h.TTL] = write.ttl
            messages.append(BatchMessage(prefix + write.key, write.value, headers))
        return messages


async def wait_stored(future: asyncio.Future[int]) -> int:
    """The first revision of a sent batch, once the server has answered.

    Raises:
        WriteConflictError, TepError: the batch was refused.
    """
    return await wait_answered(future, _ACK_TIMEOUT_S)
