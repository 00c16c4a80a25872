"""Serving the app with uvicorn on a socket of our own, stopped by the caller (not uvicorn's
signal handlers), so ``tep api`` binds, reports and exits like every other command."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import anyio
import uvicorn
from fastapi import FastAPI

from eventstore.errors import TepError

__all__ = ["ListenError", "bind", "serve"]

_GRACE_S = 2


class ListenError(TepError):
    """The API cannot listen on the address asked for."""


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one).

    Raises:
        ListenError: the address is taken or cannot be used.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the caller decides when it stops."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(app: FastAPI, sock: socket.socket, stop: anyio.Event) -> None:
    """Serve ``app`` on ``sock`` until ``stop`` is set; open streams get a short grace."""
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,  # paths may hold waitpoint tokens
        lifespan="off",
        timeout_graceful_shutdown=_GRACE_S,
        server_header=False,
    )
    server = _Server(config)

    async def stop_when_asked() -> None:
        await stop.wait()
        server.should_exit = True

    async with anyio.create_task_group() as group:
        group.start_soon(stop_when_asked)
        await server.serve(sockets=[sock])
        group.cancel_scope.cancel()
