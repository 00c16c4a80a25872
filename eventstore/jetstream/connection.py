"""Connecting to NATS: quiet, bounded, and mapped onto :class:`NatsUnavailableError`."""

from __future__ import annotations

import logging
from typing import Any

import nats
from nats.aio.client import Client as NatsClient

from eventstore.errors import NatsUnavailableError

__all__ = ["NatsClient", "connect"]

_log = logging.getLogger("tep.nats")


async def _log_error(exc: Exception) -> None:
    _log.warning("nats connection error: %s", exc)


async def connect(
    url: str,
    *,
    name: str = "tep",
    timeout_s: float = 3.0,
    reconnect: bool = True,
    **options: Any,
) -> NatsClient:
    """Connect to NATS at ``url`` (a comma-separated list is accepted for clusters).

    Once connected, the client reconnects forever; the first connection is bounded by
    ``timeout_s`` so an unreachable server is reported within seconds.

    Raises:
        NatsUnavailableError: no server answered in time.
    """
    servers = [u.strip() for u in url.split(",") if u.strip()]
    connected = False

    async def on_error(exc: Exception) -> None:
        # Failures of the first connection become one NatsUnavailableError, not a log line each.
        if connected:
            await _log_error(exc)

    try:
        client = await nats.connect(
            servers=servers,
            name=name,
            connect_timeout=timeout_s,
            allow_reconnect=reconnect,
            # Bounded while connecting for the first time; unbounded once connected (below).
            max_reconnect_attempts=1,
            reconnect_time_wait=0.2,
            error_cb=on_error,
            **options,
        )
    except Exception as exc:
        reason = str(exc) or type(exc).__name__
        raise NatsUnavailableError(f"cannot reach NATS at {url}: {reason}") from exc
    connected = True
    if reconnect:
        client.options["max_reconnect_attempts"] = -1
    return client
