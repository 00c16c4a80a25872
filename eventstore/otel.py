"""OpenTelemetry spans of executions, actions and attempts, when the ``otel`` extra is there.

With ``pip install 'tep[otel]'`` and ``OTEL_EXPORTER_OTLP_ENDPOINT`` set, every role process
exports spans over OTLP (:func:`configure`, called once at start): the executor one per
attempt (claim to outcome, live), the orchestrator one per action (dispatch to outcome) and
one per execution (submit to end), both recorded when they end. Every span belongs to the
trace the execution's events carry (:mod:`eventstore.tracing`) and has the span of the event
it was started from as its parent. The standard ``OTEL_*`` variables (protocol, headers,
service name...) apply.

Without the extra, or without an endpoint, nothing is imported and every function here is a
check of one module variable: :func:`span` yields a fresh child span id, :func:`record_span`
does nothing.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from eventstore.tracing import TraceContext

__all__ = ["Span", "configure", "enabled", "record_span", "shutdown", "span"]

_log = logging.getLogger("tep.otel")
_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")

Attributes = Mapping[str, str | int | float | bool]

_tracer: Any = None
_provider: Any = None


def enabled() -> bool:
    """Whether spans are exported."""
    return _tracer is not None


def configure(
    service_name: str, *, exporter: Any = None, environ: Mapping[str, str] | None = None
) -> bool:
    """Export spans of this process as ``service_name`` when the SDK is installed and an OTLP
    endpoint is set (or ``exporter``, e.g. an in-memory one, is given); returns whether spans
    are exported from now on."""
    global _tracer, _provider
    env = os.environ if environ is None else environ
    if exporter is None and not any(env.get(name) for name in _ENDPOINT_VARIABLES):
        return False
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError:
        _log.warning("an OTLP endpoint is set, but the otel extra is not installed: no spans")
        return False
    if exporter is None:
        processor: Any = BatchSpanProcessor(_otlp_exporter(env))
    else:
        processor = SimpleSpanProcessor(exporter)
    name = env.get("OTEL_SERVICE_NAME") or service_name
    _provider = TracerProvider(resource=Resource.create({"service.name": name}))
    _provider.add_span_processor(processor)
    _tracer = _provider.get_tracer("tep")
    return True


def _otlp_exporter(env: Mapping[str, str]) -> Any:
    """The OTLP exporter of ``OTEL_EXPORTER_OTLP_PROTOCOL`` (``grpc``, the default, or
    ``http/protobuf``); it reads the endpoint and headers from the environment itself."""
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"
    )
    kind = "http" if protocol.startswith("http") else "grpc"
    module = importlib.import_module(f"opentelemetry.exporter.otlp.proto.{kind}.trace_exporter")
    return module.OTLPSpanExporter()


def shutdown() -> None:
    """Export what is still buffered and stop exporting."""
    global _tracer, _provider
    provider, _provider, _tracer = _provider, None, None
    if provider is not None:
        provider.shutdown()


class Span:
    """A span being recorded; :attr:`context` is its place in the trace."""

    def __init__(self, context: TraceContext, otel_span: Any = None) -> None:
        self.context = context
        self._span = otel_span

    def set(self, key: str, value: str | int | float | bool) -> None:
        """Set an attribute (nothing without export)."""
        if self._span is not None:
            self._span.set_attribute(key, value)

    def fail(self, message: str) -> None:
        """Mark the span as failed with ``message``."""
        if self._span is not None:
            from opentelemetry.trace import Status, StatusCode

            self._span.set_status(Status(StatusCode.ERROR, message))


@contextmanager
def span(name: str, parent: TraceContext, attributes: Attributes) -> Iterator[Span]:
    """Record a span, child of ``parent``, for the duration of the block.

    Without export the span is only an id: a new child of ``parent``.
    """
    if _tracer is None:
        yield Span(parent.child())
        return
    with _tracer.start_as_current_span(
        name, context=_parent_context(parent), attributes=dict(attributes)
    ) as otel_span:
        own = otel_span.get_span_context()
        yield Span(TraceContext(f"{own.trace_id:032x}", f"{own.span_id:016x}"), otel_span)


def record_span(
    name: str,
    parent: TraceContext | None,
    start: datetime | str | None,
    end: datetime | str | None,
    attributes: Attributes,
    *,
    error: str | None = None,
) -> None:
    """Record a span that already ended (``start``/``end`` as datetimes or ISO 8601 strings).

    Nothing happens without export, without a parent or without both times.
    """
    if _tracer is None or parent is None or start is None or end is None:
        return
    otel_span = _tracer.start_span(
        name,
        context=_parent_context(parent),
        attributes=dict(attributes),
        start_time=_nanoseconds(start),
    )
    if error is not None:
        Span(parent, otel_span).fail(error)
    otel_span.end(end_time=_nanoseconds(end))


def _nanoseconds(moment: datetime | str) -> int:
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return int(moment.timestamp() * 1_000_000_000)


def _parent_context(parent: TraceContext) -> Any:
    from opentelemetry import trace

    remote = trace.SpanContext(
        trace_id=int(parent.trace_id, 16),
        span_id=int(parent.span_id, 16),
        is_remote=True,
        trace_flags=trace.TraceFlags(int(parent.flags, 16)),
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(remote))
