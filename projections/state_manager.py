"""The StateManager: one object to start executions, record their progress and read their state.

Writes append events to the log (validated against the execution's history, with optimistic
concurrency); reads come from the KV view the projector maintains. Every write returns the
stream sequence it was stored at; every read accepts ``min_sequence=`` and first waits until
the view has applied at least that sequence (read-your-writes when you ask for it).

Example:
    >>> sm = await StateManager.connect("nats://127.0.0.1:4222")  # doctest: +SKIP
    >>> state = await sm.initialize_state(plan_document)  # doctest: +SKIP
    >>> await sm.get_execution_state(  # doctest: +SKIP
    ...     state.execution_id, min_sequence=state.last_sequence
    ... )
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import Any

import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import KeyNotFoundError, NotFoundError, ServiceUnavailableError
from nats.js.kv import KeyValue

from eventstore.codec import decode_event
from eventstore.config import Settings
from eventstore.errors import ConcurrencyError, PlanValidationError
from eventstore.events import ErrorInfo, Event, PlanSubmitted, new_execution_id
from eventstore.fold import apply, fold
from eventstore.jetstream.connection import connect
from eventstore.jetstream.log import EventLog
from eventstore.jetstream.provision import ensure_log
from eventstore.jetstream.scan import scan_keys
from eventstore.plan import Plan
from eventstore.plan_validation import PlanLimits, parse_plan
from eventstore.records import RecordedEvent
from eventstore.state import EXECUTION_STATUSES, ActionState, ExecutionState
from eventstore.subjects import execution_id_problem, plan_subject, subject_for
from projections.availability import available_actions
from projections.buckets import META_BUCKET, POINTER_KEY, bucket_name, ensure_current_view
from projections.errors import ExecutionNotFoundError, ViewTimeoutError
from projections.history import At, fold_as_of
from projections.transitions import ActionResult, result_event, status_event
from projections.view import (
    CHECKPOINT_KEY,
    STATS_KEY,
    ExecutionSummary,
    ViewStats,
    decode_checkpoint,
    decode_state,
    decode_stats,
    decode_summary,
    exec_key,
    index_filter,
)

__all__ = ["StateManager"]

_WRITE_RETRIES = 5
_PLAN_CACHE = 256
_VIEW_GONE = (NotFoundError, NoRespondersError, ServiceUnavailableError)
_state_encoder = msgspec.json.Encoder()
_state_decoder = msgspec.json.Decoder(ExecutionState)


class _Pointer(msgspec.Struct):
    generation: int


_pointer_decoder = msgspec.json.Decoder(_Pointer)


def _public(state: ExecutionState) -> ExecutionState:
    """A detached copy without the plan: what every read returns."""
    copy = _state_decoder.decode(_state_encoder.encode(msgspec.structs.replace(state, plan=None)))
    return copy


class StateManager:
    """Facade over the event log (writes) and the projected KV view (reads).

    Build it with :meth:`connect`, or around an existing connection and call :meth:`open`.
    Use it as an async context manager, or call :meth:`close`.

    Args:
        nc: a NATS connection.
        settings: stream names and limits (default: ``Settings.from_env()``).
        read_timeout: how long reads wait for ``min_sequence`` by default, in seconds.
    """

    def __init__(
        self,
        nc: NatsClient,
        settings: Settings | None = None,
        *,
        read_timeout: float = 10.0,
        owns_connection: bool = False,
    ) -> None:
        self.nc = nc
        self.settings = settings or Settings.from_env()
        self.log = EventLog(nc, self.settings)
        self.read_timeout = read_timeout
        self.last_sequence = 0
        """The stream sequence of this manager's newest write (0 before any)."""
        self._owns_connection = owns_connection
        self._meta: KeyValue | None = None
        self._view: KeyValue | None = None
        self._generation = 0
        self._pointer_sub: Subscription | None = None
        self._plans: OrderedDict[str, Plan] = OrderedDict()

    # ------------------------------------------------------------ lifecycle

    @classmethod
    async def connect(
        cls,
        url: str | None = None,
        *,
        settings: Settings | None = None,
        name: str = "tep-state-manager",
        read_timeout: float = 10.0,
    ) -> StateManager:
        """Connect to NATS and open the view.

        Args:
            url: server URL(s), comma-separated; default ``$TEP_NATS_URL`` or the local default.
            settings: full settings (``url`` overrides its ``nats_url``).

        Raises:
            NatsUnavailableError: no server answered.
        """
        settings = settings or Settings.from_env()
        if url is not None:
            settings = settings.model_copy(update={"nats_url": url})
        nc = await connect(settings.nats_url, name=name, timeout_s=settings.connect_timeout_s)
        manager = cls(nc, settings, read_timeout=read_timeout, owns_connection=True)
        try:
            await manager.open()
        except BaseException:
            await nc.close()
            raise
        return manager

    async def open(self) -> None:
        """Provision the log if needed, resolve the live view and follow its switches."""
        await ensure_log(self.log.js, self.settings)
        # Subscribe before reading the pointer, so a switch in between is not missed.
        self._pointer_sub = await self.nc.subscribe(
            f"$KV.{META_BUCKET}.{POINTER_KEY}", cb=self._on_pointer
        )
        self._meta, pointer, self._view = await ensure_current_view(self.log.js, self.settings)
        self._generation = pointer.generation

    async def close(self) -> None:
        """Stop following the view; close the connection if :meth:`connect` opened it."""
        if self._pointer_sub is not None:
            with contextlib.suppress(Exception):  # the connection may already be closed
                await self._pointer_sub.unsubscribe()
            self._pointer_sub = None
        if self._owns_connection and not self.nc.is_closed:
            await self.nc.close()

    async def __aenter__(self) -> StateManager:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ---------------------------------------------------------------- writes

    async def initialize_state(
        self, plan: Plan | Mapping[str, Any] | str | bytes, execution_id: str | None = None
    ) -> ExecutionState:
        """Validate ``plan`` and start an execution of it (publishes ``plan.submitted``).

        Returns:
            The pending state; its ``last_sequence`` is the write's stream sequence.

        Raises:
            PlanValidationError: the plan or the execution id is invalid (nothing published).
            ExecutionExistsError: ``execution_id`` is taken.
        """
        parsed = parse_plan(
            plan,
            limits=PlanLimits(
                max_actions=self.settings.max_actions,
                max_plan_bytes=self.settings.max_plan_bytes,
            ),
        )
        execution_id = execution_id or new_execution_id()
        problem = execution_id_problem(execution_id)
        if problem:
            raise PlanValidationError([problem])
        event = PlanSubmitted(execution_id=execution_id, plan=parsed)
        result = await self.log.append(event)
        self._note_write(result.sequence)
        state = apply(None, RecordedEvent(result.sequence, subject_for(event), event))
        assert state is not None
        self._remember_plan(execution_id, parsed)
        return _public(state)

    async def update_action_status(
        self,
        execution_id: str,
        action_id: str,
        status: str,
        *,
        error: ErrorInfo | str | None = None,
        reason: str | None = None,
    ) -> int:
        """Move an action to ``status`` by appending the matching event.

        ``running`` appends ``action.started`` (next attempt), ``completed`` /``failed``
        ``action.completed`` / ``action.failed`` (``error`` for the latter), ``skipped``
        ``action.skipped`` and ``cancelled`` ``action.cancelled`` (with ``reason``).

        Returns:
            The stream sequence of the appended event.

        Raises:
            ExecutionNotFoundError: no such execution.
            ActionNotFoundError: no such action in its plan.
            InvalidTransitionError: the action's current status does not allow it.
        """

        def make(state: ExecutionState) -> Event:
            return status_event(state, action_id, status, error=error, reason=reason)

        return await self._append_checked(execution_id, make)

    async def record_action_result(
        self, execution_id: str, action_id: str, result: ActionResult | Any
    ) -> int:
        """Record an action's outcome: ``action.completed``, or ``action.failed`` on error.

        Args:
            result: an :class:`ActionResult` (``output`` or ``error``), or any JSON value,
                which becomes the output (objects as they are, others as ``{"value": ...}``).

        Returns:
            The stream sequence of the appended event.

        Raises:
            ExecutionNotFoundError, ActionNotFoundError, InvalidTransitionError: as for
                :meth:`update_action_status`.
        """

        def make(state: ExecutionState) -> Event:
            return result_event(state, action_id, result)

        return await self._append_checked(execution_id, make)

    async def _append_checked(
        self, execution_id: str, make: Callable[[ExecutionState], Event]
    ) -> int:
        """Check a change against the execution's history and append it at that version."""
        for attempt in range(_WRITE_RETRIES):
            state = fold(await self.log.read_execution(execution_id))
            if state is None:
                raise ExecutionNotFoundError(execution_id)
            event: Event = make(state)
            try:
                result = await self.log.append(event, expected_version=state.version)
            except ConcurrencyError:
                if attempt == _WRITE_RETRIES - 1:
                    raise
                continue
            self._note_write(result.sequence)
            return result.sequence
        raise AssertionError("unreachable")

    def _note_write(self, sequence: int) -> None:
        self.last_sequence = max(self.last_sequence, sequence)

    # ----------------------------------------------------------------- reads

    async def get_execution_state(
        self,
        execution_id: str,
        *,
        at: At | None = None,
        min_sequence: int | None = None,
        timeout: float | None = None,
    ) -> ExecutionState | None:
        """The execution's state, or ``None`` if it does not exist.

        Args:
            at: time travel: a stream sequence, or a time (``datetime`` or ISO-8601 string);
                the state is folded from the execution's history up to that point instead of
                read from the view.
            min_sequence: wait until the view has applied this stream sequence first.
            timeout: how long to wait for ``min_sequence`` (default ``read_timeout``).

        Raises:
            ViewTimeoutError: the view did not reach ``min_sequence`` in time.
            ValueError: ``at`` is neither a sequence nor a time.
        """
        if at is not None:
            state = fold_as_of(await self.log.read_execution(execution_id), at)
            return None if state is None else _public(state)
        await self._await_sequence(min_sequence, timeout)
        return await self._read_state(execution_id)

    get_full_state = get_execution_state
    """Alias of :meth:`get_execution_state` (the TypeScript ``getFullState``)."""

    async def get_action_result(
        self,
        execution_id: str,
        action_id: str,
        *,
        min_sequence: int | None = None,
        timeout: float | None = None,
    ) -> ActionState | None:
        """One action's result so far (status, attempts, output, error, timings), or ``None``."""
        state = await self.get_execution_state(
            execution_id, min_sequence=min_sequence, timeout=timeout
        )
        if state is None:
            return None
        return state.actions.get(action_id)

    async def get_available_actions(
        self,
        execution_id: str,
        *,
        min_sequence: int | None = None,
        timeout: float | None = None,
    ) -> list[str]:
        """Ids of the actions that may start now, in plan order.

        Pending, not yet dispatched, every dependency completed (or, for an action with
        ``run_on_dependency_failure``, finished in any way), nothing failing the execution,
        and its ``when`` condition holding; see :mod:`projections.availability`.

        Raises:
            ExecutionNotFoundError: no such execution in the view.
        """
        state = await self.get_execution_state(
            execution_id, min_sequence=min_sequence, timeout=timeout
        )
        if state is None:
            raise ExecutionNotFoundError(execution_id)
        state.plan = await self._plan(execution_id)
        return available_actions(state)

    async def list_executions(
        self,
        status: str | None = None,
        plan_id: str | None = None,
        *,
        min_sequence: int | None = None,
        timeout: float | None = None,
    ) -> list[ExecutionSummary]:
        """Executions, optionally only those in ``status`` and/or of ``plan_id``, oldest first.

        Served from the view's index (cost grows with the matches, not with the view).

        Raises:
            ValueError: ``status`` is not an execution status.
        """
        if status is not None and status not in EXECUTION_STATUSES:
            raise ValueError(
                f"unknown execution status {status!r}; one of {', '.join(EXECUTION_STATUSES)}"
            )
        await self._await_sequence(min_sequence, timeout)
        pattern = index_filter(status, plan_id)
        for _ in range(2):
            await self._current_view()
            try:
                entries = await scan_keys(self.nc, bucket_name(self._generation), pattern)
            except _VIEW_GONE:
                await self._refresh_pointer()
                continue
            summaries = [decode_summary(value) for value in entries.values()]
            summaries.sort(key=lambda s: (s.submitted_at or "", s.execution_id))
            return summaries
        return []

    async def get_stats(self) -> ViewStats:
        """Global counters: executions by status and actions by status."""
        view = await self._current_view()
        try:
            entry = await view.get(STATS_KEY)
        except KeyNotFoundError:
            return ViewStats()
        return decode_stats(entry.value or b"{}")

    async def view_checkpoint(self) -> int:
        """The last stream sequence the live view has applied."""
        for _ in range(2):
            view = await self._current_view()
            try:
                entry = await view.get(CHECKPOINT_KEY)
            except KeyNotFoundError:
                return 0
            except _VIEW_GONE:
                await self._refresh_pointer()
                continue
            return decode_checkpoint(entry.value or b"")
        return 0

    async def wait_for_sequence(self, sequence: int, timeout: float | None = None) -> None:
        """Wait until the view has applied stream sequence ``sequence``.

        Raises:
            ViewTimeoutError: not within ``timeout`` seconds (default ``read_timeout``).
        """
        limit = self.read_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        delay = 0.002
        while True:
            reached = await self.view_checkpoint()
            if reached >= sequence:
                return
            if time.monotonic() >= deadline:
                raise ViewTimeoutError(
                    f"the view has applied up to sequence {reached}, not {sequence}, after "
                    f"{limit:g}s: is a projector running (tep projector)?"
                )
            await asyncio.sleep(min(delay, max(deadline - time.monotonic(), 0)))
            delay = min(delay * 2, 0.05)

    async def wait_for_completion(self, execution_id: str, timeout: float = 30.0) -> ExecutionState:
        """Wait until the execution is completed, failed or cancelled; return that state.

        Raises:
            ViewTimeoutError: it did not end within ``timeout`` seconds.
        """
        try:
            async with (
                asyncio.timeout(timeout),
                contextlib.aclosing(self._view_states(execution_id)) as states,
            ):
                async for state in states:
                    if state.terminal:
                        return state
        except TimeoutError:
            pass
        raise ViewTimeoutError(f"execution {execution_id!r} did not end within {timeout:g}s")

    async def watch(self, execution_id: str) -> AsyncIterator[ExecutionState]:
        """Every state of the execution from now on, in order, ending after the terminal one.

        Driven by a KV watch on the execution's key. The view writes an execution once per
        projector batch; when it skipped states (several events in one batch), they are
        recovered from the execution's history, so each event's state is yielded. Started
        before the execution exists, the first state yielded is the pending one.
        """
        existed = await self._read_state(execution_id)
        last: ExecutionState | None = existed
        if existed is not None:
            yield existed
            if existed.terminal:
                return
        async with contextlib.aclosing(self._view_states(execution_id)) as states:
            async for state in states:
                seen = last.last_sequence if last is not None else 0
                if state.last_sequence <= seen:
                    continue
                expected = (last.event_count if last is not None else 0) + 1
                if state.event_count > expected:
                    between = await self._states_between(execution_id, seen, state.last_sequence)
                    for missed in between:
                        yield missed
                yield state
                last = state
                if state.terminal:
                    return

    async def _states_between(
        self, execution_id: str, after: int, before: int
    ) -> list[ExecutionState]:
        """States after each event in (after, before) of the execution's history."""
        states = []
        state: ExecutionState | None = None
        for record in await self.log.read_execution(execution_id):
            if record.sequence >= before:
                break
            state = apply(state, record)
            if record.sequence > after and state is not None:
                states.append(_public(state))
        return states

    async def _view_states(self, execution_id: str) -> AsyncGenerator[ExecutionState, None]:
        """States of the execution's view key as they are written, following view switches."""
        while True:
            generation = self._generation
            view = await self._current_view()
            watcher = await view.watch(exec_key(execution_id))
            try:
                while generation == self._generation:
                    try:
                        entry = await watcher.updates(timeout=1.0)  # type: ignore[no-untyped-call]
                    except NatsTimeoutError:
                        continue
                    if entry is None or not entry.value or entry.operation is not None:
                        continue
                    yield decode_state(entry.value)
            finally:
                with contextlib.suppress(Exception):  # the bucket may be gone already
                    await watcher.stop()  # type: ignore[no-untyped-call]

    # -------------------------------------------------------------- internals

    async def _await_sequence(self, min_sequence: int | None, timeout: float | None) -> None:
        if min_sequence:
            await self.wait_for_sequence(min_sequence, timeout)

    async def _read_state(self, execution_id: str) -> ExecutionState | None:
        for _ in range(2):
            view = await self._current_view()
            try:
                entry = await view.get(exec_key(execution_id))
            except KeyNotFoundError:
                if await self._refresh_pointer():
                    continue  # the view was switched under us: look in the new one
                return None
            except _VIEW_GONE:
                await self._refresh_pointer()
                continue
            return decode_state(entry.value or b"")
        return None

    async def _current_view(self) -> KeyValue:
        if self._meta is None:
            raise RuntimeError("StateManager is not open: use StateManager.connect() or open()")
        if self._view is None:
            self._view = await self.log.js.key_value(bucket_name(self._generation))
        return self._view

    async def _on_pointer(self, msg: Msg) -> None:
        # A publish on the pointer's subject is only a hint (it may have lost its
        # compare-and-set): read what the bucket actually holds.
        try:
            await self._refresh_pointer()
        except Exception:  # the next miss re-reads it anyway
            return

    def _switch_to(self, generation: int) -> bool:
        if generation == self._generation:
            return False
        self._generation = generation
        self._view = None
        return True

    async def _refresh_pointer(self) -> bool:
        """Re-read the pointer; ``True`` if it names another view than the one in use."""
        if self._meta is None:
            raise RuntimeError("StateManager is not open: use StateManager.connect() or open()")
        try:
            entry = await self._meta.get(POINTER_KEY)
        except KeyNotFoundError:
            return False
        try:
            generation = _pointer_decoder.decode(entry.value or b"").generation
        except msgspec.DecodeError:
            return False
        return self._switch_to(generation)

    async def in_log(self, execution_id: str) -> bool:
        """Whether the log holds this execution (its ``plan.submitted``), view or not."""
        try:
            await self._plan(execution_id)
        except ExecutionNotFoundError:
            return False
        return True

    async def _plan(self, execution_id: str) -> Plan:
        plan = self._plans.get(execution_id)
        if plan is not None:
            self._plans.move_to_end(execution_id)
            return plan
        record = await self.log.last_on(plan_subject(execution_id))
        if record is None:
            raise ExecutionNotFoundError(execution_id)
        event = decode_event(record.data)
        if not isinstance(event, PlanSubmitted):
            raise ExecutionNotFoundError(execution_id)
        self._remember_plan(execution_id, event.plan)
        return event.plan

    def _remember_plan(self, execution_id: str, plan: Plan) -> None:
        self._plans[execution_id] = plan
        while len(self._plans) > _PLAN_CACHE:
            self._plans.popitem(last=False)
