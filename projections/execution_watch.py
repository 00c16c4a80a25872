"""Following one execution's state through the view: every state in order, or just the end.

Driven by a KV watch on the execution's key. The view writes an execution once per projector
batch; when that skipped states (several events in one batch), they are recovered from the
execution's history in the log, so a watcher sees the state after each event.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator

from eventstore.fold import apply
from eventstore.jetstream.log import EventLog
from eventstore.state import ExecutionState
from eventstore.subjects import terminal_filter
from projections.errors import ViewTimeoutError
from projections.live_view import LiveView
from projections.view import detached_state

__all__ = ["ended_for_good", "wait_until_ended", "watch_states"]


async def watch_states(
    view: LiveView,
    log: EventLog,
    execution_id: str,
    *,
    after: int | None = None,
    until_end: bool = True,
) -> AsyncGenerator[ExecutionState, None]:
    """Every state of the execution from now on, in order, ending after the terminal one.

    When the view does not have the execution yet, the first state yielded is the pending one.
    Callers check first that the execution exists (it waits for one that never comes).

    Args:
        after: resume after this stream sequence instead of starting with the current state:
            first the state after each event of the history above ``after`` (from the log),
            then live ones; each state once, none left out.
        until_end: end after a terminal state; otherwise follow on (a retry re-opens an
            ended execution) until the caller stops iterating.
    """
    last: ExecutionState | None
    if after is None:
        last = await view.state(execution_id)
        if last is not None and last.terminal and not await ended_for_good(log, last):
            # The view still shows an end a retry has re-opened: follow from that end on.
            last, replayed = await _history_after(log, execution_id, last.last_sequence)
        else:
            replayed = [] if last is None else [last]
    else:
        last, replayed = await _history_after(log, execution_id, after)
    for state in replayed:
        yield state
        if until_end and await ended_for_good(log, state):
            return
    if last is not None and until_end and await ended_for_good(log, last):
        return
    async with contextlib.aclosing(view.states(execution_id)) as states:
        async for state in states:
            seen = last.last_sequence if last is not None else 0
            if state.last_sequence <= seen:
                continue
            expected = (last.event_count if last is not None else 0) + 1
            if state.event_count > expected:
                for missed in await _states_between(log, execution_id, seen, state.last_sequence):
                    yield missed
            yield state
            last = state
            if until_end and await ended_for_good(log, state):
                return


async def ended_for_good(log: EventLog, state: ExecutionState) -> bool:
    """Whether ``state`` is the execution's end for good: terminal, and no ``execution.retried``
    after it re-opened it (one direct get: the retried event shares the end's filter)."""
    if not state.terminal:
        return False
    latest = await log.last_on(terminal_filter(state.execution_id))
    return latest is None or latest.sequence <= state.last_sequence


async def wait_until_ended(
    view: LiveView, log: EventLog, execution_id: str, timeout: float
) -> ExecutionState:
    """The execution's state once the view shows it completed, failed or cancelled (an end a
    later ``execution.retried`` re-opened does not count: the retried run's end does).

    Callers check first that the execution exists (it waits out ``timeout`` otherwise).

    Raises:
        ViewTimeoutError: it did not end within ``timeout`` seconds.
    """
    try:
        async with (
            asyncio.timeout(timeout),
            contextlib.aclosing(view.states(execution_id)) as states,
        ):
            async for state in states:
                if await ended_for_good(log, state):
                    return state
    except TimeoutError:
        pass
    raise ViewTimeoutError(f"execution {execution_id!r} did not end within {timeout:g}s")


async def _history_after(
    log: EventLog, execution_id: str, after: int
) -> tuple[ExecutionState | None, list[ExecutionState]]:
    """The execution's state now (folded from its history) and the state after each of its
    events above ``after``, in order."""
    states = []
    state: ExecutionState | None = None
    for record in await log.read_execution(execution_id):
        state = apply(state, record)
        if record.sequence > after and state is not None:
            states.append(detached_state(state))
    return (None if state is None else detached_state(state)), states


async def _states_between(
    log: EventLog, execution_id: str, after: int, before: int
) -> list[ExecutionState]:
    """States after each event in (after, before) of the execution's history."""
    states = []
    state: ExecutionState | None = None
    for record in await log.read_execution(execution_id):
        if record.sequence >= before:
            break
        state = apply(state, record)
        if record.sequence > after and state is not None:
            states.append(detached_state(state))
    return states
