"""The HTTP layer behind the ``http`` action type: request spec in, status/headers/body out.

:class:`AiohttpClient` is the production implementation: one pooled ``aiohttp.ClientSession``
per executor process (chosen by measurement, see ``bench/bench_http.py``). Anything with the
:class:`HttpClient` shape can replace it; :class:`MockHttpClient` answers from a function, for
unit tests of code above the wire.

Every connection goes through the executor's :class:`~executor.target_policy.TargetPolicy`:
the connector checks each address a host resolves to (through DNS, ``/etc/hosts`` or as an IP
literal in any spelling) just before connecting to it, on the first request and on every
redirect, and connects only to addresses that passed, so a name that resolves differently the
second time gains nothing. Pooled keep-alive connections were checked when they were opened.
On a redirect to another origin aiohttp drops ``Authorization``, ``Proxy-Authorization`` and
``Cookie``; a request that carries secrets (``same_host_redirects``) is not redirected to
another host at all (``secret_not_allowed``), since its other headers, its URL and a 307/308
body would go along.

Transport failures are mapped onto :mod:`executor.errors` with stable codes: ``timeout``,
``connect_error`` (retryable), ``invalid_request``, ``invalid_response``,
``too_many_redirects``, ``target_not_allowed``, ``output_too_large`` (not retryable).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from eventstore.error_codes import ErrorCode
from eventstore.errors import TepError
from eventstore.payloads import format_size
from executor.errors import ActionError, NonRetryableError, RetryableError
from executor.http_messages import DEFAULT_MAX_REDIRECTS, HttpClient, HttpRequest, HttpResponse
from executor.target_policy import TargetPolicy, literal_address

__all__ = [
    "DEFAULT_MAX_REDIRECTS",
    "USER_AGENT",
    "AiohttpClient",
    "HttpClient",
    "HttpRequest",
    "HttpResponse",
    "MockHttpClient",
    "PolicyConnector",
]

USER_AGENT = "tep-executor/0.1"
_CHUNK = 64 * 1024


def _too_large(limit: int, seen: int | None = None) -> NonRetryableError:
    size = f"{seen} bytes" if seen is not None else f"more than {limit} bytes"
    return NonRetryableError(
        f"response body is {size}; the output limit is {limit} bytes ({format_size(limit)})",
        code=ErrorCode.OUTPUT_TOO_LARGE,
    )


class _TargetRefusedError(TepError):
    """Every address of a host is refused by the target policy (the message says why)."""


class PolicyConnector(aiohttp.TCPConnector):
    """A ``TCPConnector`` that connects only to addresses its :class:`TargetPolicy` allows.

    aiohttp resolves every host through ``_resolve_host`` right before connecting (IP
    literals included, which never reach the resolver), and connects to exactly the addresses
    it returns; filtering them there judges the address actually connected to.
    """

    def __init__(self, policy: TargetPolicy, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.policy = policy

    async def _resolve_host(
        self, host: str, port: int, traces: Sequence[Any] | None = None
    ) -> list[ResolveResult]:
        literal = literal_address(host)
        if literal is not None and (reason := self.policy.refusal(host, literal)):
            # Judged before aiohttp sees it: legacy spellings (0x7f.1) would otherwise reach
            # the C resolver as names, or fail as invalid URLs (2130706433).
            raise _TargetRefusedError(reason)
        resolved = await super()._resolve_host(host, port, traces=traces)
        allowed: list[ResolveResult] = []
        refusals: list[str] = []
        for result in resolved:
            address = literal_address(result["host"])
            reason = (
                self.policy.refusal(host, address)
                if address is not None
                else f"{host} resolves to {result['host']!r}, which is not an IP address"
            )
            if reason is None:
                allowed.append(result)
            else:
                refusals.append(reason)
        if not allowed:
            raise _TargetRefusedError(refusals[0] if refusals else f"{host} resolves to nothing")
        return allowed


class AiohttpClient:
    """:class:`HttpClient` on one pooled ``aiohttp.ClientSession``.

    The ``ClientSession`` is created on first use (inside the running event loop). Cookies are
    never kept, so one execution's cookies cannot leak into another's requests. ``policy``
    decides which addresses may be connected to; the default refuses loopback, private,
    link-local, metadata and the other internal ranges (see :mod:`executor.target_policy`);
    ``None`` is that default. ``resolver`` replaces aiohttp's name resolution (the system's);
    its answers are judged like any other.

    Example:
        >>> policy = TargetPolicy.from_strings(allow_cidrs=["127.0.0.0/8"])
        >>> client = AiohttpClient(max_connections=64, policy=policy)  # doctest: +SKIP
        >>> response = await client.send(  # doctest: +SKIP
        ...     HttpRequest(method="GET", url="http://127.0.0.1:8080/"),
        ...     timeout_s=10, max_body_bytes=1 << 20)
    """

    def __init__(
        self,
        *,
        max_connections: int = 100,
        max_redirects: int = DEFAULT_MAX_REDIRECTS,
        policy: TargetPolicy | None = None,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self._max_connections = max_connections
        self._max_redirects = max_redirects
        self._policy = policy or TargetPolicy()
        self._resolver = resolver
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=PolicyConnector(
                    self._policy,
                    limit=self._max_connections,
                    ttl_dns_cache=300,
                    resolver=self._resolver,
                ),
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
                middlewares=_same_host_only(request) if request.same_host_redirects else None,
            ) as response:
                body = await _read_capped(response, max_body_bytes)
                headers = {k.lower(): v for k, v in response.headers.items()}
                return HttpResponse(status=response.status, headers=headers, body=body)
        except ActionError:
            raise
        except _TargetRefusedError as exc:
            raise NonRetryableError(
                f"{request.method} {request.url} not sent: {exc}",
                code=ErrorCode.TARGET_NOT_ALLOWED,
            ) from exc
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


def _same_host_only(request: HttpRequest) -> tuple[aiohttp.ClientMiddlewareType, ...]:
    """A middleware (run on every hop) refusing a hop to a host other than the request's."""
    host = URL(request.url).raw_host

    async def same_host(
        hop: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        if hop.url.raw_host != host:
            raise NonRetryableError(
                f"{request.method} {request.url} was redirected to another host "
                f"({hop.url.raw_host}): not followed, the request carries secrets",
                code=ErrorCode.SECRET_NOT_ALLOWED,
            )
        return await handler(hop)

    return (same_host,)


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
