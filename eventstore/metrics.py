"""The Prometheus metrics every role shares: events appended and consumed, consumer backlog.

Metrics live in ``prometheus_client``'s default registry, one definition each, in the module of
the package that updates them: this one for what the log adapter and every role count,
``orchestrator.metrics``, ``executor.metrics`` and ``projections.metrics`` for each role's
own. A process serves them all as Prometheus text (``GET /metrics`` on a role's health port,
and on ``tep api``); docs/observability.md lists every metric.

Updates on the hot path go through cached label children (:func:`label_cache`): a lookup in a
dict and one increment, no label resolution per event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from prometheus_client import Counter, Gauge
from prometheus_client.metrics import MetricWrapperBase

from eventstore.events import Event

__all__ = [
    "CONSUMER_ACK_PENDING",
    "CONSUMER_PENDING",
    "EVENTS_APPENDED",
    "EVENTS_CONSUMED",
    "LATENCY_BUCKETS",
    "count_appended",
    "count_consumed",
    "label_cache",
]

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
"""Histogram buckets (seconds) for latencies from half a millisecond to a minute."""

EVENTS_APPENDED = Counter(
    "tep_events_appended_total",
    "Events this process stored in the log (duplicates of stored events not counted), by type.",
    ["type"],
)
EVENTS_CONSUMED = Counter(
    "tep_events_consumed_total",
    "Events a role took from the log to act on, by role and event type.",
    ["role", "type"],
)
CONSUMER_PENDING = Gauge(
    "tep_consumer_pending",
    "Messages of a durable consumer not delivered yet (sampled from the consumer's info).",
    ["consumer"],
)
CONSUMER_ACK_PENDING = Gauge(
    "tep_consumer_ack_pending",
    "Messages of a durable consumer delivered and not acknowledged yet (sampled).",
    ["consumer"],
)

M = TypeVar("M", bound=MetricWrapperBase)


def label_cache(metric: M) -> Callable[..., M]:
    """``labels(*values)`` of ``metric``, each child resolved once and then kept."""
    children: dict[tuple[str, ...], M] = {}

    def child(*values: str) -> M:
        found = children.get(values)
        if found is None:
            found = children[values] = metric.labels(*values)
        return found

    return child


_appended = label_cache(EVENTS_APPENDED)
_consumed = label_cache(EVENTS_CONSUMED)


def count_appended(events: Iterable[Event]) -> None:
    """Count ``events`` as stored in the log."""
    for event in events:
        _appended(event.__struct_config__.tag).inc()


def count_consumed(role: str, event_type: str, amount: int = 1) -> None:
    """Count ``amount`` events of ``event_type`` (a tag, or ``unknown``) taken by ``role``."""
    _consumed(role, event_type).inc(amount)
