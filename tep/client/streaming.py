"""Following an execution's event stream across reconnects: what the sync and the async
client share. Pure (the clients do the I/O)."""

from __future__ import annotations

from typing import Any

import httpx

from eventstore.state import ExecutionState
from tep.client.calls import decode_state, stream_request
from tep.client.sse import SseParser

__all__ = ["STREAM_ERRORS", "StreamFollower"]

STREAM_ERRORS: tuple[type[Exception], ...] = (httpx.TransportError,)
"""What ends a stream's connection without ending the stream: reconnect."""

_FIRST_DELAY_S = 0.1


class StreamFollower:
    """Where a stream is: the last state's id (sent as ``Last-Event-ID`` on reconnecting),
    whether it ended, and how long to wait before the next try.

    Args:
        after: start after this sequence (``None``: with the current state).
        until_end: stop after a terminal state.
    """

    def __init__(self, *, after: int | None, until_end: bool) -> None:
        self.after = after
        self.until_end = until_end
        self.last_id: str | None = None
        self.ended = False
        self.retry_ms = 2000
        self._failures = 0

    def request(self, execution_id: str) -> tuple[str, dict[str, Any], dict[str, str]]:
        """The path, query and headers of the next connection."""
        return stream_request(
            execution_id, last_id=self.last_id, after=self.after, until_end=self.until_end
        )

    def feed(self, parser: SseParser, line: str) -> ExecutionState | None:
        """One line of the stream; the state it completes, if any."""
        event = parser.feed(line)
        if parser.retry_ms is not None:
            self.retry_ms = parser.retry_ms
        if event is None:
            return None
        if event.event == "end":
            self.ended = True
            return None
        if event.event != "state":
            return None
        state = decode_state(event.data.encode())
        self.last_id = event.id
        self._failures = 0
        return state

    def delay_s(self) -> float:
        """Seconds to wait before reconnecting: quick at first, then up to the server's
        ``retry``."""
        delay = min(_FIRST_DELAY_S * 2.0**self._failures, self.retry_ms / 1000)
        self._failures += 1
        return delay
