"""A continuous feed from a durable pull consumer: each message handed over as it arrives.

``fetch(batch=n)`` of nats-py waits for the whole batch (or its timeout) once a message came,
which would add its timeout to every step of a chain. The feed instead keeps pull requests
outstanding (each for ``batch`` messages, expiring after ``expires_s``), tops them up when
fewer than half a batch remain requested, and passes every message to ``handler`` the moment
it arrives. Flow control is the consumer's ``max_ack_pending``.

Stopping (cancellation) stops requesting, waits at most ``expires_s`` for the outstanding
requests to end and naks whatever still arrives, so another replica gets it at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

import anyio
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

__all__ = ["PullFeed"]

_log = logging.getLogger("tep.orchestrator.feed")
_STATUS = "Status"
_HEARTBEAT = "100"
_GRACE_S = 1.0
_ERROR_BACKOFF_S = 0.5


class _Request:
    __slots__ = ("deadline", "remaining")

    def __init__(self, batch: int, deadline: float) -> None:
        self.remaining = batch
        self.deadline = deadline


class PullFeed:
    """Delivers the messages of durable pull consumer ``consumer`` of ``stream`` to ``handler``.

    Args:
        nc: the connection.
        stream: the stream's name.
        consumer: the durable consumer's name (it must exist).
        handler: called with each message, in delivery order; it must not block.
        batch: messages per pull request.
        expires_s: lifetime of a pull request.
        api_prefix: the JetStream API prefix (``$JS.API`` unless a domain is used).
    """

    def __init__(
        self,
        nc: NatsClient,
        stream: str,
        consumer: str,
        handler: Callable[[Msg], None],
        *,
        batch: int = 256,
        expires_s: float = 1.0,
        api_prefix: str = "$JS.API",
    ) -> None:
        self.nc = nc
        self.handler = handler
        self.batch = batch
        self.expires_s = expires_s
        self._next_subject = f"{api_prefix}.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._inbox = nc.new_inbox()
        # Outstanding requests by reply subject, oldest first. Data messages arrive with their
        # own subject, not the request's, so they are counted against the oldest request: the
        # server serves waiting requests in order. Status messages name their request.
        self._requests: OrderedDict[str, _Request] = OrderedDict()
        self._counter = 0
        self._stopping = False
        self._wake = anyio.Event()
        self._backoff_until = 0.0
        self.delivered = 0

    async def run(self) -> None:
        """Feed messages to the handler until cancelled."""
        sub = await self.nc.subscribe(f"{self._inbox}.*", cb=self._on_message)
        try:
            while True:
                await self._top_up()
                with anyio.move_on_after(self._next_check()):
                    await self._wake.wait()
                self._wake = anyio.Event()
        finally:
            with anyio.CancelScope(shield=True):
                await self._drain()
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    async def _top_up(self) -> None:
        now = time.monotonic()
        for subject, request in list(self._requests.items()):
            if request.deadline < now:
                del self._requests[subject]  # lost (e.g. across a reconnect)
        if now < self._backoff_until or not self.nc.is_connected:
            return
        if sum(r.remaining for r in self._requests.values()) > self.batch // 2:
            return
        self._counter += 1
        reply = f"{self._inbox}.{self._counter}"
        self._requests[reply] = _Request(self.batch, now + self.expires_s + _GRACE_S)
        body = {"batch": self.batch, "expires": int(self.expires_s * 1e9)}
        await self.nc.publish(self._next_subject, json.dumps(body).encode(), reply=reply)

    def _next_check(self) -> float:
        now = time.monotonic()
        waits = [r.deadline - now for r in self._requests.values()]
        waits.append(self._backoff_until - now if self._backoff_until > now else self.expires_s)
        return max(0.01, min(waits))

    async def _on_message(self, msg: Msg) -> None:
        status = msg.headers.get(_STATUS) if msg.headers else None
        if status is not None and not msg.data:
            if status == _HEARTBEAT:
                return
            request = self._requests.pop(msg.subject, None)
            if request is not None and status not in ("404", "408"):
                # e.g. 409 while the consumer changes leader: do not spin on it.
                self._backoff_until = time.monotonic() + _ERROR_BACKOFF_S
                description = msg.headers.get("Description", "") if msg.headers else ""
                _log.warning("pull request ended with %s %s", status, description)
            self._wake.set()
            return
        if self._requests:
            subject, request = next(iter(self._requests.items()))
            request.remaining -= 1
            if request.remaining <= 0:
                del self._requests[subject]
            if sum(r.remaining for r in self._requests.values()) <= self.batch // 2:
                self._wake.set()
        if self._stopping:
            await msg.nak()
            return
        self.delivered += 1
        self.handler(msg)

    async def _drain(self) -> None:
        """Let outstanding requests run out, giving back whatever still arrives.

        A request is over when the server says so (408 at its expiry); our own estimate of
        its expiry may be early, and a message delivered to an inbox nobody listens on any
        more would only come back after the consumer's ack_wait.
        """
        self._stopping = True
        with anyio.move_on_after(self.expires_s + _GRACE_S):
            while self._requests and self.nc.is_connected:
                self._wake = anyio.Event()
                await self._wake.wait()
