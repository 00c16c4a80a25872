"""JetStream acknowledgements: publish acks, the inbox that collects them, ack reply subjects.

A publish with a reply subject is answered by a :class:`PubAck` (the stored sequence, or why
nothing was stored). :class:`ReplyInbox` lets many such publishes wait on one subscription,
each on its own reply subject and future, so a writer can keep many on the wire at once. A
message delivered by a consumer carries its position in its ack reply subject, which
:func:`delivered_position` reads without building nats-py's metadata object.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from eventstore import headers as h
from eventstore.errors import TepError

__all__ = [
    "PubAck",
    "PubAckError",
    "ReplyInbox",
    "decode_pub_ack",
    "delivered_position",
    "stream_sequence",
]

T = TypeVar("T")


class PubAckError(msgspec.Struct):
    """Why the server stored nothing (see :mod:`eventstore.jetstream.api_errors`)."""

    code: int = 0
    err_code: int | None = None
    description: str = ""

    def text(self) -> str:
        """The server's description, or its codes when it gave none."""
        return self.description or f"error {self.code} ({self.err_code})"


class PubAck(msgspec.Struct):
    """The server's answer to a publish: where it was stored, or ``error``.

    For an atomic batch ``seq`` is the sequence of its last message.
    """

    seq: int = 0
    duplicate: bool = False
    error: PubAckError | None = None


_pub_ack_decoder = msgspec.json.Decoder(PubAck)


def decode_pub_ack(msg: Msg) -> PubAck:
    """The publish ack in a reply.

    Raises:
        TepError: the reply is a status message (e.g. 503: no stream listens on the subject).
    """
    if not msg.data:
        status = (msg.headers or {}).get(h.STATUS, "")
        raise TepError(f"no answer from the server (status {status})")
    return _pub_ack_decoder.decode(msg.data)


class ReplyInbox:
    """Replies to many requests on one subscription, each resolving the future of its request.

    Use it as an async context manager, or call :meth:`start` first and :meth:`close` last.

    Args:
        nc: the connection the requests are published on.
        limit: at most this many requests unanswered at once (:meth:`expect` waits for room);
            ``None``: no limit.
    """

    def __init__(self, nc: NatsClient, *, limit: int | None = None) -> None:
        self.nc = nc
        self._prefix = nc.new_inbox()
        self._waiting: dict[str, tuple[asyncio.Future[Any], Callable[[Msg], Any]]] = {}
        self._room = asyncio.Semaphore(limit) if limit else None
        self._sub: Subscription | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._count = 0

    async def start(self) -> None:
        """Subscribe to the replies."""
        self._loop = asyncio.get_running_loop()
        self._sub = await self.nc.subscribe(f"{self._prefix}.*", cb=self._on_reply)

    async def close(self) -> None:
        """Unsubscribe; futures still waiting are cancelled."""
        if self._sub is not None:
            with contextlib.suppress(Exception):  # the connection may be closed already
                await self._sub.unsubscribe()
            self._sub = None
        for future, _ in list(self._waiting.values()):
            future.cancel()
        self._waiting.clear()

    async def __aenter__(self) -> ReplyInbox:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def expect(self, parse: Callable[[Msg], T]) -> tuple[str, asyncio.Future[T]]:
        """A reply subject for one request and the future of ``parse(reply)``.

        An exception ``parse`` raises becomes the future's.
        """
        loop = self._loop
        if self._sub is None or loop is None:
            raise RuntimeError("ReplyInbox.start() was not called")
        if self._room is not None:
            await self._room.acquire()
        self._count += 1
        reply = f"{self._prefix}.{self._count}"
        future: asyncio.Future[T] = loop.create_future()
        self._waiting[reply] = (future, parse)
        return reply, future

    def forget(self, reply: str) -> None:
        """Give up on a request that could not be sent (its future is cancelled)."""
        waiting = self._waiting.pop(reply, None)
        if waiting is not None:
            waiting[0].cancel()
            if self._room is not None:
                self._room.release()

    async def _on_reply(self, msg: Msg) -> None:
        waiting = self._waiting.pop(msg.subject, None)
        if waiting is None:
            return
        if self._room is not None:
            self._room.release()
        future, parse = waiting
        if future.done():
            return
        try:
            future.set_result(parse(msg))
        except Exception as exc:
            future.set_exception(exc)


# Ack reply subjects: v1 `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`,
# v2 inserts domain and account hash after `ACK` (and may append a token). Reading the two
# fields by hand is several times cheaper than building `msg.metadata` on a replay's hot path.
_V1_TOKENS = 9


def delivered_position(reply: str) -> tuple[int, bool, int]:
    """From a delivered message's ack reply subject: its stream sequence, whether it is the
    last the consumer had pending (nothing more to deliver when it was sent), and when the
    stream stored it (nanoseconds since the epoch)."""
    tokens = reply.split(".")
    if len(tokens) == _V1_TOKENS:
        return int(tokens[5]), tokens[8] == "0", int(tokens[7])
    return int(tokens[7]), tokens[10] == "0", int(tokens[9])


def stream_sequence(reply: str) -> int:
    """The stream sequence of a delivered message, from its ack reply subject."""
    return delivered_position(reply)[0]
