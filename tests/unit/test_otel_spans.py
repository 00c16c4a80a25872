"""OpenTelemetry export: a no-op without the extra or an endpoint, spans in the trace with it."""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from eventstore import otel
from eventstore.tracing import new_trace

InMemorySpanExporter = pytest.importorskip(
    "opentelemetry.sdk.trace.export.in_memory_span_exporter"
).InMemorySpanExporter


@pytest.fixture(autouse=True)
def no_export_after() -> Iterator[None]:
    yield
    otel.shutdown()


@pytest.fixture
def exported() -> Any:
    exporter = InMemorySpanExporter()
    assert otel.configure("tep-test", exporter=exporter)
    return exporter


def test_without_an_endpoint_nothing_is_exported() -> None:
    assert not otel.configure("tep-test", environ={})
    assert not otel.enabled()
    parent = new_trace()

    with otel.span("attempt a", parent, {"tep.attempt": 1}) as span:
        span.set("tep.disposition", "completed")
        span.fail("nothing to fail")

    assert span.context.trace_id == parent.trace_id
    assert span.context.span_id != parent.span_id
    otel.record_span("action a", parent, datetime.now(UTC), datetime.now(UTC), {})


def test_without_the_extra_an_endpoint_only_warns(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_import = builtins.__import__

    def no_sdk(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("opentelemetry"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sdk)

    assert not otel.configure("tep-test", environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"})
    assert not otel.enabled()
    assert "otel extra is not installed" in caplog.text
    with otel.span("attempt a", new_trace(), {}) as span:
        assert span.context.span_id


def test_a_span_is_a_child_of_its_parent_and_gives_its_own_ids(exported: Any) -> None:
    parent = new_trace()

    with otel.span("attempt a", parent, {"tep.attempt": 2}) as span:
        span.set("tep.disposition", "retry")
        span.fail("attempt 2: retry")

    [finished] = exported.get_finished_spans()
    assert finished.name == "attempt a"
    assert f"{finished.context.trace_id:032x}" == parent.trace_id
    assert f"{finished.parent.span_id:016x}" == parent.span_id
    assert f"{finished.context.span_id:016x}" == span.context.span_id
    assert finished.attributes == {"tep.attempt": 2, "tep.disposition": "retry"}
    assert finished.status.description == "attempt 2: retry"
    assert finished.resource.attributes["service.name"] == "tep-test"


def test_a_span_that_already_ended_is_recorded_with_its_times(exported: Any) -> None:
    parent = new_trace()
    end = datetime.now(UTC)
    start = end - timedelta(seconds=2)

    otel.record_span(
        "execution p", parent, start.isoformat(), end, {"tep.status": "failed"}, error="boom"
    )
    otel.record_span("no end", parent, start, None, {})
    otel.record_span("no parent", None, start, end, {})

    [finished] = exported.get_finished_spans()
    assert finished.name == "execution p"
    assert f"{finished.context.trace_id:032x}" == parent.trace_id
    assert (finished.end_time - finished.start_time) == pytest.approx(2e9, rel=1e-6)
    assert finished.status.description == "boom"
