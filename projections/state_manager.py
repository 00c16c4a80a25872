"""The StateManager: one object to start executions, record their progress and read their state.

Writes append events to the log (validated against the execution's history, with optimistic
concurrency); reads come from the KV view the projector maintains. Every write returns the
stream sequence it was stored at; every read accepts ``min_sequence=`` and first waits until
the view has applied at least that sequence (read-your-writes when you ask for it).

Every method taking an execution id first checks that it can name one at all (one subject
token): anything else raises :class:`InvalidExecutionIdError` before NATS is asked.

Example:
    >>> sm = await StateManager.connect("nats://127.0.0.1:4222")  # doctest: +SKIP
    >>> state = await sm.initialize_state(plan_document)  # doctest: +SKIP
    >>> await sm.get_execution_state(  # doctest: +SKIP
    ...     state.execution_id, min_sequence=state.last_sequence
    ... )
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

from nats.aio.client import Client as NatsClient

from eventstore.access import Role
from eventstore.config import TepSettings
from eventstore.errors import ConcurrencyError, PlanValidationError
from eventstore.events import ErrorInfo, Event, PlanSubmitted, new_execution_id
from eventstore.fold import apply, fold
from eventstore.input_payloads import detach_input
from eventstore.jetstream.connection import connect_as
from eventstore.jetstream.log import EventLog
from eventstore.jetstream.payloads import PayloadStore, store_large_output
from eventstore.jetstream.provision import ensure_log
from eventstore.plan import Plan
from eventstore.plan_validation import parse_plan
from eventstore.records import RecordedEvent
from eventstore.state import ExecutionState
from eventstore.subjects import execution_id_problem, subject_for
from eventstore.tracing import client_trace, use_trace
from projections.cancel import request_cancel
from projections.cancellation import Cancellation
from projections.errors import ExecutionNotFoundError
from projections.live_view import LiveView
from projections.plan_cache import PlanCache
from projections.plan_registry import PlanRegistryOperations
from projections.retry import retry
from projections.state_reads import StateReads, check_execution_id
from projections.submission import Submission, submit_once
from projections.transitions import ActionResult, result_event, status_event
from projections.view import (
    detached_state,
)
from projections.waitpoints import WaitpointOperations

__all__ = ["StateManager"]

_WRITE_RETRIES = 5


class StateManager(StateReads, WaitpointOperations, PlanRegistryOperations):
    """Facade over the event log (writes) and the projected KV view (reads).

    Waitpoints are completed with :meth:`complete_waitpoint` and :meth:`complete_by_token`
    (see :mod:`projections.waitpoints`); the plan registry is filled and read with
    :meth:`put_plan`, :meth:`get_plan` and :meth:`list_plans` (see
    :mod:`projections.plan_registry`).

    Build it with :meth:`connect`, or around an existing connection and call :meth:`open`.
    Use it as an async context manager, or call :meth:`close`.

    Args:
        nc: a NATS connection.
        settings: stream names and limits (default: ``TepSettings.from_env()``).
        read_timeout: how long reads wait for ``min_sequence`` by default, in seconds.
    """

    def __init__(
        self,
        nc: NatsClient,
        settings: TepSettings | None = None,
        *,
        read_timeout: float = 10.0,
        owns_connection: bool = False,
    ) -> None:
        self.nc = nc
        self.settings = settings or TepSettings.from_env()
        self.log = EventLog(nc, self.settings)
        self.read_timeout = read_timeout
        self.last_sequence = 0
        """The stream sequence of this manager's newest write (0 before any)."""
        self._owns_connection = owns_connection
        self._view = LiveView(nc, self.log.js)
        self._plans = PlanCache(self.log)
        self.payloads = PayloadStore(nc, self.settings)
        """The payload bucket: values too large for their events (see :meth:`output`)."""

    # ------------------------------------------------------------ lifecycle

    @classmethod
    async def connect(
        cls,
        url: str | None = None,
        *,
        settings: TepSettings | None = None,
        name: str = "tep-state-manager",
        read_timeout: float = 10.0,
        role: Role | str = Role.CLIENT,
    ) -> StateManager:
        """Connect to NATS and open the view.

        Args:
            url: server URL(s), comma-separated; default ``$TEP_NATS_URL`` or the local default.
            settings: full settings (``url`` overrides its ``nats_url``); its credentials
                (``TEP_NKEY``, ``TEP_CREDS``, ...) are this connection's identity.
            role: the identity's role, for finding a local ``tep up``'s credential and the
                reply inbox: ``client`` (submit, cancel, read) or ``admin`` (also
                :meth:`update_action_status` and :meth:`record_action_result`).

        Raises:
            NatsUnavailableError: no server answered.
        """
        settings = settings or TepSettings.from_env()
        if url is not None:
            settings = settings.model_copy(update={"nats_url": url})
        nc = await connect_as(settings, role, name=name)
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
        await self._view.open(self.settings)

    async def close(self) -> None:
        """Stop following the view; close the connection if :meth:`connect` opened it."""
        await self._view.close()
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
        self,
        plan: Plan | Mapping[str, Any] | str | bytes,
        execution_id: str | None = None,
        *,
        traceparent: str | None = None,
    ) -> ExecutionState:
        """Validate ``plan`` and start an execution of it (publishes ``plan.submitted``).

        The execution's events carry the trace of ``traceparent`` (a W3C header value), else
        the caller's current one, else a new trace (see :func:`eventstore.tracing.client_trace`).

        Returns:
            The pending state; its ``last_sequence`` is the write's stream sequence.

        An input above ``TEP_PAYLOAD_INLINE_BYTES`` is stored in the payload bucket and the
        plan carries its reference (the returned state's ``input`` too).

        Raises:
            PlanValidationError: the plan or the execution id is invalid, or the input is
                above ``TEP_PAYLOAD_MAX_BYTES`` (nothing published).
            ExecutionExistsError: ``execution_id`` is taken.
        """
        document, payload = detach_input(
            plan, self.settings.payload_limits, max_depth=self.settings.max_json_depth
        )
        parsed = parse_plan(
            document,
            limits=self.settings.plan_limits,
        )
        execution_id = execution_id or new_execution_id()
        problem = execution_id_problem(execution_id)
        if problem:
            raise PlanValidationError([problem])
        if payload is not None:
            await self.payloads.put(payload)
        event = PlanSubmitted(execution_id=execution_id, plan=parsed)
        with use_trace(client_trace(traceparent)):
            result = await self.log.append(event)
        self._note_write(result.sequence)
        state = apply(None, RecordedEvent(result.sequence, subject_for(event), event))
        assert state is not None
        self._plans.remember(execution_id, parsed)
        return detached_state(state)

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
            InvalidExecutionIdError: ``execution_id`` cannot name an execution.
            ExecutionNotFoundError: no such execution.
            ActionNotFoundError: no such action in its plan.
            InvalidTransitionError: the action's current status does not allow it.
        """

        def make(state: ExecutionState) -> Event:
            return status_event(state, action_id, status, error=error, reason=reason)

        return await self._append_checked(execution_id, make)

    async def retry(
        self,
        execution_id: str,
        *,
        from_actions: Sequence[str] = (),
        only_failed: bool = False,
        requested_by: str | None = None,
        reason: str | None = None,
    ) -> ExecutionState:
        """Re-run an ended execution from ``from_actions`` (or what failed), keeping upstream
        outputs: see :func:`projections.retry.retry` for the rules, returns and errors
        (:class:`~projections.errors.RetryRefusedError`: refused, nothing appended)."""
        state = await retry(
            self.log,
            execution_id,
            from_actions=from_actions,
            only_failed=only_failed,
            requested_by=requested_by,
            reason=reason,
        )
        self._note_write(state.last_sequence)
        return detached_state(state)

    async def submit(
        self,
        plan: Plan | Mapping[str, Any] | str | bytes,
        *,
        execution_id: str | None = None,
        idempotency_key: str | None = None,
        traceparent: str | None = None,
    ) -> Submission:
        """:meth:`initialize_state`, at most once per ``idempotency_key``: see
        :func:`projections.submission.submit_once` (``created`` is ``False`` on a replay)."""
        with use_trace(client_trace(traceparent)):
            return await submit_once(
                self.initialize_state,
                self.log,
                plan,
                execution_id=execution_id,
                idempotency_key=idempotency_key,
            )

    async def cancel(self, execution_id: str, reason: str | None = None) -> Cancellation:
        """Ask the execution to stop (``execution.cancel.requested``) unless it ended or is
        being cancelled: see :func:`projections.cancel.request_cancel`."""
        cancellation, _ = await request_cancel(self.log, execution_id, reason)
        if cancellation.sequence is not None:
            self._note_write(cancellation.sequence)
        return cancellation

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
            InvalidExecutionIdError, ExecutionNotFoundError, ActionNotFoundError,
                InvalidTransitionError: as for :meth:`update_action_status`.
        """

        def make(state: ExecutionState) -> Event:
            return result_event(state, action_id, result)

        return await self._append_checked(execution_id, make)

    async def _append_checked(
        self, execution_id: str, make: Callable[[ExecutionState], Event]
    ) -> int:
        """Check a change against the execution's history and append it at that version."""
        check_execution_id(execution_id)
        for attempt in range(_WRITE_RETRIES):
            state = fold(await self.log.read_execution(execution_id))
            if state is None:
                raise ExecutionNotFoundError(execution_id)
            event: Event = await store_large_output(self.payloads, make(state))
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
