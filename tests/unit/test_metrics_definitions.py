"""The Prometheus metrics: what the helpers count, the text a scrape gets, the docs of each."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

import eventstore.metrics
import executor.metrics
import orchestrator.metrics
import projections.metrics
from eventstore.events import ExecutionCancelled, ExecutionCompleted
from eventstore.records import RawRecord
from executor.metrics import http_request_done, status_class
from orchestrator.spans import decided
from projections.metrics import batch_applied, follow_pending
from tep.metrics import render_latest, render_text

DOCS = Path(__file__).resolve().parents[2] / "docs" / "observability.md"
MODULES = (eventstore.metrics, executor.metrics, orchestrator.metrics, projections.metrics)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, "2xx"),
        (204, "2xx"),
        (302, "3xx"),
        (404, "4xx"),
        (503, "5xx"),
        (None, "error"),
        (99, "error"),
        (600, "error"),
    ],
)
def test_status_classes(status: int | None, expected: str) -> None:
    assert status_class(status) == expected


def test_http_calls_are_observed_by_status_class() -> None:
    before = sample("tep_http_request_duration_seconds_count", status_class="4xx")

    http_request_done(404, 0.01)
    http_request_done(None, 0.5)

    assert sample("tep_http_request_duration_seconds_count", status_class="4xx") == before + 1
    assert sample("tep_http_request_duration_seconds_bucket", status_class="error", le="0.5") >= 1


def test_appended_events_are_counted_by_type() -> None:
    before = sample("tep_events_appended_total", type="execution.completed")

    eventstore.metrics.count_appended(
        [ExecutionCompleted(execution_id="e1"), ExecutionCancelled(execution_id="e2")]
    )

    assert sample("tep_events_appended_total", type="execution.completed") == before + 1


def test_a_committed_batch_counts_its_events_and_observes_their_lag() -> None:
    stored = time.time_ns() - 2_000_000_000  # two seconds ago
    batch = [
        RawRecord(1, "plan.submitted.e1", b"", stored),
        RawRecord(2, "action.attempt.failed.e1.a", b"", stored),
        RawRecord(3, "action.attempt.failed.e1.b", b"", stored),
        RawRecord(4, "something.else", b""),  # no stored time: no lag
    ]
    count = sample("tep_projection_lag_seconds_count")
    slow = count - sample("tep_projection_lag_seconds_bucket", le="1.0")
    failed = sample("tep_events_consumed_total", role="projector", type="action.attempt.failed")

    batch_applied(batch)

    assert sample("tep_projection_lag_seconds_count") == count + 3
    assert (
        sample("tep_projection_lag_seconds_count")
        - sample("tep_projection_lag_seconds_bucket", le="1.0")
        == slow + 3
    )
    assert (
        sample("tep_events_consumed_total", role="projector", type="action.attempt.failed")
        == failed + 2
    )
    assert sample("tep_events_consumed_total", role="projector", type="unknown") >= 1


def test_the_projection_backlog_is_read_when_scraped() -> None:
    behind = [5]
    follow_pending(lambda: behind[0])
    assert sample("tep_projection_pending_events") == 5
    behind[0] = -3  # the checkpoint ran ahead of the last look at the log
    assert sample("tep_projection_pending_events") == 0


def test_decisions_and_their_latency() -> None:
    from datetime import UTC, datetime, timedelta

    decisions = sample("tep_decisions_total")
    latency = sample("tep_decision_latency_seconds_count")

    decided(3, datetime.now(UTC) - timedelta(milliseconds=30), time.perf_counter())

    assert sample("tep_decisions_total") == decisions + 3
    assert sample("tep_decision_latency_seconds_count") == latency + 1
    assert sample("tep_decision_latency_seconds_bucket", le="0.01") <= sample(
        "tep_decision_latency_seconds_bucket", le="0.05"
    )


def test_a_scrape_is_prometheus_text() -> None:
    body, content_type = render_latest()

    assert content_type.startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(body.decode())}
    assert {"tep_events_appended", "tep_decisions", "tep_projection_lag_seconds"} <= names
    assert render_text().startswith(b"# HELP")


def test_every_metric_is_documented() -> None:
    documented = set(re.findall(r"`(tep_[a-z_]+)`", DOCS.read_text()))
    defined = {
        metric._name + ("_total" if metric._type == "counter" else "")
        for module in MODULES
        for metric in vars(module).values()
        if hasattr(metric, "_name") and str(metric._name).startswith("tep_")
    }
    assert len(defined) >= 12
    assert defined <= documented, f"undocumented: {sorted(defined - documented)}"
