"""W3C trace context: the ``traceparent`` an execution's events carry, and the current one.

A trace starts where a plan is submitted (a random trace id, unless the caller brings its own
``traceparent``) and travels in the :data:`~eventstore.headers.TRACEPARENT` header of every
event appended on its behalf: the orchestrator's decisions, the executor's outcomes, and the
request the executor sends to the action's target. Event bodies never carry it (events are
immutable contract types); a header is metadata of one message.

The trace of the work at hand is a context variable (:func:`current_trace`): a role sets it
to the span of the message it handles (:func:`use_trace`), the log's append gives every event
it stores a new child span of it, the structured logs name its trace id. Every task has its
own copy, so concurrent messages never see each other's trace.

Parsing is strict (version ``00``, lowercase hex of the right lengths, ids not all zeros):
anything else is no trace context, and :func:`trace_from_header` starts a new trace instead.
It never raises on what arrives in a header.

Example:
    >>> parent = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    >>> parent.trace_id
    '4bf92f3577b34da6a3ce929d0e0e4736'
    >>> child = parent.child()
    >>> child.trace_id == parent.trace_id and child.span_id != parent.span_id
    True
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token

import msgspec

from eventstore.headers import TRACEPARENT

__all__ = [
    "TraceContext",
    "client_trace",
    "current_trace",
    "current_trace_id",
    "new_trace",
    "parse_traceparent",
    "reset_trace",
    "set_trace",
    "trace_from_header",
    "trace_from_headers",
    "use_trace",
]

_VERSION = "00"
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
_SAMPLED = "01"
# Ids need to be unique, not secret: the module's generator (seeded from the OS) is several
# times cheaper than the secrets module on a path taken for every event.
_random = random.Random()


class TraceContext(msgspec.Struct, frozen=True):
    """One span of a trace: the ids a ``traceparent`` header carries.

    Attributes:
        trace_id: 32 lowercase hex digits, the same for every span of the trace.
        span_id: 16 lowercase hex digits, this span's own id.
        flags: 2 hex digits (``01``: sampled).
    """

    trace_id: str
    span_id: str
    flags: str = _SAMPLED

    def header(self) -> str:
        """This span as a ``traceparent`` header value."""
        return f"{_VERSION}-{self.trace_id}-{self.span_id}-{self.flags}"

    def child(self) -> TraceContext:
        """A new span of the same trace, whose parent is this one."""
        return TraceContext(self.trace_id, _span_id(), self.flags)


def new_trace() -> TraceContext:
    """The first span of a new trace (random ids, sampled)."""
    return TraceContext(f"{_random.getrandbits(128) or 1:032x}", _span_id())


def _span_id() -> str:
    return f"{_random.getrandbits(64) or 1:016x}"


def parse_traceparent(value: str | None) -> TraceContext | None:
    """The trace context of a ``traceparent`` header value, or ``None`` if it is not one.

    Only version ``00`` is read (the one this module writes); a value of another version, with
    upper-case or non-hex digits, wrong lengths or all-zero ids is ``None``, never an error.
    """
    match = _TRACEPARENT.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return None
    trace_id, span_id, flags = match.groups()
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return TraceContext(trace_id, span_id, flags)


def client_trace(traceparent: str | None = None) -> TraceContext:
    """The span a client's write belongs to: the valid ``traceparent`` it was given, else the
    current span (a caller already in a trace), else the first span of a new trace."""
    return parse_traceparent(traceparent) or current_trace() or new_trace()


def trace_from_headers(headers: Mapping[str, str] | None) -> TraceContext:
    """:func:`trace_from_header` of a message's :data:`~eventstore.headers.TRACEPARENT`."""
    return trace_from_header(headers.get(TRACEPARENT) if headers else None)


def trace_from_header(value: str | None) -> TraceContext:
    """The span a ``traceparent`` header value names; the first span of a new trace when it
    names none (absent or invalid: an invalid inbound value is replaced, never passed on)."""
    return parse_traceparent(value) or new_trace()


_current: ContextVar[TraceContext | None] = ContextVar("tep_trace", default=None)


def current_trace() -> TraceContext | None:
    """The span of the work at hand in this task, if any."""
    return _current.get()


def current_trace_id() -> str | None:
    """The trace id of :func:`current_trace` (for log lines), if any."""
    trace = _current.get()
    return None if trace is None else trace.trace_id


def set_trace(trace: TraceContext | None) -> Token[TraceContext | None]:
    """Make ``trace`` the current span of this task; :func:`reset_trace` undoes it."""
    return _current.set(trace)


def reset_trace(token: Token[TraceContext | None]) -> None:
    """Restore the span that was current before :func:`set_trace` returned ``token``."""
    _current.reset(token)


@contextmanager
def use_trace(trace: TraceContext | None) -> Iterator[TraceContext | None]:
    """Make ``trace`` the current span of this task until the block ends."""
    token = _current.set(trace)
    try:
        yield trace
    finally:
        _current.reset(token)
