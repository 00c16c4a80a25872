"""The trace of a delivery and the span of an attempt (see :mod:`eventstore.tracing`).

A delivery continues the trace of its request (the message's ``traceparent``; a new trace when
it has none or an invalid one). An attempt is a span of its own, child of the request's: the
events it appends and the ``traceparent`` its call sends are of that span, and with
OpenTelemetry export (:mod:`eventstore.otel`) it is exported with its disposition.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from nats.aio.msg import Msg

from eventstore import otel
from eventstore.events import ActionExecuteRequested
from eventstore.tracing import current_trace, new_trace, trace_from_headers, use_trace

__all__ = ["AttemptSpan", "attempt_span", "delivery_trace", "traceparent"]

_FAILED = frozenset({"failed", "retry"})


class AttemptSpan:
    """The span of one attempt; say how it ended with :meth:`ended`."""

    def __init__(self, span: otel.Span, attempt: int) -> None:
        self._span = span
        self._attempt = attempt

    def ended(self, disposition: str) -> None:
        """The attempt's delivery ended as ``disposition`` (see ``executor.dispositions``)."""
        self._span.set("tep.disposition", disposition)
        if disposition in _FAILED:
            self._span.fail(f"attempt {self._attempt}: {disposition}")


@contextmanager
def delivery_trace(msg: Msg) -> Iterator[None]:
    """Within the block, the current span is the one of the request ``msg`` carries."""
    with use_trace(trace_from_headers(msg.headers)):
        yield


@contextmanager
def attempt_span(
    request: ActionExecuteRequested, attempt: int, queue: str
) -> Iterator[AttemptSpan]:
    """Within the block, the current span is a new span of the attempt, child of the current
    one (a new trace if there is none)."""
    attributes: dict[str, str | int | float | bool] = {
        "tep.execution_id": request.execution_id,
        "tep.action_id": request.action_id,
        "tep.attempt": attempt,
        "tep.queue": queue,
    }
    parent = current_trace() or new_trace()
    with (
        otel.span(f"attempt {request.action_id}", parent, attributes) as span,
        use_trace(span.context),
    ):
        yield AttemptSpan(span, attempt)


def traceparent() -> str | None:
    """The current span as a ``traceparent`` header value, if there is one."""
    trace = current_trace()
    return None if trace is None else trace.header()
