"""Telling JetStream that messages in hand are still being worked on (``+WPI``).

One ticker serves every message a process holds, rather than a timer or a task per message:
most messages are settled long before their first beat, so registering one must cost next to
nothing. With it a consumer's ``ack_wait`` can be short (a crashed consumer's messages come
back within seconds) while work that takes longer is not redelivered meanwhile.
"""

from __future__ import annotations

import logging
import time

import anyio
from nats.aio.msg import Msg

__all__ = ["Heartbeats"]

_log = logging.getLogger("tep.heartbeats")

# The server hands a message to another executor 3 intervals (one ack wait) after its last
# beat; beats are at most 1.5 intervals apart while this process runs.
_FRESH_INTERVALS = 2.4


class _Beating:
    __slots__ = ("last", "msg", "stale")

    def __init__(self, msg: Msg, last: float) -> None:
        self.msg = msg
        self.last = last
        self.stale = False


class Heartbeats:
    """Beats every registered message at least every ``1.5 * interval`` seconds.

    Args:
        interval: the beat period; a third of the consumer's ack wait leaves room for a late
            beat.

    Example:
        >>> beats = Heartbeats(10.0)  # doctest: +SKIP
        >>> async with anyio.create_task_group() as tg:  # doctest: +SKIP
        ...     tg.start_soon(beats.run)
        ...     beats.add(msg)
        ...     ...
        ...     beats.discard(msg)
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        # By id: nats-py messages are unhashable dataclasses.
        self._beating: dict[int, _Beating] = {}

    def __len__(self) -> int:
        return len(self._beating)

    def add(self, msg: Msg) -> None:
        """Start beating ``msg`` (its first beat comes after one to one and a half intervals)."""
        self._beating[id(msg)] = _Beating(msg, time.monotonic())

    def fresh(self, msg: Msg) -> bool:
        """Whether ``msg`` was beaten recently enough to be surely still ours (not after this
        process was paused, or its loop stalled, for most of an ack wait)."""
        beating = self._beating.get(id(msg))
        if beating is None or beating.stale:
            return False
        return time.monotonic() - beating.last < _FRESH_INTERVALS * self.interval

    def discard(self, msg: Msg) -> None:
        """Stop beating ``msg`` (no error if it is not registered)."""
        self._beating.pop(id(msg), None)

    def clear(self) -> None:
        """Stop beating every message."""
        self._beating.clear()

    async def run(self) -> None:
        """Beat due messages every half interval, until cancelled."""
        while True:
            await anyio.sleep(self.interval / 2)
            now = time.monotonic()
            due = [b for b in self._beating.values() if now - b.last >= self.interval]
            for beating in due:
                if now - beating.last >= _FRESH_INTERVALS * self.interval:
                    beating.stale = True
                beating.last = now
                try:
                    await beating.msg.in_progress()
                except Exception as exc:
                    _log.debug("heartbeat failed: %s", exc)
