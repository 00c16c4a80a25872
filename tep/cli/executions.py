"""One execution as a client sees it through the log: connect, look up, read, follow live.

The commands built on this (``submit --wait``, ``events``, ``watch``, ``cancel``) read the log
itself, never the projected view, so they work while no projector runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator

from nats.js.errors import NotFoundError

from eventstore.access import Role
from eventstore.codec import decode_event
from eventstore.errors import EventDecodeError
from eventstore.fold import apply, fold
from eventstore.jetstream.connection import connect_as
from eventstore.jetstream.log import EventLog
from eventstore.records import RecordedEvent
from eventstore.state import ExecutionState
from eventstore.subjects import execution_id_problem, plan_subject
from tep.cli.common import UsageError, settings_from

__all__ = [
    "check_execution_id",
    "follow",
    "load_state",
    "open_log",
    "require_execution",
    "wait_for_terminal",
]

_log = logging.getLogger("tep.cli")


@contextlib.asynccontextmanager
async def open_log(
    args: argparse.Namespace, *, client_name: str = "tep-cli", role: Role = Role.CLIENT
) -> AsyncIterator[EventLog]:
    """Connect with the command's ``--nats-url`` and settings; close on exit.

    Raises:
        NatsUnavailableError: no server answered within the connect timeout.
    """
    settings = settings_from(args)
    nc = await connect_as(settings, role, name=client_name)
    try:
        yield EventLog(nc, settings)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), 2.0)


def check_execution_id(execution_id: str) -> str:
    """The id itself if it can name an execution; :class:`UsageError` otherwise."""
    problem = execution_id_problem(execution_id)
    if problem:
        raise UsageError(problem)
    return execution_id


async def require_execution(log: EventLog, execution_id: str) -> None:
    """Raise :class:`UsageError` unless a ``plan.submitted`` exists for ``execution_id``."""
    check_execution_id(execution_id)
    try:
        await log.js.stream_info(log.stream)
    except NotFoundError:
        raise UsageError(f"unknown execution {execution_id!r}") from None
    if await log.last_on(plan_subject(execution_id)) is None:
        raise UsageError(f"unknown execution {execution_id!r}")


async def load_state(log: EventLog, execution_id: str) -> ExecutionState:
    """The execution's current state, folded from its whole history.

    Raises:
        UsageError: the execution does not exist.
    """
    await require_execution(log, execution_id)
    state = fold(await log.read_execution(execution_id))
    if state is None:
        raise UsageError(f"unknown execution {execution_id!r}")
    return state


async def follow(log: EventLog, execution_id: str) -> AsyncGenerator[RecordedEvent, None]:
    """Every event of the execution from the first one, then live ones as they are appended.

    See :meth:`EventLog.follow_execution_raw`; an undecodable event is logged and skipped.
    Never ends by itself.
    """
    records = log.follow_execution_raw(execution_id)
    try:
        async for record in records:
            try:
                event = decode_event(record.data)
            except EventDecodeError as exc:
                _log.warning(
                    "skipping an undecodable event",
                    extra={"subject": record.subject, "error": str(exc)},
                )
                continue
            yield RecordedEvent(record.sequence, record.subject, event)
    finally:
        await records.aclose()


async def wait_for_terminal(
    log: EventLog, execution_id: str, timeout: float | None
) -> tuple[ExecutionState | None, bool]:
    """Fold the execution's events as they arrive until it completes, fails or is cancelled.

    Returns:
        The state at the end and whether it is terminal (``False``: ``timeout`` ran out).
    """
    state: ExecutionState | None = None
    stream = follow(log, execution_id)
    try:
        async with asyncio.timeout(timeout):
            async for record in stream:
                state = apply(state, record)
                if state is not None and state.terminal:
                    return state, True
    except TimeoutError:
        pass
    finally:
        await stream.aclose()
    return state, False
