"""Event <-> bytes. JSON via msgspec; a typed error for anything that is not a known event.

Bytes from the log may come from any client: whatever they hold, decoding them either gives an
event or raises :class:`~eventstore.errors.EventDecodeError`.
"""

from __future__ import annotations

import msgspec

from eventstore.errors import EventDecodeError
from eventstore.events import EVENT_CLASSES, Event

__all__ = ["decode_event", "encode_event"]

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Event)
# What precedes the event id and the time in what :func:`encode_event` writes: looking there
# first spares searching the whole payload (a payload from elsewhere is still searched).
_ID_AT = '{"type":"","execution_id":"","event_id":'
_OCCURRED_AT = ',"occurred_at":'
_ID_OFFSET = {cls: len(_ID_AT) + len(str(cls.__struct_config__.tag)) for cls in EVENT_CLASSES}


def encode_event(event: Event) -> bytes:
    """Serialize an event to JSON bytes."""
    return _encoder.encode(event)


def decode_event(data: bytes) -> Event:
    """Parse JSON bytes into an event.

    Raises:
        EventDecodeError: the bytes are not JSON, have an unknown ``type``, do not match the
            schema of their type, or nest too deeply to decode.
    """
    try:
        event: Event = _decoder.decode(data)
    except RecursionError:
        raise EventDecodeError("undecodable event: nested too deeply") from None
    except ValueError as exc:
        # msgspec.DecodeError and its ValidationError are ValueErrors; so is anything else a
        # malformed payload could make a conversion raise.
        raise EventDecodeError(f"undecodable event: {exc}") from exc
    # Both have defaults for building events in code; on the wire they are facts, and a value
    # made up while decoding would differ from one read to the next. A made-up id or time
    # cannot occur in the bytes it was not read from.
    at = _ID_OFFSET[type(event)] + len(event.execution_id)
    event_id = f'"{event.event_id}"'.encode()
    occurred_at = f'"{event.occurred_at}"'.encode()
    if not (data.startswith(event_id, at) or event_id in data) or not (
        data.startswith(occurred_at, at + len(event_id) + len(_OCCURRED_AT)) or occurred_at in data
    ):
        raise EventDecodeError("undecodable event: event_id and occurred_at are required")
    return event
