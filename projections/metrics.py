"""The projector's Prometheus metrics (the shared ones are in :mod:`eventstore.metrics`).

Updated once per committed batch: the events of the batch counted by type, and each event's
lag observed (the batch's commit time less the time the log stored it). How far the view is
behind the log is read from the projector when scraped.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Callable, Sequence

from prometheus_client import Gauge, Histogram

from eventstore.metrics import LATENCY_BUCKETS, count_consumed
from eventstore.records import RawRecord
from eventstore.subjects import event_type_of

__all__ = ["PROJECTION_LAG", "PROJECTION_PENDING", "batch_applied", "follow_pending"]

PROJECTION_LAG = Histogram(
    "tep_projection_lag_seconds",
    "From the moment the log stored an event to the commit that made it visible in the live view.",
    buckets=LATENCY_BUCKETS,
)
PROJECTION_PENDING = Gauge(
    "tep_projection_pending_events",
    "Messages in the log past the live view's checkpoint (as of the projector's last look "
    "at the log).",
)

_NS = 1e-9


def batch_applied(batch: Sequence[RawRecord]) -> None:
    """``batch`` was committed to the view just now."""
    now = time.time_ns()
    observe = PROJECTION_LAG.observe
    for record in batch:
        if record.stored_ns:
            observe(max(now - record.stored_ns, 0) * _NS)
    for event_type, count in Tally(event_type_of(record.subject) for record in batch).items():
        count_consumed("projector", event_type, count)


def follow_pending(pending: Callable[[], int]) -> None:
    """Read ``tep_projection_pending_events`` from ``pending()`` whenever it is scraped."""
    PROJECTION_PENDING.set_function(lambda: max(pending(), 0))
