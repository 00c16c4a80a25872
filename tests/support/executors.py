"""Helpers for tests that run executors: in-process runners, requests, waiting for outcomes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
from nats.js.errors import NotFoundError

from eventstore.codec import decode_event
from eventstore.config import TepSettings
from eventstore.events import ActionCompleted, ActionExecuteRequested, ActionFailed, Event
from eventstore.jetstream.connection import connect
from eventstore.jetstream.log import EventLog
from eventstore.plan import RequestSpec, RetryPolicy
from executor.config import ExecutorConfig
from executor.handlers import HandlerRegistry
from executor.worker import Executor

__all__ = ["http_request", "outcome_of", "running_executor", "wait_for_outcome"]

FAST_STOP = {"shutdown_grace_s": 0.5, "pull_expires_s": 0.25}


def http_request(
    execution_id: str,
    action_id: str,
    url: str,
    *,
    retry: RetryPolicy | None = None,
    queue: str = "http",
    action_type: str = "http",
    input: Any = None,
    **spec: Any,
) -> ActionExecuteRequested:
    """An ``action.execute.requested`` as the orchestrator would dispatch it."""
    return ActionExecuteRequested(
        execution_id=execution_id,
        action_id=action_id,
        event_id=f"{execution_id}.{action_id}.requested",
        action_type=action_type,
        queue=queue,
        request=RequestSpec(url=url, **spec) if url else None,
        input=input,
        retry=retry or RetryPolicy(),
    )


@asynccontextmanager
async def running_executor(
    settings: TepSettings,
    *,
    registry: HandlerRegistry | None = None,
    env: Mapping[str, str] | None = None,
    **config: Any,
) -> AsyncIterator[Executor]:
    """An executor on its own NATS connection, serving until the block ends."""
    nc = await connect(settings.nats_url, name="executor-under-test")
    executor = Executor(
        nc,
        settings,
        ExecutorConfig(**{**FAST_STOP, **config}),
        registry=registry or HandlerRegistry(),
        env=env if env is not None else {},
    )
    try:
        async with anyio.create_task_group() as group:
            await group.start(executor.run)
            try:
                yield executor
            finally:
                executor.stop()
    finally:
        await nc.close()


async def outcome_of(log: EventLog, execution_id: str, action_id: str) -> Event | None:
    """The action's ``action.completed`` or ``action.failed``, if recorded."""
    for kind in ("completed", "failed"):
        try:
            msg = await log.js.get_last_msg(
                log.stream, f"action.{kind}.{execution_id}.{action_id}", direct=True
            )
        except NotFoundError:
            continue
        return decode_event(msg.data or b"")
    return None


async def wait_for_outcome(
    log: EventLog, execution_id: str, action_id: str, timeout: float = 10.0
) -> ActionCompleted | ActionFailed:
    """Wait (polling the log) until the action has an outcome; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        event = await outcome_of(log, execution_id, action_id)
        if isinstance(event, ActionCompleted | ActionFailed):
            return event
        if time.monotonic() > deadline:
            raise AssertionError(f"no outcome for {execution_id}/{action_id} within {timeout}s")
        await anyio.sleep(0.02)
