"""Telling JetStream that requests in hand are still being worked on (``+WPI``).

One ticker serves every attempt of the process, rather than a timer or a task per attempt:
most attempts end long before their first beat, so registering one must cost next to nothing.
"""

from __future__ import annotations

import logging
import time

import anyio
from nats.aio.msg import Msg

__all__ = ["Heartbeats"]

_log = logging.getLogger("tep.executor")


class _Beating:
    __slots__ = ("last", "msg")

    def __init__(self, msg: Msg, last: float) -> None:
        self.msg = msg
        self.last = last


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

    def discard(self, msg: Msg) -> None:
        """Stop beating ``msg`` (no error if it is not registered)."""
        self._beating.pop(id(msg), None)

    async def run(self) -> None:
        """Beat due messages every half interval, until cancelled."""
        while True:
            await anyio.sleep(self.interval / 2)
            now = time.monotonic()
            due = [b for b in self._beating.values() if now - b.last >= self.interval]
            for beating in due:
                beating.last = now
                try:
                    await beating.msg.in_progress()
                except Exception as exc:
                    _log.debug("heartbeat failed: %s", exc)
