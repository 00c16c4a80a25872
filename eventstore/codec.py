"""Event <-> bytes. JSON via msgspec; a typed error for anything that is not a known event."""

from __future__ import annotations

import msgspec

from eventstore.errors import EventDecodeError
from eventstore.events import Event

__all__ = ["decode_event", "encode_event"]

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Event)


def encode_event(event: Event) -> bytes:
    """Serialize an event to JSON bytes."""
    return _encoder.encode(event)


def decode_event(data: bytes) -> Event:
    """Parse JSON bytes into an event.

    Raises:
        EventDecodeError: the bytes are not JSON, have an unknown ``type``, or do not match the
            schema of their type.
    """
    try:
        event: Event = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise EventDecodeError(f"undecodable event: {exc}") from exc
    return event
