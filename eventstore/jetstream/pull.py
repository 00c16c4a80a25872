"""The one pull loop over a durable JetStream consumer: each message handed over as it arrives.

``fetch(batch=n)`` of nats-py waits for the whole batch (or its timeout) once a message came,
which would add its timeout to every step of a chain. :class:`PullFeed` instead keeps pull
requests outstanding (each for at most ``batch`` messages, expiring after ``expires_s``) and
passes every message to ``handler`` the moment it arrives. Two kinds of flow control:

- ``credit=None``: the consumer's ``max_ack_pending`` alone. Requests of ``batch`` are topped
  up when fewer than half a batch remain requested (the orchestrator).
- ``credit=n``: at most ``n`` messages in hand. Messages requested plus messages in hand never
  exceed ``n``; the consumer calls :meth:`PullFeed.release` when it is done with one (the
  executor's ``concurrency``).

An idle consumer must see a new message at once, so a request is renewed a quarter of its
lifetime before it expires rather than after the server's 408. With a credit, a lone request
leaves one message of credit unrequested for that renewal (a credit of 1 cannot: it renews on
the 408).

Status messages: 100 (idle heartbeat) is ignored; 404/408 end a request; anything else (409
while the consumer changes leader or was deleted, 503 when it is gone...) is a refusal: the
loop pauses ``refusal_pause_s``, awaits ``on_refused`` (e.g. to create the consumer again) and
goes on. Requests lost across a reconnect are written off a second after their expiry.

Stopping (:meth:`PullFeed.stop` or cancellation) stops requesting, waits at most
``expires_s`` for the outstanding requests to end and then naks whatever still arrived, so
another replica gets it at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import TaskStatus
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from eventstore import headers as h

__all__ = ["PullFeed"]

_log = logging.getLogger("tep.pull")
_HEARTBEAT = "100"
_REQUEST_OVER = frozenset({"404", "408"})
_GRACE_S = 1.0
_RENEW_AHEAD = 0.25
_MIN_WAIT_S = 0.001
_DISCONNECTED_POLL_S = 0.05


class _Request:
    __slots__ = ("deadline", "expires_at", "remaining")

    def __init__(self, batch: int, expires_at: float) -> None:
        self.remaining = batch
        self.expires_at = expires_at
        self.deadline = expires_at + _GRACE_S


class PullFeed:
    """Delivers the messages of durable pull consumer ``consumer`` of ``stream`` to ``handler``.

    Args:
        nc: the connection.
        stream: the stream's name.
        consumer: the durable consumer's name (it must exist).
        handler: called with each message, in delivery order; it must not block.
        credit: at most this many messages in hand (``None``: no limit but the consumer's
            ``max_ack_pending``); give each back with :meth:`release`.
        batch: the most messages one pull request asks for.
        expires_s: lifetime of a pull request.
        refusal_pause_s: pause after the server refused a request.
        on_refused: awaited after that pause (errors are logged, not raised).
        api_prefix: the JetStream API prefix (``$JS.API`` unless a domain is used).

    Example:
        >>> feed = PullFeed(nc, "TEP", "queue-http", start, credit=32)  # doctest: +SKIP
        >>> async with anyio.create_task_group() as tg:  # doctest: +SKIP
        ...     await tg.start(feed.run)
    """

    def __init__(
        self,
        nc: NatsClient,
        stream: str,
        consumer: str,
        handler: Callable[[Msg], None],
        *,
        credit: int | None = None,
        batch: int = 256,
        expires_s: float = 1.0,
        refusal_pause_s: float = 0.5,
        on_refused: Callable[[], Awaitable[None]] | None = None,
        api_prefix: str = "$JS.API",
    ) -> None:
        self.nc = nc
        self.handler = handler
        self.credit = credit
        self.batch = batch
        self.expires_s = expires_s
        self.refusal_pause_s = refusal_pause_s
        self.on_refused = on_refused
        self._where = {"stream": stream, "consumer": consumer}
        self._next_subject = f"{api_prefix}.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._inbox = nc.new_inbox()
        # Outstanding requests by reply subject, oldest first. Data messages arrive with their
        # own subject, not the request's, so they are counted against the oldest request: the
        # server serves waiting requests in order. Status messages name their request.
        self._requests: OrderedDict[str, _Request] = OrderedDict()
        self._requested = 0
        self._in_hand = 0
        self._counter = 0
        self._stop_requested = False
        self._stopping = False
        self._wake: anyio.Event | None = None
        self._backoff_until = 0.0
        self._refusal: str | None = None
        self._returned: list[Msg] = []
        self.delivered = 0

    @property
    def in_hand(self) -> int:
        """Messages handed to ``handler`` and not released yet (counted with a credit only)."""
        return self._in_hand

    def release(self) -> None:
        """Give back the credit of one message the consumer is done with."""
        self._in_hand -= 1
        if self._want(self._requested) > 0:
            self._signal()

    def stop(self) -> None:
        """Stop requesting; :meth:`run` returns once the outstanding requests ended."""
        self._stop_requested = True
        self._signal()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Feed messages to the handler until :meth:`stop` or cancellation."""
        self._wake = anyio.Event()
        sub = await self.nc.subscribe(
            f"{self._inbox}.*",
            cb=self._on_message,
            pending_msgs_limit=-1,
            pending_bytes_limit=-1,
        )
        try:
            task_status.started()
            while not self._stop_requested:
                if self._refusal is not None and time.monotonic() >= self._backoff_until:
                    await self._recover()
                await self._top_up()
                with anyio.move_on_after(self._next_check()):
                    await self._wake.wait()
                self._wake = anyio.Event()
        finally:
            with anyio.CancelScope(shield=True):
                await self._drain()
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    # ------------------------------------------------------------------ requesting

    def _signal(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _want(self, live: int) -> int:
        """Messages to ask for now, given ``live`` requested messages not about to expire."""
        if self.credit is None:
            return self.batch if live <= self.batch // 2 else 0
        window = self.credit - self._in_hand
        free = window - self._requested
        if free <= 0 or live > window // 2:
            return 0
        if self._requested == 0 and free > 1:
            # Alone, a request keeps one credit back: renewing it before it expires needs one.
            free -= 1
        return min(free, self.batch)

    async def _top_up(self) -> None:
        now = time.monotonic()
        for subject, request in list(self._requests.items()):
            if request.deadline < now:
                self._forget(subject)  # lost (e.g. across a reconnect)
        if now < self._backoff_until or not self.nc.is_connected:
            return
        renew_at = now + self.expires_s * _RENEW_AHEAD
        live = sum(r.remaining for r in self._requests.values() if r.expires_at > renew_at)
        while (wanted := self._want(live)) > 0:
            self._counter += 1
            reply = f"{self._inbox}.{self._counter}"
            self._requests[reply] = _Request(wanted, now + self.expires_s)
            self._requested += wanted
            live += wanted
            body = {"batch": wanted, "expires": int(self.expires_s * 1e9)}
            await self.nc.publish(self._next_subject, json.dumps(body).encode(), reply=reply)

    def _next_check(self) -> float:
        now = time.monotonic()
        ahead = self.expires_s * _RENEW_AHEAD
        waits = [self.expires_s]
        for request in self._requests.values():
            waits.append(request.deadline - now)
            if request.expires_at - ahead > now:
                waits.append(request.expires_at - ahead - now)
        if self._backoff_until > now:
            waits.append(self._backoff_until - now)
        if not self.nc.is_connected:
            waits.append(_DISCONNECTED_POLL_S)
        return max(_MIN_WAIT_S, min(waits))

    def _forget(self, subject: str) -> _Request | None:
        request = self._requests.pop(subject, None)
        if request is not None:
            self._requested -= request.remaining
        return request

    async def _recover(self) -> None:
        _log.warning("pull request refused: %s", self._refusal, extra=self._where)
        self._refusal = None
        if self.on_refused is None:
            return
        try:
            await self.on_refused()
        except Exception as exc:
            _log.warning("recovery after a refused pull request failed: %s", exc, extra=self._where)

    # ------------------------------------------------------------------- receiving

    async def _on_message(self, msg: Msg) -> None:
        status = msg.headers.get(h.STATUS) if msg.headers else None
        if status is not None and not msg.data:
            self._on_status(msg, status)
            return
        if self._requests:
            subject, request = next(iter(self._requests.items()))
            request.remaining -= 1
            self._requested -= 1
            if request.remaining <= 0:
                del self._requests[subject]
        if self._stopping:
            self._returned.append(msg)
            return
        if self.credit is not None:
            self._in_hand += 1
        self.delivered += 1
        self.handler(msg)
        if self._want(self._requested) > 0:
            self._signal()

    def _on_status(self, msg: Msg, status: str) -> None:
        if status == _HEARTBEAT:
            return
        request = self._forget(msg.subject)
        if request is not None and status not in _REQUEST_OVER:
            # e.g. 409 while the consumer changes leader: do not spin on it.
            description = msg.headers.get(h.STATUS_DESCRIPTION, "") if msg.headers else ""
            self._refusal = f"{status} {description}".strip()
            self._backoff_until = time.monotonic() + self.refusal_pause_s
        self._signal()

    async def _drain(self) -> None:
        """Let outstanding requests run out, then give back whatever still arrived.

        A request is over when the server says so (408 at its expiry); our own estimate of
        its expiry may be early, and a message delivered to an inbox nobody listens on any
        more would only come back after the consumer's ack_wait. The naks wait until our
        requests are over: a message given back earlier would come straight back to them.
        """
        self._stopping = True
        with anyio.move_on_after(self.expires_s + _GRACE_S):
            while self._requests and self.nc.is_connected:
                self._wake = anyio.Event()
                await self._wake.wait()
        returned, self._returned = self._returned, []
        for msg in returned:
            with contextlib.suppress(Exception):
                await msg.nak()
