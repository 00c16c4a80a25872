"""The orchestrator's Prometheus metrics (the shared ones are in :mod:`eventstore.metrics`).

Updated once per message handled, never per state read: a counter increment and two
histogram observations.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from eventstore.metrics import LATENCY_BUCKETS

__all__ = ["DECISIONS", "DECISION_LATENCY", "DECISION_PROCESSING"]

DECISIONS = Counter(
    "tep_decisions_total",
    "Decision events the orchestrator stored (dispatches, skips, waits, ends...); their "
    "types are in tep_events_appended_total.",
)
DECISION_LATENCY = Histogram(
    "tep_decision_latency_seconds",
    "From the moment the log stored an event to the append of the decisions taken on it.",
    buckets=LATENCY_BUCKETS,
)
DECISION_PROCESSING = Histogram(
    "tep_decision_processing_seconds",
    "How long the orchestrator worked on one event that led to decisions: state, fold, "
    "decide, append.",
    buckets=LATENCY_BUCKETS,
)
