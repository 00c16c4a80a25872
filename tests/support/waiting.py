"""Waiting on a condition with a deadline: the one way tests synchronise (never a bare sleep)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

__all__ = ["eventually"]


async def eventually(
    condition: Callable[[], Awaitable[Any]] | Callable[[], Any],
    timeout: float,
    message: str,
    interval: float = 0.02,
) -> Any:
    """Poll ``condition`` (sync or async) until it returns something truthy; fail after
    ``timeout`` seconds with ``message``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} (within {timeout}s)")
        await anyio.sleep(interval)
