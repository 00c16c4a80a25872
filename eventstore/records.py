"""Events as the log holds them (with their position) and the guards an append may carry.

Pure records: the JetStream adapter (:mod:`eventstore.jetstream.log`) produces and consumes
them, the fold, readers and renderers use them without loading the broker client.
"""

from __future__ import annotations

import msgspec

from eventstore import headers as h
from eventstore.codec import decode_event
from eventstore.errors import EventDecodeError
from eventstore.events import Event
from eventstore.subjects import subject_for

__all__ = ["AppendResult", "Guard", "RawRecord", "RecordedEvent"]


class Guard(msgspec.Struct, frozen=True):
    """A condition the server checks before storing one event of an append.

    The event is stored only if the last message on ``subject`` (a subject or filter; default:
    the event's own subject) has sequence ``last_sequence`` (``0``: there is none). A guard
    ``Guard()`` therefore means "this event's subject is still empty": a decision that can be
    stored once, whoever tries to store it.
    """

    last_sequence: int = 0
    subject: str | None = None

    def headers(self) -> dict[str, str]:
        """The JetStream expectation headers of this guard."""
        headers = {h.EXPECTED_LAST_SUBJECT_SEQUENCE: str(self.last_sequence)}
        if self.subject is not None:
            headers[h.EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT] = self.subject
        return headers


class AppendResult(msgspec.Struct, frozen=True):
    """Where an event landed; ``duplicate`` when the log already held it (same event id)."""

    sequence: int
    duplicate: bool = False


class RecordedEvent(msgspec.Struct, frozen=True):
    """An event with its position in the log."""

    sequence: int
    subject: str
    event: Event


class RawRecord(msgspec.Struct, frozen=True):
    """A message of the log before decoding (for tools that must survive poison events).

    ``stored_ns`` is when the log stored it, in nanoseconds since the epoch, where the reader
    learnt it (a replay does); 0 where it did not.
    """

    sequence: int
    subject: str
    data: bytes
    stored_ns: int = 0

    def decode(self) -> RecordedEvent:
        """Decode the payload, believing it only on its own subject.

        Anyone who can publish can put any body on any subject; an event is read as a fact of
        the log only where :func:`~eventstore.subjects.subject_for` puts it (the subject names
        its type, execution and action), so every reader keys it the same way.

        Raises:
            EventDecodeError: the payload is no event, or not the event of this subject (the
                message names the sequence).
        """
        try:
            event = decode_event(self.data)
        except EventDecodeError as exc:
            raise EventDecodeError(f"sequence {self.sequence} ({self.subject}): {exc}") from exc
        if subject_for(event) != self.subject:
            raise EventDecodeError(
                f"sequence {self.sequence} ({self.subject}): a {event.__struct_config__.tag} "
                f"event of execution {event.execution_id!r} on another event's subject"
            )
        return RecordedEvent(self.sequence, self.subject, event)
