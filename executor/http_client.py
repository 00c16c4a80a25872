"""The HTTP layer behind the ``http`` action type: request spec in, status/headers/body out.

:class:`AiohttpClient` is the production implementation: one pooled ``aiohttp.ClientSession``
per executor process (chosen by measurement, see ``bench/bench_http.py``). Anything with the
:class:`HttpClient` shape can replace it; :class:`MockHttpClient` answers from a function, for
unit tests of code above the wire.

Transport failures are mapped onto :mod:`executor.errors` with stable codes: ``timeout``,
``connect_error`` (retryable), ``invalid_request``, ``invalid_response``,
``too_many_redirects``, ``output_too_large`` (not retryable).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp

from eventstore.error_codes import ErrorCode
from executor.errors import ActionError, NonRetryableError, RetryableError
from executor.http_messages import DEFAULT_MAX_REDIRECTS, HttpClient, HttpRequest, HttpResponse

__all__ = [
    "DEFAULT_MAX_REDIRECTS",
    "USER_AGENT",
    "AiohttpClient",
    "HttpClient",
    "HttpRequest",
    "HttpResponse",
    "MockHttpClient",
]

USER_AGENT = "tep-executor/0.1"
_CHUNK = 64 * 1024


def _too_large(limit: int, seen: int | None = None) -> NonRetryableError:
    size = f"{seen} bytes" if seen is not None else f"more than {limit} bytes"
    return NonRetryableError(
        f"response body is {size}; the output limit is {limit} bytes",
        code=ErrorCode.OUTPUT_TOO_LARGE,
    )


class AiohttpClient:
    """:class:`HttpClient` on one pooled ``aiohttp.ClientSession``.

    The ``ClientSession`` is created on first use (inside the running event loop). Cookies are
    never kept, so one execution's cookies cannot leak into another's requests.

    Example:
        >>> client = AiohttpClient(max_connections=64)  # doctest: +SKIP
        >>> response = await client.send(  # doctest: +SKIP
        ...     HttpRequest(method="GET", url="http://127.0.0.1:8080/"),
        ...     timeout_s=10, max_body_bytes=1 << 20)
    """

    def __init__(
        self, *, max_connections: int = 100, max_redirects: int = DEFAULT_MAX_REDIRECTS
    ) -> None:
        self._max_connections = max_connections
        self._max_redirects = max_redirects
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections, ttl_dns_cache=300),
                cookie_jar=aiohttp.DummyCookieJar(),
                headers={"User-Agent": USER_AGENT},
                timeout=aiohttp.ClientTimeout(total=None),
            )
        return self._session

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            timeout = self._timeouts[seconds] = aiohttp.ClientTimeout(total=seconds)
        return timeout

    async def send(
        self, request: HttpRequest, *, timeout_s: float, max_body_bytes: int
    ) -> HttpResponse:
        """See :meth:`HttpClient.send`."""
        session = self._open()
        try:
            async with session.request(
                request.method,
                request.url,
                headers=request.headers,
                data=request.body,
                timeout=self._timeout(timeout_s),
                allow_redirects=self._max_redirects > 0,
                # aiohttp fails on the redirect that reaches its count: one more follows ours.
                max_redirects=self._max_redirects + 1,
            ) as response:
                body = await _read_capped(response, max_body_bytes)
                headers = {k.lower(): v for k, v in response.headers.items()}
                return HttpResponse(status=response.status, headers=headers, body=body)
        except ActionError:
            raise
        except TimeoutError as exc:
            raise RetryableError(
                f"{request.method} {request.url} timed out after {timeout_s:g} s",
                code=ErrorCode.TIMEOUT,
            ) from exc
        except aiohttp.InvalidURL as exc:
            raise NonRetryableError(
                f"invalid URL {request.url!r}", code=ErrorCode.INVALID_REQUEST
            ) from exc
        except aiohttp.TooManyRedirects as exc:
            last = exc.history[-1] if exc.history else None
            hop = f" (the last from {last.url} to {last.headers.get('Location')})" if last else ""
            raise NonRetryableError(
                f"{request.method} {request.url} was redirected more than "
                f"{self._max_redirects} times{hop}",
                code=ErrorCode.TOO_MANY_REDIRECTS,
            ) from exc
        except aiohttp.ClientResponseError as exc:
            # The response could not be parsed (e.g. a header line over 8 KiB): the same
            # answer comes back on every attempt.
            raise NonRetryableError(
                f"{request.method} {request.url} answered with a response that is not valid "
                f"HTTP: {exc.message or type(exc).__name__}",
                code=ErrorCode.INVALID_RESPONSE,
            ) from exc
        except aiohttp.ClientError as exc:
            reason = str(exc) or type(exc).__name__
            raise RetryableError(
                f"{request.method} {request.url} failed: {reason}", code=ErrorCode.CONNECT_ERROR
            ) from exc
        except (ValueError, TypeError) as exc:
            # aiohttp rejects malformed methods, header names or values before sending.
            raise NonRetryableError(
                f"{request.method} {request.url} cannot be sent: {exc}",
                code=ErrorCode.INVALID_REQUEST,
            ) from exc
        except OSError as exc:
            raise RetryableError(
                f"{request.method} {request.url} failed: {exc}", code=ErrorCode.CONNECT_ERROR
            ) from exc

    async def aclose(self) -> None:
        """See :meth:`HttpClient.aclose`."""
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    declared = response.content_length
    if declared is not None:
        if declared > limit:
            raise _too_large(limit, declared)
        return await response.read()
    chunks: list[bytes] = []
    size = 0
    while chunk := await response.content.read(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


class MockHttpClient:
    """An :class:`HttpClient` that answers from a function, for unit tests.

    The function gets each request and returns a response or raises an
    :class:`~executor.errors.ActionError`; ``requests`` records what was sent.

    Example:
        >>> client = MockHttpClient(lambda r: HttpResponse(status=200, headers={}, body=b"{}"))
    """

    def __init__(
        self, respond: Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]]
    ) -> None:
        self._respond = respond
        self.requests: list[HttpRequest] = []

    async def send(
        self, request: HttpRequest, *, timeout_s: float, max_body_bytes: int
    ) -> HttpResponse:
        """See :meth:`HttpClient.send`."""
        self.requests.append(request)
        result = self._respond(request)
        response = await result if asyncio.iscoroutine(result) else result
        assert isinstance(response, HttpResponse)
        if len(response.body) > max_body_bytes:
            raise _too_large(max_body_bytes, len(response.body))
        return response

    async def aclose(self) -> None:
        """Nothing to release."""
