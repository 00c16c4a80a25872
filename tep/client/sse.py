"""Reading a Server-Sent Events stream line by line (the WHATWG parsing rules). Pure."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["SseEvent", "SseParser"]


@dataclass(frozen=True)
class SseEvent:
    """One dispatched event: its type (``message`` by default), data and id."""

    event: str
    data: str
    id: str | None


@dataclass
class SseParser:
    """Feed it the stream's lines; it returns each event when its blank line arrives.

    Attributes:
        last_id: the last ``id`` seen (what to send as ``Last-Event-ID`` on reconnecting).
        retry_ms: the last ``retry`` the server asked for.
    """

    last_id: str | None = None
    retry_ms: int | None = None
    _event: str = ""
    _data: list[str] = field(default_factory=list)

    def feed(self, line: str) -> SseEvent | None:
        """One line (without its end of line); the event it completes, if any."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self.last_id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> SseEvent | None:
        event, data = self._event or "message", self._data
        self._event, self._data = "", []
        if not data:
            return None
        return SseEvent(event=event, data="\n".join(data), id=self.last_id)
