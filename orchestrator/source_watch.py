"""Keeps the log's copy into the partition stream moving after the log's leader is lost.

The server copies the log into the partition stream through an internal consumer of the log,
which sends a heartbeat every second when there is nothing to copy. When the log's leader is
lost, that consumer is gone; the server notices after 10 s and makes it again, but while the
log has no leader each try fails and the next one waits longer (10 s, 20 s, ... up to 2 min).
Every execution waits as long: nothing new reaches any partition.

:class:`SourceWatch` runs beside partition 0's consumer. It reads the source's ``active`` (the
time since its last message or heartbeat) once a second; silent for longer than a few
heartbeats, the partition stream's leader is asked to step down, and the new leader sets the
copy up at once, from where it had got to (nothing is skipped or copied twice: the server keeps
the source's position in the stream). Asked again while it stays silent, at most every few
seconds. On a single server the copy is never silent for long, so the watch never acts.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import anyio
import msgspec
from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError
from nats.js.api import StreamInfo
from nats.js.errors import Error as JetStreamError

__all__ = ["SILENT_S", "Silence", "SourceWatch"]

_log = logging.getLogger("tep.orchestrator.source")

SILENT_S = 4.0
"""A source silent this long (four missed heartbeats) is set up again."""
_KICK_EVERY_S = 5.0
_LOOK_EVERY_S = 1.0
_API_TIMEOUT_S = 2.0
KICKS = "source_step_downs"
"""Counter in the orchestrator's stats: step-downs asked of the partition stream's leader."""


@dataclass
class Silence:
    """The pure rule: given what each look saw, whether to ask for a step-down now."""

    silent_s: float = SILENT_S
    kick_every_s: float = _KICK_EVERY_S
    _unheard_since: float | None = None
    _kicked_at: float | None = None

    def kick(self, active_ns: int | None, now: float) -> bool:
        """Whether to kick, given the source's ``active`` (nanoseconds since it was last heard
        from; negative or ``None``: not heard from since its leader set it up) at ``now``."""
        if active_ns is None or active_ns < 0:
            if self._unheard_since is None:
                self._unheard_since = now
            silent = now - self._unheard_since
        else:
            self._unheard_since = None
            silent = active_ns / 1e9
        if silent < self.silent_s:
            return False
        if self._kicked_at is not None and now - self._kicked_at < self.kick_every_s:
            return False
        self._kicked_at = now
        self._unheard_since = None  # the new leader is given its own time
        return True


def _active_ns(info: StreamInfo) -> int | None:
    sources = info.sources or []
    if not sources:
        return 0  # not sourced (yet): nothing to watch
    return sources[0].active


class SourceWatch:
    """Looks at the partition stream's source once a second until cancelled.

    Args:
        nc: the connection (the step-down is a JetStream API request).
        stream: the partition stream.
        stats: counters to add to (the orchestrator's).
    """

    def __init__(
        self,
        nc: NatsClient,
        stream: str,
        *,
        stats: dict[str, int],
    ) -> None:
        self.nc = nc
        self.stream = stream
        self.stats = stats
        self.rule = Silence()

    async def run(self) -> None:
        """Look, and kick when the rule says so, until cancelled."""
        js = self.nc.jetstream()
        while True:
            await anyio.sleep(_LOOK_EVERY_S)
            try:
                info = await js.stream_info(self.stream)
            except (NatsError, JetStreamError, TimeoutError):
                continue  # the server is busy or electing: look again
            active_ns = _active_ns(info)
            if self.rule.kick(active_ns, time.monotonic()):
                await self._step_down(active_ns)

    async def _step_down(self, active_ns: int | None) -> None:
        silent = "not heard from" if not active_ns or active_ns < 0 else f"{active_ns / 1e9:.1f}s"
        _log.warning(
            "the log's copy into %s is silent (%s): asking its leader to step down",
            self.stream,
            silent,
            extra={"stream": self.stream},
        )
        self.stats[KICKS] = self.stats.get(KICKS, 0) + 1
        subject = f"$JS.API.STREAM.LEADER.STEPDOWN.{self.stream}"
        try:
            reply = await self.nc.request(subject, b"", timeout=_API_TIMEOUT_S)
            error = msgspec.json.decode(reply.data).get("error")
        except (NatsError, TimeoutError, msgspec.DecodeError, AttributeError) as exc:
            _log.warning("step-down of %s was not answered: %r", self.stream, exc)
            return
        if error:
            _log.warning("step-down of %s refused: %s", self.stream, error)
