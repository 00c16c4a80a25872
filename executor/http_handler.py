"""The built-in ``http`` action type: one HTTP call per attempt."""

from __future__ import annotations

import time

import msgspec

from eventstore.error_codes import ErrorCode
from eventstore.events import ActionExecuteRequested
from eventstore.headers import TRACEPARENT
from executor.classify import error_for_status
from executor.errors import NonRetryableError
from executor.handlers import HandlerResult, current_attempt
from executor.http_client import HttpClient, HttpRequest
from executor.metrics import http_request_done
from executor.output import output_from_body, select_headers
from executor.request import build_http_request

__all__ = ["HttpHandler"]


class HttpHandler:
    """Sends the action's request and maps the response onto an output.

    2xx and 3xx responses succeed; 408, 429 and 5xx raise a retryable error; other 4xx a
    non-retryable one (see :mod:`executor.classify`). The body is read up to
    ``max_body_bytes``; beyond that the attempt fails with ``output_too_large``. The request
    carries the attempt's ``traceparent`` unless the action sets that header itself.
    """

    def __init__(self, client: HttpClient, *, max_body_bytes: int) -> None:
        self.client = client
        self.max_body_bytes = max_body_bytes

    async def __call__(self, request: ActionExecuteRequested) -> HandlerResult:
        """Run one attempt of ``request`` (secrets already resolved)."""
        if request.request is None:
            raise NonRetryableError(
                f"action {request.action_id!r} of type http has no request",
                code=ErrorCode.INVALID_REQUEST,
            )
        attempt = current_attempt()
        http_request = build_http_request(
            request.request, execution_id=request.execution_id, action_id=request.action_id
        )
        if attempt.secrets:
            # Secrets are granted per host: a redirect must not carry them to another one.
            http_request = msgspec.structs.replace(http_request, same_host_redirects=True)
        http_request = _with_traceparent(http_request, attempt.traceparent)
        began = time.perf_counter()
        try:
            response = await self.client.send(
                http_request,
                timeout_s=attempt.timeout_s,
                max_body_bytes=self.max_body_bytes,
            )
        except Exception:
            http_request_done(None, time.perf_counter() - began)
            raise
        http_request_done(response.status, time.perf_counter() - began)
        error = error_for_status(
            response.status,
            response.headers,
            response.body,
            method=http_request.method,
            url=http_request.url,
        )
        if error is not None:
            raise error
        return HandlerResult(
            output=output_from_body(response.body, response.headers.get("content-type")),
            status_code=response.status,
            headers=select_headers(response.headers),
        )


def _with_traceparent(request: HttpRequest, traceparent: str | None) -> HttpRequest:
    if traceparent is None or any(name.lower() == TRACEPARENT for name in request.headers):
        return request
    headers = {**request.headers, TRACEPARENT: traceparent}
    return msgspec.structs.replace(request, headers=headers)
