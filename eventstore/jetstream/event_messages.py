"""How an event becomes a log message, and how the server's refusal of one becomes our error.

Every message is published with ``Nats-Msg-Id: <event_id>`` (the dedupe key), a
``traceparent`` (a child span of the current trace, :mod:`eventstore.tracing`, when there is
one) and, for an optimistic append, the expectation headers of the execution's version or of a
:class:`Guard`.
"""

from __future__ import annotations

from eventstore import headers as h
from eventstore.codec import encode_event
from eventstore.errors import (
    ConcurrencyError,
    EventTooLargeError,
    ExecutionExistsError,
    TepError,
)
from eventstore.events import Event, PlanSubmitted
from eventstore.jetstream.api_errors import is_wrong_last_sequence, sequence_in
from eventstore.records import Guard
from eventstore.subjects import action_version_filter, subject_for
from eventstore.tracing import current_trace

__all__ = ["append_refused", "event_message", "expectation_headers"]

_PROTOCOL_ROOM = 64
"""Bytes kept free in a message for what the protocol adds around it."""


def event_message(
    event: Event, limit: int, extra_headers: dict[str, str] | None = None
) -> tuple[str, bytes, dict[str, str]]:
    """The subject, payload and headers that store ``event``.

    Args:
        event: the event.
        limit: the largest message the server takes, in bytes.
        extra_headers: added to the event's own (expectations, batch headers).

    Raises:
        EventTooLargeError: the message would not fit ``limit``.
    """
    subject = subject_for(event)
    payload = encode_event(event)
    headers = {h.MSG_ID: event.event_id}
    trace = current_trace()
    if trace is not None:
        # Each event a span of its own in the trace of the work that appends it.
        headers[h.TRACEPARENT] = trace.child().header()
    if extra_headers:
        headers.update(extra_headers)
    size = len(payload) + len(subject) + sum(len(k) + len(v) + 4 for k, v in headers.items())
    if size + _PROTOCOL_ROOM > limit:
        raise EventTooLargeError(
            f"{event.__struct_config__.tag} for execution {event.execution_id} is {size} bytes;"
            f" the limit for one message is {limit} bytes"
        )
    return subject, payload, headers


def expectation_headers(
    execution_id: str, expected_version: int | None, guard: Guard | None = None
) -> dict[str, str]:
    """The headers that make the server check ``expected_version`` or ``guard`` (or nothing).

    Raises:
        ValueError: both were given.
    """
    if guard is not None:
        if expected_version is not None:
            raise ValueError("one event cannot carry both expected_version and a guard")
        return guard.headers()
    if expected_version is None:
        return {}
    return {
        h.EXPECTED_LAST_SUBJECT_SEQUENCE: str(expected_version),
        h.EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT: action_version_filter(execution_id),
    }


def append_refused(
    err_code: int | None, description: str | None, event: Event, expected: int | None
) -> TepError:
    """The error for an append of ``event`` the server refused with ``err_code``.

    A lost compare-and-set is :class:`ExecutionExistsError` for a ``plan.submitted`` and
    :class:`ConcurrencyError` otherwise; anything else a plain :class:`TepError`.
    """
    if is_wrong_last_sequence(err_code):
        if isinstance(event, PlanSubmitted):
            return ExecutionExistsError(event.execution_id)
        return ConcurrencyError(event.execution_id, expected or 0, sequence_in(description))
    return TepError(f"append of {event.__struct_config__.tag} failed: {description}")
