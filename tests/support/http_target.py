"""A real HTTP server on loopback for tests: records every hit, misbehaves on request.

Use the ``http_target`` fixture (tests/conftest.py) or ``async with HttpTarget() as target``.
It runs in the test's event loop on 127.0.0.1 (or another loopback address given as ``host``)
with a random port, so executor processes started by a test can call it too.

Routes (any method unless noted; ``{tail}`` is free text to tell actions apart):

=============================  ==========================================================
``/echo/{tail}``               200, JSON: method, path, query, headers, and ``json`` or ``body``;
                               ``?status=N`` answers with status N instead
``/status/{code}/{tail}``      that status, JSON ``{"status": code}``;
                               ``?retry_after=S`` adds ``Retry-After: S``
``/flaky/{n}/{tail}``          fails ``n`` times per Idempotency-Key (or per path without
                               one) with ``?status=`` (default 503), then 200
                               ``{"attempt": k, "key": ...}``
``/slow/{tail}?delay=S``       sleeps S seconds (default 1), then 200 ``{"slept": S}``
``/big/{size}/{tail}``         a JSON string body of ``size`` bytes; ``?chunked=1`` streams it
                               without Content-Length
``/json/{size}/{tail}``        a JSON object of about ``size`` bytes: ``{"tail", "user":
                               {"email"}, "rows": [...]}`` (see :meth:`HttpTarget.large_json`)
``/stream/{size}/{tail}``      ``size`` bytes of one JSON string, streamed without
                               Content-Length; :attr:`HttpTarget.streamed` counts what was sent
``/text/{tail}?body=...``      ``text/plain`` body (default ``hello``)
``/empty/{tail}``              204, no body
``/headers/{tail}?h=v...``     200 ``{}`` with each query parameter as a response header
``/redirect/{code}/{tail}``    that status (301, 302, 303, 307, 308) with ``Location:`` the
                               ``?to=`` parameter
=============================  ==========================================================

Every hit is recorded before its route runs (:attr:`HttpTarget.hits`), and the server tracks
requests in progress and the maximum seen at once (:attr:`HttpTarget.max_in_flight`).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

__all__ = ["Hit", "HttpTarget"]


@dataclass(frozen=True)
class Hit:
    """One request as the target received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    @property
    def idempotency_key(self) -> str | None:
        """The request's ``Idempotency-Key`` header, if any."""
        return self.headers.get("idempotency-key")


Route = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HttpTarget:
    """A recording aiohttp server on ``127.0.0.1`` (or ``host``) and a random port."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.hits: list[Hit] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._failures: Counter[str] = Counter()
        self.streamed: Counter[str] = Counter()
        """Bytes each ``/stream/`` path got out before the body ended or the client left."""
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind and serve (in the running event loop)."""
        app = web.Application(middlewares=[self._record], client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/echo/{tail:.*}", self._echo)
        app.router.add_route("*", "/status/{code:\\d+}{tail:.*}", self._status)
        app.router.add_route("*", "/flaky/{n:\\d+}{tail:.*}", self._flaky)
        app.router.add_route("*", "/slow{tail:.*}", self._slow)
        app.router.add_route("*", "/big/{size:\\d+}{tail:.*}", self._big)
        app.router.add_route("*", "/json/{size:\\d+}{tail:.*}", self._json)
        app.router.add_route("*", "/stream/{size:\\d+}{tail:.*}", self._stream)
        app.router.add_route("*", "/text{tail:.*}", self._text)
        app.router.add_route("*", "/empty{tail:.*}", self._empty)
        app.router.add_route("*", "/headers{tail:.*}", self._headers)
        app.router.add_route("*", "/redirect/{code:30[12378]}{tail:.*}", self._redirect)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> HttpTarget:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------ queries

    @property
    def base_url(self) -> str:
        """``http://<host>:<port>``."""
        return f"http://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` (which starts with ``/``)."""
        return f"{self.base_url}{path}"

    def hits_for(self, path: str) -> list[Hit]:
        """Hits whose path is exactly ``path``."""
        return [hit for hit in self.hits if hit.path == path]

    def count(self, prefix: str = "/") -> int:
        """How many hits had a path starting with ``prefix``."""
        return sum(1 for hit in self.hits if hit.path.startswith(prefix))

    def reset(self) -> None:
        """Forget hits, failure counters and the in-flight maximum."""
        self.hits.clear()
        self._failures.clear()
        self.max_in_flight = self.in_flight

    # ------------------------------------------------------------ routes

    @web.middleware
    async def _record(self, request: web.Request, handler: Route) -> web.StreamResponse:
        body = await request.read()
        self.hits.append(
            Hit(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
            )
        )
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await handler(request)
        finally:
            self.in_flight -= 1

    async def _echo(self, request: web.Request) -> web.Response:
        body = await request.read()
        document: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "headers": dict(request.headers),
        }
        if body:
            try:
                document["json"] = await request.json()
            except ValueError:
                document["body"] = body.decode("utf-8", "replace")
        return web.json_response(document, status=int(request.query.get("status", "200")))

    async def _status(self, request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        headers = {}
        if "retry_after" in request.query:
            headers["Retry-After"] = request.query["retry_after"]
        return web.json_response({"status": code}, status=code, headers=headers)

    async def _flaky(self, request: web.Request) -> web.Response:
        failures = int(request.match_info["n"])
        key = request.headers.get("Idempotency-Key") or request.path
        self._failures[key] += 1
        attempt = self._failures[key]
        if attempt <= failures:
            status = int(request.query.get("status", "503"))
            return web.json_response({"attempt": attempt, "failing": True}, status=status)
        return web.json_response({"attempt": attempt, "key": key})

    async def _slow(self, request: web.Request) -> web.Response:
        delay = float(request.query.get("delay", "1"))
        await asyncio.sleep(delay)
        return web.json_response({"slept": delay})

    async def _big(self, request: web.Request) -> web.StreamResponse:
        size = int(request.match_info["size"])
        body = b'"' + b"x" * max(size - 2, 0) + b'"'
        if request.query.get("chunked") != "1":
            return web.Response(body=body, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(body), 64 * 1024):
            await response.write(body[start : start + 64 * 1024])
        await response.write_eof()
        return response

    @staticmethod
    def large_json(size: int, tail: str) -> dict[str, Any]:
        """What ``/json/{size}/{tail}`` answers: rows of 100 bytes up to about ``size``."""
        rows = [{"n": n, "pad": "r" * 80} for n in range(max(size // 100, 1))]
        return {"tail": tail, "user": {"email": f"{tail}@example.com"}, "rows": rows}

    async def _json(self, request: web.Request) -> web.Response:
        tail = request.match_info["tail"].strip("/")
        document = self.large_json(int(request.match_info["size"]), tail)
        return web.json_response(document)

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        size = int(request.match_info["size"])
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        chunk = b"s" * (256 * 1024)
        sent = 0
        try:
            await response.write(b'"')
            while sent < size:
                piece = chunk[: min(len(chunk), size - sent)]
                await response.write(piece)
                sent += len(piece)
                self.streamed[request.path] = sent
            await response.write(b'"')
            await response.write_eof()
        except (ConnectionResetError, ConnectionError):
            pass  # the client stopped reading
        return response

    async def _text(self, request: web.Request) -> web.Response:
        return web.Response(text=request.query.get("body", "hello"), content_type="text/plain")

    async def _empty(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def _headers(self, request: web.Request) -> web.Response:
        return web.json_response({}, headers=dict(request.query))

    async def _redirect(self, request: web.Request) -> web.Response:
        status = int(request.match_info["code"])
        return web.Response(status=status, headers={"Location": request.query["to"]})
