"""Request bodies up to a limit: a larger one is answered 413 before the route runs.

An ASGI middleware: a declared ``Content-Length`` above the limit is refused at once; any
other body is read (at most the limit, then refused, after dropping what the client still
sends, up to 8 times the limit) and handed to the app as it came, so no route ever sees a body
above the limit, however it was sent.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tep.api.problems import Problem

__all__ = ["BodyLimit"]

PROBLEM_JSON = "application/problem+json"
_DRAIN_FACTOR = 8


def _too_large(limit: int) -> bytes:
    problem = Problem(
        type="urn:tep:problem:body-too-large",
        title="Body too large",
        status=413,
        detail=f"the request body is larger than {limit} bytes (TEP_API_MAX_BODY_BYTES)",
    )
    return problem.model_dump_json(exclude_none=True).encode()


class BodyLimit:
    """Refuse request bodies above ``limit`` bytes with a 413 problem."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await self._refuse(send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away: let the app see it
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                if message.get("more_body", False):
                    await self._drain(receive)
                await self._refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _drain(self, receive: Receive) -> None:
        """Read (and drop) the rest of a body sent without a length, up to a bound, so the
        client that is still sending reads the 413 rather than a reset connection."""
        drained = 0
        while drained <= _DRAIN_FACTOR * self.limit:
            message = await receive()
            if message["type"] != "http.request":
                return
            drained += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    async def _refuse(self, send: Send) -> None:
        content = _too_large(self.limit)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(content)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": content})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value)
    return None


def _content_length(scope: Scope) -> int | None:
    value = _header(scope, b"content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None
