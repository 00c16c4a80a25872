"""Serving the dashboard's files: the page at ``/``, its scripts and styles under
``/dashboard/``, each with headers that keep the page to its own origin."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

__all__ = ["ASSETS_PATH", "SECURITY_HEADERS", "STATIC_DIR", "mount_dashboard"]

STATIC_DIR = Path(__file__).parent / "static"
"""Where the page, its modules, its styles and the vendored layout library are."""

ASSETS_PATH = "/dashboard"
"""The URL path the files of :data:`STATIC_DIR` are served under."""

SECURITY_HEADERS = {
    # Scripts, styles and calls from this origin only; no inline script, no framing. The
    # token lives in the page: nothing else may run in it.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    # A token given once as ?token= must not leave in a Referer.
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Revalidated on every load (ETag), so an upgraded server never serves a stale module.
    "Cache-Control": "no-cache",
}


class _DashboardFiles(StaticFiles):
    """Static files with :data:`SECURITY_HEADERS`."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(SECURITY_HEADERS)
        return response


def mount_dashboard(app: FastAPI) -> None:
    """Serve the dashboard page at ``/`` and its files under :data:`ASSETS_PATH`."""
    index = STATIC_DIR / "index.html"

    async def dashboard_page() -> FileResponse:
        return FileResponse(index, media_type="text/html", headers=SECURITY_HEADERS)

    app.add_api_route(
        "/", dashboard_page, methods=["GET", "HEAD"], include_in_schema=False, name="dashboard"
    )
    app.mount(ASSETS_PATH, _DashboardFiles(directory=STATIC_DIR), name="dashboard-files")
