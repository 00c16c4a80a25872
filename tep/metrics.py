"""This process's metrics as Prometheus text: what ``GET /metrics`` answers.

Every role serves it on its health endpoint (``--health-port``, :mod:`tep.health`); ``tep api``
mounts the same on its ``/metrics`` route. The metrics are defined beside the code that
updates them (:mod:`eventstore.metrics`, ``orchestrator.metrics``, ``executor.metrics``,
``projections.metrics``) in ``prometheus_client``'s default registry, which also holds the
process metrics (``process_*``, ``python_*``): a process serves the metrics of the code it
runs. docs/observability.md lists them.

Example (``tep api`` takes the body alone, :func:`render_text`)::

    app.state.metrics = render_text
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

__all__ = ["CONTENT_TYPE", "render_latest", "render_text"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The media type of the Prometheus text format, with its version and charset."""


def render_latest() -> tuple[bytes, str]:
    """Every metric of this process now, as Prometheus text, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE


def render_text() -> bytes:
    """Every metric of this process now, as Prometheus text (the body of a scrape)."""
    return generate_latest(REGISTRY)
