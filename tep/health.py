"""A role's HTTP endpoint: ``GET /healthz`` for supervisors, ``GET /metrics`` for Prometheus."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import anyio
from aiohttp import web
from anyio.abc import TaskStatus

from eventstore.errors import TepError
from tep.metrics import render_latest

__all__ = ["serve_health"]


async def serve_health(
    host: str,
    port: int,
    report: Callable[[], tuple[bool, dict[str, Any]]],
    *,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``GET /healthz`` and ``GET /metrics`` until cancelled.

    ``/healthz`` answers 200 when ``report()`` says healthy, else 503, with ``report()``'s
    document as JSON; ``/metrics`` the process's metrics as Prometheus text
    (:func:`tep.metrics.render_latest`). ``task_status`` receives the bound port (useful with
    ``port=0``).
    """

    async def healthz(request: web.Request) -> web.Response:
        healthy, document = report()
        return web.json_response(document, status=200 if healthy else 503)

    async def metrics(request: web.Request) -> web.Response:
        body, content_type = render_latest()
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        try:
            await site.start()
        except OSError as exc:
            raise TepError(
                f"cannot serve health checks on {host}:{port}: {_reason(exc)}"
                " (another process listens there? pick another --health-port)"
            ) from None
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        bound = int(sockets[0].getsockname()[1]) if sockets else port
        task_status.started(bound)
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()


def _reason(error: OSError) -> str:
    # asyncio's message repeats the address; the errno's own words say it once.
    return os.strerror(error.errno).lower() if error.errno else str(error)
