"""The shapes the ``http`` action type works with: request, response, client. Pure.

:mod:`executor.http_client` implements :class:`HttpClient` over aiohttp; the request builder
(:mod:`executor.request`) and the tests use these shapes without loading any HTTP library.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

__all__ = ["DEFAULT_MAX_REDIRECTS", "HttpClient", "HttpRequest", "HttpResponse"]

DEFAULT_MAX_REDIRECTS = 5
"""Redirects an HTTP call follows unless configured otherwise."""


class HttpRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A concrete request: templates resolved, query merged into ``url``, body encoded.

    It may hold secret values: never log or store it.
    """

    method: str
    url: str
    headers: dict[str, str] = {}
    body: bytes | None = None
    same_host_redirects: bool = False
    """Follow redirects only to the URL's own host (set when the request carries secrets, which
    are granted per host); a redirect elsewhere fails with ``secret_not_allowed``."""


class HttpResponse(msgspec.Struct, frozen=True, kw_only=True):
    """A response: status, headers with lower-case names, and the (size-capped) body."""

    status: int
    headers: dict[str, str]
    body: bytes


class HttpClient(Protocol):
    """What the ``http`` handler needs from an HTTP library."""

    async def send(
        self, request: HttpRequest, *, timeout_s: float, max_body_bytes: int
    ) -> HttpResponse:
        """Send ``request`` and read the whole body, failing beyond ``max_body_bytes``.

        Raises:
            ActionError: ``timeout``, ``connect_error``, ``invalid_request`` or
                ``output_too_large``.
        """
        ...

    async def aclose(self) -> None:
        """Release pooled connections."""
        ...
