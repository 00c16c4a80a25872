"""The read half of :class:`~projections.state_manager.StateManager`: states from the KV view
(or folded from the log for time travel), listings, stats, waiting for the view, history and
live watching.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import msgspec

from eventstore.jetstream.log import EventLog
from eventstore.jetstream.payloads import PayloadStore, run_with_payloads
from eventstore.payload_reading import PayloadReader
from eventstore.records import RecordedEvent
from eventstore.state import ActionState, ExecutionState
from eventstore.subjects import execution_id_problem
from projections.availability import available_actions
from projections.errors import ExecutionNotFoundError, InvalidExecutionIdError
from projections.execution_watch import wait_until_ended, watch_states
from projections.history import At, fold_as_of
from projections.live_view import LiveView
from projections.payload_reads import resolved_state
from projections.plan_cache import PlanCache
from projections.view import (
    LISTING_STATUSES,
    ExecutionSummary,
    ViewStats,
    detached_state,
    index_filter,
)

__all__ = ["StateReads", "check_execution_id"]


class StateReads:
    """The read methods of :class:`~projections.state_manager.StateManager`.

    Every read accepts ``min_sequence=`` and first waits until the view has applied at least
    that sequence (read-your-writes when you ask for it).
    """

    log: EventLog
    payloads: PayloadStore
    read_timeout: float
    _view: LiveView
    _plans: PlanCache

    async def get_execution_state(
        self,
        execution_id: str,
        *,
        at: At | None = None,
        min_sequence: int | None = None,
        timeout: float | None = None,
        resolve: bool = False,
    ) -> ExecutionState | None:
        """The execution's state, or ``None`` if it does not exist.

        Args:
            at: time travel: a stream sequence, or a time (``datetime`` or ISO-8601 string);
                the state is folded from the execution's history up to that point instead of
                read from the view.
            min_sequence: wait until the view has applied this stream sequence first.
            timeout: how long to wait for ``min_sequence`` (default ``read_timeout``).
            resolve: replace the references to values stored in the payload bucket (large
                outputs, input, resume data) with the values; by default they stay
                references ``{"$ref": {"digest", "size", "bucket"}}``.

        Raises:
            InvalidExecutionIdError: ``execution_id`` cannot name an execution.
            ViewTimeoutError: the view did not reach ``min_sequence`` in time.
            ValueError: ``at`` is neither a sequence nor a time.
            PayloadMissingError: with ``resolve``, a value is no longer stored.
        """
        check_execution_id(execution_id)
        if at is not None:
            folded = fold_as_of(await self.log.read_execution(execution_id), at)
            state = None if folded is None else detached_state(folded)
        else:
            await self._await_sequence(min_sequence, timeout)
            state = await self._view.state(execution_id)
        if state is None or not resolve:
            return state
        return await resolved_state(self.payloads, state)

    get_full_state = get_execution_state
    """Alias of :meth:`get_execution_state` (the TypeScript ``getFullState``)."""

    async def get_action_result(
        self,
        execution_id: str,
        action_id: str,
        *,
        min_sequence: int | None = None,
        timeout: float | None = None,
        resolve: bool = False,
    ) -> ActionState | None:
        """One action's result so far (status, attempts, output, error, timings), or ``None``.

        ``resolve``: as for :meth:`get_execution_state` (a large output stays a reference
        unless given).

        Raises:
            InvalidExecutionIdError: ``execution_id`` cannot name an execution.
        """
        state = await self.get_execution_state(
            execution_id, min_sequence=min_sequence, timeout=timeout
        )
        action = None if state is None else state.actions.get(action_id)
        if action is None or not resolve:
            return action
        full = await self.payloads.resolve(msgspec.to_builtins(action))
        return msgspec.convert(full, ActionState)

    async def output(
        self,
        execution_id: str,
        action_id: str,
        *,
        min_sequence: int | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any] | None:
        """The action's full output (fetched from the payload bucket when it is stored by
        reference), or ``None`` while it has none.

        Raises:
            InvalidExecutionIdError: ``execution_id`` cannot name an execution.
            PayloadMissingError: the output is no longer stored (it expired with the log).
        """
        action = await self.get_action_result(
            execution_id, action_id, min_sequence=min_sequence, timeout=timeout
        )
        if action is None or action.output is None:
            return None
        full: dict[str, Any] = await self.payloads.resolve(action.output)
        return full

    async def get_available_actions(
        self,
        execution_id: str,
        *,
        min_sequence: int | None = None,
        timeout: float | None = None,
    ) -> list[str]:
        """Ids of the actions that may start now, in plan order.

        Pending, not yet dispatched, every dependency completed (an error route, ``run_if:
        "failed"``: one failed; ``run_if: "always"``: finished in any way), nothing failing the
        execution, and its ``when`` condition holding; see :mod:`projections.availability`.

        Raises:
            InvalidExecutionIdError: ``execution_id`` cannot name an execution.
            ExecutionNotFoundError: no such execution in the view.
        """
        state = await self.get_execution_state(
            execution_id, min_sequence=min_sequence, timeout=timeout
        )
        if state is None:
            raise ExecutionNotFoundError(execution_id)
        state.plan = await self._plans.get(execution_id)
        # A `when` may look into a value stored by reference: fetched, then evaluated again.
        return await run_with_payloads(
            self.payloads, PayloadReader(), partial(available_actions, state)
        )

    async def list_executions(
        self,
        status: str | None = None,
        plan_id: str | None = None,
        *,
        min_sequence: int | None = None,
        timeout: float | None = None,
    ) -> list[ExecutionSummary]:
        """Executions, optionally only those in ``status`` and/or of ``plan_id``, oldest first.

        ``status="waiting"`` lists the running executions with a waitpoint waiting for
        someone to resume it. Served from the view's index (cost grows with the matches, not
        with the view).

        Raises:
            ValueError: ``status`` is neither an execution status nor ``waiting``.
        """
        if status is not None and status not in LISTING_STATUSES:
            raise ValueError(
                f"unknown execution status {status!r}; one of {', '.join(LISTING_STATUSES)}"
            )
        await self._await_sequence(min_sequence, timeout)
        return await self._view.summaries(index_filter(status, plan_id))

    async def get_stats(self) -> ViewStats:
        """Global counters: executions by status and actions by status."""
        return await self._view.stats()

    async def view_checkpoint(self) -> int:
        """The last stream sequence the live view has applied."""
        return await self._view.checkpoint()

    async def in_log(self, execution_id: str) -> bool:
        """Whether the log holds this execution (its ``plan.submitted``), view or not.

        Raises:
            InvalidExecutionIdError: ``execution_id`` cannot name an execution.
        """
        check_execution_id(execution_id)
        try:
            await self._plans.get(execution_id)
        except ExecutionNotFoundError:
            return False
        return True

    async def wait_for_sequence(self, sequence: int, timeout: float | None = None) -> None:
        """Wait until the view has applied stream sequence ``sequence``.

        Raises:
            ViewTimeoutError: not within ``timeout`` seconds (default ``read_timeout``).
        """
        await self._view.wait_for_sequence(
            sequence, self.read_timeout if timeout is None else timeout
        )

    async def wait_for_completion(self, execution_id: str, timeout: float = 30.0) -> ExecutionState:
        """Wait until the execution is completed, failed or cancelled; return that state.

        Raises:
            InvalidExecutionIdError: ``execution_id`` cannot name an execution.
            ExecutionNotFoundError: the log has no such execution (said at once: waiting for
                one nobody submitted would only run out the timeout).
            ViewTimeoutError: it did not end within ``timeout`` seconds.
        """
        await self._require_in_log(execution_id)
        return await wait_until_ended(self._view, self.log, execution_id, timeout)

    async def history(self, execution_id: str) -> list[RecordedEvent]:
        """Every event of the execution, in log order (empty if it does not exist).

        Raises:
            InvalidExecutionIdError: ``execution_id`` cannot name an execution.
        """
        check_execution_id(execution_id)
        return await self.log.read_execution(execution_id)

    async def watch(
        self, execution_id: str, *, after: int | None = None, until_end: bool = True
    ) -> AsyncIterator[ExecutionState]:
        """Every state of the execution from now on, in order, ending after the terminal one.

        Driven by a KV watch on the execution's key. The view writes an execution once per
        projector batch; when it skipped states (several events in one batch), they are
        recovered from the execution's history, so each event's state is yielded, from the
        pending one on when the view has not caught up with a just-submitted execution yet.

        ``after``: resume after that stream sequence (the state after each later event of the
        history first); ``until_end=False``: follow on past the end (a retry re-opens it).

        Raises:
            InvalidExecutionIdError: ``execution_id`` cannot name an execution.
            ExecutionNotFoundError: the log has no such execution (on the first iteration).
        """
        await self._require_in_log(execution_id)
        watched = watch_states(self._view, self.log, execution_id, after=after, until_end=until_end)
        async with contextlib.aclosing(watched) as states:
            async for state in states:
                yield state

    async def _await_sequence(self, min_sequence: int | None, timeout: float | None) -> None:
        if min_sequence:
            await self.wait_for_sequence(min_sequence, timeout)

    async def _require_in_log(self, execution_id: str) -> None:
        """Raise unless the log has the execution's ``plan.submitted`` (one direct get; the
        log, not the view, which may not have caught up yet)."""
        check_execution_id(execution_id)
        await self._plans.get(execution_id)


def check_execution_id(execution_id: str) -> None:
    """Raise :class:`InvalidExecutionIdError` unless ``execution_id`` can name an execution."""
    problem = execution_id_problem(execution_id)
    if problem:
        raise InvalidExecutionIdError(execution_id, problem)
