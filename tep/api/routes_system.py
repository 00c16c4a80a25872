"""Health (no token), global counters, and the metrics endpoint's place."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from tep.api.auth import Reader
from tep.api.envelopes import Health, StatsDocument
from tep.api.routes_executions import backend_of
from tep.api.schemas import MsgspecResponse, responds

__all__ = ["PROMETHEUS_TEXT", "PrometheusResponse", "router"]

router = APIRouter(tags=["system"])

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


@router.get(
    "/healthz",
    response_class=MsgspecResponse,
    summary="Whether the API can serve (no token needed)",
    responses={
        **responds("Health", 200, "connected to NATS"),
        **responds("Health", 503, "NATS is not connected"),
    },
)
async def healthz(request: Request) -> MsgspecResponse:
    """200 while connected to NATS, else 503."""
    connected = backend_of(request).connected
    health = Health(status="ok" if connected else "unavailable", nats_connected=connected)
    return MsgspecResponse(health, status_code=200 if connected else 503)


@router.get(
    "/v1/stats",
    response_class=MsgspecResponse,
    summary="Global counters",
    responses=responds("StatsDocument"),
)
async def stats(request: Request, caller: Reader) -> MsgspecResponse:
    """Executions and actions by status over the whole view, and the view's checkpoint."""
    manager = backend_of(request).manager
    counters = await manager.get_stats()
    document = StatsDocument(stats=counters, view_checkpoint=await manager.view_checkpoint())
    return MsgspecResponse(document)


class PrometheusResponse(PlainTextResponse):
    """Prometheus's text exposition format."""

    media_type = PROMETHEUS_TEXT


@router.get("/metrics", response_class=PrometheusResponse, summary="Prometheus metrics")
async def metrics(request: Request, caller: Reader) -> PrometheusResponse:
    """The Prometheus text exposition of ``app.state.metrics`` (empty until one is set)."""
    render = getattr(request.app.state, "metrics", None)
    return PrometheusResponse(render() if render is not None else b"")
