"""Server-Sent Events of an execution's states (``GET /v1/executions/{id}/stream``).

Wire format, one SSE event per state the execution went through::

    retry: 2000

    id: 42
    event: state
    data: {"execution_id": "exe_...", "status": "running", "last_sequence": 42, ...}

    event: end
    data: {"execution_id": "exe_...", "status": "completed", "last_sequence": 57}

``id`` is the stream sequence of the event that led to the state (``last_sequence``), so a
client reconnecting with ``Last-Event-ID: 42`` gets the state after each later event of the
history, then live ones: every state the execution had after 42, once each, in order. ``end``
follows the execution's end (a terminal state no retry has re-opened) when the stream was
asked to stop there (``until_end``); an idle
stream carries a ``: keep-alive`` comment every heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import msgspec

from eventstore.state import ExecutionState
from tep.api.envelopes import StreamEnd

__all__ = ["RETRY_MS", "end_event", "sse_states", "state_event"]

RETRY_MS = 2000
"""How long a browser waits before reconnecting (its EventSource sends Last-Event-ID)."""

_log = logging.getLogger("tep.api")
_encoder = msgspec.json.Encoder()
_KEEP_ALIVE = b": keep-alive\n\n"
_DONE = object()


def state_event(state: ExecutionState) -> bytes:
    """One ``state`` event (the state without its plan, as the view holds it)."""
    data = _encoder.encode(msgspec.structs.replace(state, plan=None))
    return b"id: %d\nevent: state\ndata: %s\n\n" % (state.last_sequence, data)


def end_event(state: ExecutionState) -> bytes:
    """The ``end`` event after a terminal state."""
    end = StreamEnd(
        execution_id=state.execution_id, status=state.status, last_sequence=state.last_sequence
    )
    return b"event: end\ndata: %s\n\n" % _encoder.encode(end)


async def sse_states(
    states: AsyncIterator[ExecutionState],
    *,
    heartbeat_s: float,
    until_end: bool,
    final: Callable[[], Awaitable[ExecutionState | None]],
) -> AsyncIterator[bytes]:
    """The SSE byte chunks of ``states``, with keep-alives while nothing happens.

    The states are read in a task of their own, so a keep-alive never interrupts reading one;
    the task (and with it ``states``) is closed when the client goes away. With
    ``until_end``, ``states`` end after the execution's end (one no retry re-opened) and the
    stream follows with ``end`` (naming the last state sent, or, when resuming after the end,
    the state ``final`` gives).
    """
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=64)
    outcome: list[bool] = []

    async def pump() -> None:
        try:
            async for state in states:
                await queue.put(state)
            outcome.append(True)
        except Exception:
            # The client reconnects with Last-Event-ID and misses nothing: end this stream.
            _log.warning("event stream ended by an error", exc_info=True)
        finally:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(_DONE)

    task = asyncio.create_task(pump())
    sent: ExecutionState | None = None
    try:
        yield b"retry: %d\n\n" % RETRY_MS
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), heartbeat_s)
            except TimeoutError:
                if task.done():
                    break
                yield _KEEP_ALIVE
                continue
            if item is _DONE:
                if until_end and outcome:
                    # The states end after the end for good (not one a retry re-opened).
                    last = sent if sent is not None else await final()
                    if last is not None:
                        yield end_event(last)
                break
            assert isinstance(item, ExecutionState)
            yield state_event(item)
            sent = item
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        aclose = getattr(states, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()
