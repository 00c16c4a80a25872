"""From a dispatched request spec to the bytes on the wire. Pure.

The query is merged into the URL, ``json`` is encoded (``Content-Type: application/json`` unless
the plan set one), and every request carries ``Idempotency-Key: <execution_id>:<action_id>``,
the same on every attempt, so targets can deduplicate retries.
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit, urlunsplit

import msgspec

from eventstore.error_codes import ErrorCode
from eventstore.plan import RequestSpec
from executor.errors import NonRetryableError
from executor.http_messages import HttpRequest

__all__ = ["IDEMPOTENCY_HEADER", "build_http_request", "idempotency_key"]

IDEMPOTENCY_HEADER = "Idempotency-Key"

_encoder = msgspec.json.Encoder()


def idempotency_key(execution_id: str, action_id: str) -> str:
    """The ``Idempotency-Key`` value of an action: stable across all its attempts."""
    return f"{execution_id}:{action_id}"


def build_http_request(spec: RequestSpec, *, execution_id: str, action_id: str) -> HttpRequest:
    """The concrete request for ``spec`` (whose secrets are already resolved).

    Raises:
        NonRetryableError: ``invalid_request`` for a URL that is not absolute http(s).

    Example:
        >>> build_http_request(RequestSpec(url="http://h/x", query={"a": "1"}),
        ...                    execution_id="e", action_id="a").url
        'http://h/x?a=1'
    """
    url = spec.url
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise NonRetryableError(
            f"invalid URL {url!r}: {exc}", code=ErrorCode.INVALID_REQUEST
        ) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NonRetryableError(
            f"invalid URL {url!r}: an absolute http:// or https:// URL is required",
            code=ErrorCode.INVALID_REQUEST,
        )
    if spec.query:
        extra = urlencode(spec.query)
        query = f"{parts.query}&{extra}" if parts.query else extra
        url = urlunsplit(parts._replace(query=query, fragment=""))
    headers = {
        name: value for name, value in spec.headers.items() if name.lower() != "idempotency-key"
    }
    headers[IDEMPOTENCY_HEADER] = idempotency_key(execution_id, action_id)
    body: bytes | None = None
    if spec.json is not None:
        body = _encoder.encode(spec.json)
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = "application/json"
    elif spec.body is not None:
        body = spec.body.encode("utf-8")
    return HttpRequest(method=spec.method, url=url, headers=headers, body=body)
