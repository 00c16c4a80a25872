"""Start-up steps asked again while JetStream is still settling.

Right after a cluster forms, a server restarts or a stream changes leader, JetStream API
requests time out or find no responder for a few seconds. A long-running role (executor,
projector) waits that out instead of exiting: it asks again with backoff, logs each try, and
reports the last error through ``on_error`` (its health document). A refused permission also
shows up as a timeout; that one is raised at once, since asking again cannot help.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
from nats.errors import NoRespondersError
from nats.js.errors import ServiceUnavailableError

from eventstore.jetstream.connection import permission_denials_seen

__all__ = ["SETTLING_ERRORS", "asking_again"]

T = TypeVar("T")

_log = logging.getLogger(__name__)

_FIRST_BACKOFF_S = 0.2
_MAX_BACKOFF_S = 5.0

SETTLING_ERRORS: tuple[type[Exception], ...] = (
    TimeoutError,
    NoRespondersError,
    ServiceUnavailableError,
)
"""What JetStream answers while it has no leader yet: worth asking again."""


async def asking_again(
    step: Callable[[], Awaitable[T]],
    *,
    what: str,
    on_error: Callable[[Exception], None] | None = None,
) -> T:
    """Run ``step`` until it returns, asking again after each :data:`SETTLING_ERRORS` error.

    Args:
        step: the start-up request(s), safe to repeat.
        what: names the step in the log line, e.g. ``"setting up queue http's consumer"``.
        on_error: told each error before the pause (to show it in a health document).

    Raises:
        TimeoutError: the server refused this identity a permission while ``step`` ran (see
            :func:`~eventstore.jetstream.connection.last_permission_denial`).
        Exception: any error that is not one of :data:`SETTLING_ERRORS`.
    """
    backoff = _FIRST_BACKOFF_S
    while True:
        denials = permission_denials_seen()
        try:
            return await step()
        except SETTLING_ERRORS as exc:
            if permission_denials_seen() != denials:
                raise
            if on_error is not None:
                on_error(exc)
            _log.warning(
                "%s: %s, asking again in %.1fs",
                what,
                "JetStream did not answer in time"
                if isinstance(exc, TimeoutError)
                else "no JetStream answered (is it enabled? has the cluster a leader?)",
                backoff,
            )
        await anyio.sleep(backoff)
        backoff = min(backoff * 2, _MAX_BACKOFF_S)
