"""Whether a projector keeps up with the log, and when it must start following it over.

Connected is not enough to be healthy: after a nats-server restart the ordered consumer is
gone and an answer to a write sent before the drop never comes, while the connection itself
is fine again. :class:`ProgressWatch` tells such a projector apart from an idle one:

- *progress* is a batch applied, or a look at the log finding nothing past the checkpoint
  (schedule holders are no events: the checkpoint never lands on one);
- *stalled* is no progress for ``stall_s`` while no batch is being applied;
- :meth:`ProgressWatch.watch` raises :class:`ProjectionRestart` at once after a reconnect, and
  when stalled, so the projector follows the log again from its checkpoint.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import anyio
from nats.aio.client import Client as NatsClient
from nats.js.errors import NotFoundError

from eventstore import headers as h
from eventstore.errors import TepError
from eventstore.jetstream.log import EventLog

__all__ = ["DEFAULT_STALL_S", "ProgressWatch", "ProjectionRestart"]

DEFAULT_STALL_S = 10.0
_WATCH_S = 0.1
_LAG_CHECK_S = 1.0
# A few schedule holders in a row at the end of the log are looked past.
_HOLDERS_LOOKED_PAST = 16


class ProjectionRestart(TepError):
    """Following starts over from the checkpoint: reconnected, or stalled behind the log."""


class ProgressWatch:
    """Tracks a projector's progress against the log.

    Args:
        nc: the projector's connection (its reconnects are counted).
        log: the event log it follows.
        stall_s: no progress for this long while not applying a batch is a stall.
    """

    def __init__(self, nc: NatsClient, log: EventLog, stall_s: float = DEFAULT_STALL_S) -> None:
        self.nc = nc
        self.log = log
        self.stall_s = stall_s
        # Often enough that an idle projector is seen caught up well before it looks stalled.
        self._check_every = min(_LAG_CHECK_S, stall_s / 4)
        self.log_last_sequence = 0
        self._progress_at = time.monotonic()
        self._applying = False

    @property
    def stalled(self) -> bool:
        """No progress for ``stall_s``, and no batch being applied."""
        return not self._applying and time.monotonic() - self._progress_at >= self.stall_s

    def progressed(self) -> None:
        """Note progress (a batch applied)."""
        self._progress_at = time.monotonic()

    @contextlib.contextmanager
    def applying(self) -> Iterator[None]:
        """Around applying one batch: however long it takes, it is no stall (its writes have
        timeouts of their own); progress once it is done."""
        self._applying = True
        try:
            yield
        finally:
            self._applying = False
        self.progressed()

    async def watch(self, checkpoint: Callable[[], int]) -> None:
        """Raise :class:`ProjectionRestart` after a reconnect, or once stalled; else forever.

        Args:
            checkpoint: the projector's checkpoint now.
        """
        reconnects = self._reconnects()
        started = checked_at = time.monotonic()
        while True:
            await anyio.sleep(_WATCH_S)
            if self._reconnects() != reconnects:
                raise ProjectionRestart("reconnected to NATS")
            now = time.monotonic()
            if self._applying or now - self._progress_at < self._check_every:
                continue
            if now - checked_at >= self._check_every:
                checked_at = now
                # A log that does not answer in time is no sign of being caught up.
                with anyio.move_on_after(self._check_every), contextlib.suppress(Exception):
                    if not await self._behind(checkpoint()):
                        self.progressed()
            if self.stalled and now - started >= self.stall_s:
                raise ProjectionRestart(
                    f"nothing applied for {now - self._progress_at:.0f}s although the log "
                    f"is at sequence {self.log_last_sequence} and the view at {checkpoint()}"
                )

    def _reconnects(self) -> int:
        return int(self.nc.stats.get("reconnects", 0))

    async def _behind(self, checkpoint: int) -> bool:
        """Whether the log holds an event past ``checkpoint``."""
        self.log_last_sequence = await self.log.last_sequence()
        sequence = checkpoint + 1
        for _ in range(_HOLDERS_LOOKED_PAST):
            if sequence > self.log_last_sequence:
                return False
            try:
                msg = await self.log.js.get_msg(
                    self.log.stream, seq=sequence, subject=">", next=True, direct=True
                )
            except NotFoundError:
                return False
            if not (msg.headers and h.SCHEDULE in msg.headers):
                return True
            sequence = int(msg.seq or sequence) + 1
        return True
