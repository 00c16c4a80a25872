"""A Python client of the tep HTTP API (``tep api``), sync and async, on httpx.

Every route is a method returning the contract's own types (``ExecutionState``,
``ExecutionSummary``, ``ScheduleInfo``, ... decoded by msgspec); every error the API answers
raises :class:`TepApiError`. :meth:`TepClient.stream` follows an execution's states live and
reconnects with ``Last-Event-ID`` without missing one.

Example:
    >>> from tep.client import TepClient
    >>> with TepClient("http://127.0.0.1:8700", token) as api:  # doctest: +SKIP
    ...     started = api.submit(plan, input={"user_id": 7})
    ...     final = [s for s in api.stream(started.execution_id)][-1]
    ...     final.status
    'completed'
"""

from __future__ import annotations

from tep.client.aio import AsyncTepClient
from tep.client.errors import TepApiError
from tep.client.sync import TepClient

__all__ = ["AsyncTepClient", "TepApiError", "TepClient"]
