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
import contextlib
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from eventstore.errors import TepError

__all__ = ["MAX_BATCH", "AtomicWriter", "KvWrite", "WriteConflictError", "wait_stored"]

MAX_BATCH = 1000
"""The server's limit on messages in one atomic batch."""

_WRONG_LAST_SEQUENCE = (10071, 10164)
_EXPECTED = "Nats-Expected-Last-Subject-Sequence"
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


class _Ack(msgspec.Struct):
    seq: int = 0
    error: dict[str, Any] | None = None


_ack_decoder = msgspec.json.Decoder(_Ack)


class AtomicWriter:
    """Sends atomic batches to one KV bucket; call :meth:`start` first, :meth:`close` last."""

    def __init__(self, nc: NatsClient, bucket: str) -> None:
        self.nc = nc
        self.bucket = bucket
        self._prefix = f"$KV.{bucket}."
        self._inbox = nc.new_inbox()
        self._waiting: dict[str, tuple[asyncio.Future[int], int]] = {}
        self._sub: Subscription | None = None
        self._count = 0

    async def start(self) -> None:
        """Listen for the server's answers."""
        self._sub = await self.nc.subscribe(f"{self._inbox}.*", cb=self._on_ack)

    async def close(self) -> None:
        """Stop listening; waiting for batches still unanswered is cancelled."""
        if self._sub is not None:
            with contextlib.suppress(Exception):  # the connection may be closed already
                await self._sub.unsubscribe()
            self._sub = None
        for future, _ in list(self._waiting.values()):
            future.cancel()
        self._waiting.clear()

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
        if self._sub is None:
            raise RuntimeError("AtomicWriter.start() was not called")
        if not writes:
            raise ValueError("nothing to commit")
        if len(writes) > MAX_BATCH:
            raise ValueError(f"{len(writes)} writes exceed the atomic batch limit of {MAX_BATCH}")
        self._count += 1
        reply = f"{self._inbox}.{self._count}"
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting[reply] = (future, len(writes))
        batch_id = uuid.uuid4().hex
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
                if index == last:
                    headers["Nats-Batch-Commit"] = "1"
                    await self.nc.publish(
                        self._prefix + write.key, write.value, reply=reply, headers=headers
                    )
                else:
                    await self.nc.publish(self._prefix + write.key, write.value, headers=headers)
        except BaseException:
            self._waiting.pop(reply, None)
            raise
        future.add_done_callback(lambda _: self._waiting.pop(reply, None))
        return future

    async def _on_ack(self, msg: Msg) -> None:
        waiting = self._waiting.get(msg.subject)
        if waiting is None or waiting[0].done():
            return
        future, size = waiting
        if not msg.data:
            status = (msg.headers or {}).get("Status", "")
            future.set_exception(
                TepError(f"bucket {self.bucket}: no answer from the server (status {status})")
            )
            return
        ack = _ack_decoder.decode(msg.data)
        if ack.error is None:
            future.set_result(ack.seq - size + 1)
            return
        description = ack.error.get("description", ack.error)
        if ack.error.get("err_code") in _WRONG_LAST_SEQUENCE:
            future.set_exception(WriteConflictError(f"bucket {self.bucket}: {description}"))
        else:
            future.set_exception(TepError(f"atomic write to {self.bucket} failed: {description}"))


async def wait_stored(future: asyncio.Future[int]) -> int:
    """The first revision of a sent batch, once the server has answered.

    Raises:
        WriteConflictError, TepError: the batch was refused.
    """
    try:
        return await asyncio.wait_for(asyncio.shield(future), _ACK_TIMEOUT_S)
    except TimeoutError:
        raise TepError(f"no answer to an atomic write within {_ACK_TIMEOUT_S:g}s") from None
