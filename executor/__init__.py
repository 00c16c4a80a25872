"""The executor role: runs dispatched actions (HTTP calls and Python handlers) for one queue.

Public API for handler authors::

    from executor import handler, RetryableError, NonRetryableError

    @handler("resize-image")
    async def resize(request): ...

The process itself is :class:`executor.worker.Executor`, run by ``tep executor``.
"""

from executor.errors import ActionError, HandlerLoadError, NonRetryableError, RetryableError
from executor.handlers import (
    AttemptInfo,
    HandlerRegistry,
    HandlerResult,
    current_attempt,
    default_registry,
    handler,
)

__all__ = [
    "ActionError",
    "AttemptInfo",
    "HandlerLoadError",
    "HandlerRegistry",
    "HandlerResult",
    "NonRetryableError",
    "RetryableError",
    "current_attempt",
    "default_registry",
    "handler",
]
