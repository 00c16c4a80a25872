"""The executor's settings: one typed object, validated once at start."""

from __future__ import annotations

import os
import re
import socket
import uuid

import msgspec

from eventstore.plan import DEFAULT_ACTION_TYPE
from executor.outcome import DEFAULT_TIMEOUT_S

__all__ = ["DEFAULT_CONCURRENCY", "DEFAULT_MAX_OUTPUT_BYTES", "ExecutorConfig", "new_executor_id"]

DEFAULT_CONCURRENCY = 32
DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024
_QUEUE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def new_executor_id() -> str:
    """``<host>-<pid>-<random>``: names the process in ``action.started`` events."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class ExecutorConfig(msgspec.Struct, frozen=True, kw_only=True):
    """How one executor process serves one queue.

    Attributes:
        queue: the queue served (a subject token); actions route here by ``queue`` or type.
        concurrency: requests this process runs at once.
        handler_modules: modules imported at start so their ``@handler`` types are served.
        max_output_bytes: the largest response body / output kept (larger fails with
            ``output_too_large``); also bounded by what fits in one NATS message.
        default_timeout_s: an attempt's time limit when the action sets none.
        shutdown_grace_s: on stop, how long in-flight attempts may finish before they are
            handed back to the queue.
        pull_expires_s: lifetime of each pull request (bounds how long a stop waits for the
            current pull to end).
        executor_id: recorded on ``action.started``.
    """

    queue: str = DEFAULT_ACTION_TYPE
    concurrency: int = DEFAULT_CONCURRENCY
    handler_modules: tuple[str, ...] = ()
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    default_timeout_s: float = DEFAULT_TIMEOUT_S
    shutdown_grace_s: float = 5.0
    pull_expires_s: float = 2.0
    executor_id: str = msgspec.field(default_factory=new_executor_id)

    def __post_init__(self) -> None:
        if not _QUEUE_PATTERN.match(self.queue):
            raise ValueError(f"queue {self.queue!r} must match [A-Za-z0-9_-]{{1,64}}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1 (got {self.concurrency})")
        if self.max_output_bytes < 1:
            raise ValueError(f"max output bytes must be positive (got {self.max_output_bytes})")
        for name in ("default_timeout_s", "pull_expires_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.shutdown_grace_s < 0:
            raise ValueError("shutdown_grace_s must not be negative")
