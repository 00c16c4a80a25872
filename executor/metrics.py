"""The executor's Prometheus metrics (the shared ones are in :mod:`eventstore.metrics`).

Per delivery: one counter increment, one histogram observation per HTTP call; the in-flight
gauge is read from the executor when scraped, never updated per message.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from eventstore.metrics import LATENCY_BUCKETS, label_cache

__all__ = [
    "ACTIONS_IN_FLIGHT",
    "ACTION_RETRIES",
    "DELIVERIES",
    "HTTP_REQUEST_DURATION",
    "http_request_done",
    "status_class",
]

ACTIONS_IN_FLIGHT = Gauge(
    "tep_actions_in_flight",
    "Requests the executor is working on right now, by queue.",
    ["queue"],
)
ACTION_RETRIES = Counter(
    "tep_action_retries_total",
    "Attempts that failed and were scheduled again (action.attempt.failed), by queue.",
    ["queue"],
)
DELIVERIES = Counter(
    "tep_executor_deliveries_total",
    "What became of the requests the executor took (completed, failed, retry, duplicate, "
    "cancelled, lost, deferred, poison, abandoned, error), by queue.",
    ["queue", "disposition"],
)
HTTP_REQUEST_DURATION = Histogram(
    "tep_http_request_duration_seconds",
    "HTTP calls of http actions, from sending the request to the end of the response body, "
    "by status class (2xx, 3xx, 4xx, 5xx; error: no response).",
    ["status_class"],
    buckets=LATENCY_BUCKETS,
)

_http = label_cache(HTTP_REQUEST_DURATION)


def status_class(status: int | None) -> str:
    """``2xx``... for an HTTP status; ``error`` when there is none (the call failed)."""
    if status is None or not 100 <= status <= 599:
        return "error"
    return f"{status // 100}xx"


def http_request_done(status: int | None, seconds: float) -> None:
    """Observe one HTTP call that took ``seconds`` and answered ``status`` (``None``: none)."""
    _http(status_class(status)).observe(seconds)
