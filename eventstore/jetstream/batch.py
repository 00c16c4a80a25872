"""Atomic batch publish: several messages stored all-or-nothing, in order, with one answer.

The server stages every message carrying the same ``Nats-Batch-Id`` (numbered by
``Nats-Batch-Sequence`` from 1) and stores the whole batch when the message marked
``Nats-Batch-Commit`` arrives; only that one has a reply subject, and its :class:`PubAck`
answers for the batch (``seq`` is the last message's sequence). If any message's expectation
headers do not hold, nothing is stored and the ack carries the error. The event log and the KV
batch writer both publish through :class:`AtomicBatchPublisher`; each only builds its
messages and reads the answer in its own terms.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import NamedTuple, TypeVar

from nats.aio.client import Client as NatsClient

from eventstore import headers as h
from eventstore.errors import TepError
from eventstore.jetstream.acks import PubAck, ReplyInbox, decode_pub_ack

__all__ = [
    "MAX_BATCH",
    "AtomicBatchPublisher",
    "BatchMessage",
    "batch_headers",
    "publish_atomic_batch",
    "wait_answered",
]

MAX_BATCH = 1000
"""The server's limit on messages in one atomic batch."""

T = TypeVar("T")


class BatchMessage(NamedTuple):
    """One message of a batch; ``headers`` include those of :func:`batch_headers`."""

    subject: str
    payload: bytes
    headers: dict[str, str]


def batch_headers(size: int) -> list[dict[str, str]]:
    """Fresh header sets for the ``size`` messages of one new batch, in order.

    Each holds the batch id and the message's place in the batch, the last also the commit
    mark; callers add their own headers (expectations, TTL...) to them.
    """
    batch_id = uuid.uuid4().hex
    headers = [{h.BATCH_ID: batch_id, h.BATCH_SEQUENCE: str(index)} for index in range(1, size + 1)]
    if headers:
        headers[-1][h.BATCH_COMMIT] = "1"
    return headers


class AtomicBatchPublisher:
    """Puts atomic batches on one connection and hands back each one's answer as a future.

    Batches go on the wire in the order they are sent, so a writer may send the next batch
    before the previous one is answered. Use it as an async context manager, or call
    :meth:`start` first and :meth:`close` last.
    """

    def __init__(self, nc: NatsClient) -> None:
        self.nc = nc
        self._inbox = ReplyInbox(nc)

    async def start(self) -> None:
        """Listen for the server's answers."""
        await self._inbox.start()

    async def close(self) -> None:
        """Stop listening; futures of batches still unanswered are cancelled."""
        await self._inbox.close()

    async def __aenter__(self) -> AtomicBatchPublisher:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def send(
        self, messages: Sequence[BatchMessage], answer: Callable[[PubAck], T]
    ) -> asyncio.Future[T]:
        """Publish ``messages`` as one batch; the future gives ``answer(ack)``.

        ``answer`` reads the server's ack in the caller's terms (and raises to refuse it); a
        reply that is no ack fails the future with :class:`TepError`.

        Raises:
            ValueError: no messages, or more than :data:`MAX_BATCH`.
        """
        if not messages:
            raise ValueError("an atomic batch needs at least one message")
        if len(messages) > MAX_BATCH:
            raise ValueError(
                f"{len(messages)} messages exceed the atomic batch limit of {MAX_BATCH}"
            )
        reply, future = await self._inbox.expect(lambda msg: answer(decode_pub_ack(msg)))
        publish = self.nc.publish
        try:
            for subject, payload, headers in messages[:-1]:
                await publish(subject, payload, headers=headers)
            subject, payload, headers = messages[-1]
            await publish(subject, payload, reply=reply, headers=headers)
        except BaseException:
            self._inbox.forget(reply)
            raise
        return future


async def wait_answered(future: asyncio.Future[T], timeout: float) -> T:
    """The answer to a sent batch, once the server gave it.

    Raises:
        TepError: no answer within ``timeout`` seconds.
    """
    try:
        return await asyncio.wait_for(asyncio.shield(future), timeout)
    except TimeoutError:
        raise TepError(f"no answer to an atomic batch within {timeout:g}s") from None


async def publish_atomic_batch(
    nc: NatsClient, messages: Sequence[BatchMessage], *, timeout: float
) -> PubAck:
    """Publish one batch and wait for the server's ack (errors are in ``ack.error``).

    Raises:
        TepError: no answer within ``timeout`` seconds, or a reply that is no ack.
    """
    async with AtomicBatchPublisher(nc) as publisher:
        return await wait_answered(await publisher.send(messages, _as_is), timeout)


def _as_is(ack: PubAck) -> PubAck:
    return ack
