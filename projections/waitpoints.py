"""Completing waitpoints from outside: by their ids or by their token, checked against the log.

A waitpoint (an action of type ``wait``) ends when someone resumes it. Resuming appends
``action.resume.requested``; the fold accepts the first valid request (see
:mod:`eventstore.waits`) and an orchestrator then records the one outcome, whose
``causation_id`` is the accepted request's event id. The functions here read the execution's
history from the log (not the view, which may lag behind), refuse at once what the fold would
refuse, in the fold's own words, and otherwise append the request and follow the log until
the action's outcome says whether this request ended the wait.

Example:
    >>> result = await resume(log, "exe_1", "approve", {"approved": True})  # doctest: +SKIP
    >>> result.action.output  # doctest: +SKIP
    {'approved': True}
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgspec

from eventstore.action_keys import action_key, parse_action_key
from eventstore.errors import EventDecodeError
from eventstore.events import ActionResumeRequested
from eventstore.fold import apply, fold
from eventstore.jetstream.log import EventLog
from eventstore.jetstream.payloads import PayloadStore
from eventstore.json_schema import schema_problems
from eventstore.records import RecordedEvent
from eventstore.runs import current_action
from eventstore.state import ActionState, ExecutionState
from eventstore.subjects import execution_filters, execution_id_problem
from eventstore.waits import resume_refusal
from projections.errors import (
    ActionNotFoundError,
    ExecutionNotFoundError,
    InvalidExecutionIdError,
    ResumeTimeoutError,
    WaitpointRefusedError,
)

__all__ = ["Resumed", "WaitpointOperations", "resume", "resume_by_token", "token_ids"]

_NO_WAITPOINT = "the token does not match any waitpoint"


class Resumed(msgspec.Struct, frozen=True, kw_only=True):
    """A resume request the waitpoint accepted.

    Attributes:
        action: the action's state: its outcome (completed with the data as output, or failed
            with ``rejected``), or, when not waited for, still ``waiting`` with ``wait.resume``
            set to this request.
        request_id: the event id of the request (the outcome's ``causation_id``).
        request_sequence: where the request was stored.
        outcome_sequence: where the outcome was stored (``None`` when not waited for).
    """

    action: ActionState
    request_id: str
    request_sequence: int
    outcome_sequence: int | None = None


def token_ids(token: str) -> tuple[str, str] | None:
    """The execution and action a token names (``<execution>.<action>.<secret>``), or ``None``
    if it cannot be a waitpoint's token. Whether it is *the* token the fold checks."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts) or execution_id_problem(parts[0]) is not None:
        return None
    return parts[0], parts[1]


async def resume_by_token(
    log: EventLog,
    token: str,
    data: Any = None,
    *,
    reject: str | None = None,
    requested_by: str | None = None,
    wait: bool = True,
    timeout: float = 10.0,
) -> Resumed:
    """:func:`resume` the waitpoint ``token`` names, with the token as its proof.

    Raises:
        WaitpointRefusedError: the token names no waitpoint, does not match it, or the request
            is refused as by :func:`resume`.
        ResumeTimeoutError: as by :func:`resume`.
    """
    ids = token_ids(token)
    if ids is None:
        raise WaitpointRefusedError(_NO_WAITPOINT)
    try:
        return await resume(
            log,
            *ids,
            data,
            reject=reject,
            token=token,
            requested_by=requested_by,
            wait=wait,
            timeout=timeout,
        )
    except (ExecutionNotFoundError, ActionNotFoundError):
        raise WaitpointRefusedError(_NO_WAITPOINT) from None


async def resume(
    log: EventLog,
    execution_id: str,
    action_id: str,
    data: Any = None,
    *,
    reject: str | None = None,
    token: str | None = None,
    requested_by: str | None = None,
    wait: bool = True,
    timeout: float = 10.0,
) -> Resumed:
    """End a waitpoint: completed with ``data`` as its output, or failed with ``rejected``.

    Args:
        data: any JSON value; an object becomes the output as it is, anything else
            ``{"value": data}``. It must match the waitpoint's schema (unless rejecting).
            Above ``TEP_PAYLOAD_INLINE_BYTES`` it is checked, then stored in the payload
            bucket as that output, and the request carries its reference.
        reject: a reason: the waitpoint fails with code ``rejected`` (``data`` is ignored).
        token: the waitpoint's token, when the caller proves itself with it.
        requested_by: who asks, for the record.
        wait: follow the log until the action's outcome is stored; otherwise return once the
            request is stored and accepted.
        timeout: how long to follow the log, in seconds.

    Raises:
        InvalidExecutionIdError: ``execution_id`` cannot name an execution.
        ExecutionNotFoundError: no such execution in the log.
        ActionNotFoundError: no such action in its plan.
        WaitpointRefusedError: the request cannot end the wait (nothing was appended), or it
            was appended and something else ended the wait first.
        ResumeTimeoutError: accepted, but no outcome within ``timeout`` (no orchestrator?).
        PayloadTooLargeError: ``data`` is above ``TEP_PAYLOAD_MAX_BYTES`` (nothing appended).
    """
    problem = execution_id_problem(execution_id)
    if problem:
        raise InvalidExecutionIdError(execution_id, problem)
    state = fold(await log.read_execution(execution_id))
    if state is None:
        raise ExecutionNotFoundError(execution_id)
    # An action id (or a token's key) names the waitpoint; the request is for its current run.
    key = parse_action_key(action_id)
    action = None if key is None else state.actions.get(key.action_id)
    if action is None:
        raise ActionNotFoundError(execution_id, action_id)
    request = ActionResumeRequested(
        execution_id=execution_id,
        action_id=action_key(action.action_id, action.run),
        correlation_id=execution_id,
        data=data,
        reject=reject,
        token=token,
        requested_by=requested_by,
    )
    _check(state, action, request)
    request = await _data_by_reference(log, request)
    stored = await log.append(request)
    try:
        async with asyncio.timeout(timeout):
            return await _follow(log, state, request, stored.sequence, wait=wait)
    except TimeoutError:
        raise ResumeTimeoutError(
            f"the resume request of {execution_id} {action_id} was stored (sequence "
            f"{stored.sequence}) but no outcome was recorded within {timeout:g}s: is an "
            "orchestrator running? The request stands",
            stored.sequence,
        ) from None


async def _data_by_reference(
    log: EventLog, request: ActionResumeRequested
) -> ActionResumeRequested:
    """The request as it is appended: data above the inline limit stored by reference, as
    the output it becomes (an object as it is, anything else as ``{"value": data}``)."""
    if request.reject is not None or request.data is None:
        return request
    data = request.data
    output = data if isinstance(data, dict) else {"value": data}
    kept = await PayloadStore(log.nc, log.settings).store(output, what="the resume data")
    return request if kept is output else msgspec.structs.replace(request, data=kept)


def _check(state: ExecutionState, action: ActionState, request: ActionResumeRequested) -> None:
    """Refuse, before appending, what the fold would refuse (in its words)."""
    reason = resume_refusal(action, request)
    if reason is None and state.terminal:
        reason = f"execution {state.execution_id} already {state.status}"
    if reason is None:
        return
    problems: tuple[str, ...] = ()
    wait = action.wait
    rejecting = msgspec.structs.replace(request, reject="")
    if (
        request.reject is None
        and wait is not None
        and wait.schema is not None
        and resume_refusal(action, rejecting) is None
    ):
        # Refused for its data alone: say each way it does not match.
        problems = tuple(schema_problems(wait.schema, request.data))
    raise WaitpointRefusedError(
        reason,
        execution_id=request.execution_id,
        action_id=request.action_id,
        problems=problems,
    )


async def _follow(
    log: EventLog,
    state: ExecutionState,
    request: ActionResumeRequested,
    request_sequence: int,
    *,
    wait: bool,
) -> Resumed:
    """Fold the execution's events after ``state`` until the request's fate is known."""
    action_id = current_action(state, request.action_id) or request.action_id
    records = log.follow_raw(execution_filters(state.execution_id), state.last_sequence + 1)
    async with contextlib.aclosing(records) as batches:
        async for batch in batches:
            for raw in batch:
                try:
                    record = raw.decode()
                except EventDecodeError:
                    continue  # not an event of this execution: the fold would skip it too
                was_finished = state.actions[action_id].finished
                apply(state, record)
                action = state.actions[action_id]
                if record.sequence == request_sequence:
                    resume_state = action.wait.resume if action.wait is not None else None
                    if resume_state is None or resume_state.request_id != request.event_id:
                        raise _lost(request, action)
                    if not wait:
                        return Resumed(
                            action=_detached(action),
                            request_id=request.event_id,
                            request_sequence=request_sequence,
                        )
                if action.finished and not was_finished:
                    return _outcome(request, request_sequence, action, record)
    raise AssertionError("the log ended")  # follow_raw never ends by itself


def _outcome(
    request: ActionResumeRequested,
    request_sequence: int,
    action: ActionState,
    record: RecordedEvent,
) -> Resumed:
    """The request's fate once the action has its outcome (``record``)."""
    if record.event.causation_id != request.event_id:
        raise _lost(request, action)
    return Resumed(
        action=_detached(action),
        request_id=request.event_id,
        request_sequence=request_sequence,
        outcome_sequence=record.sequence,
    )


def _lost(request: ActionResumeRequested, action: ActionState) -> WaitpointRefusedError:
    """The request was appended, but something else ended the wait: say what."""
    return WaitpointRefusedError(
        _ended_by(action, request.event_id),
        execution_id=request.execution_id,
        action_id=request.action_id,
        appended=True,
    )


def _ended_by(action: ActionState, request_id: str) -> str:
    name = action.action_id
    wait = action.wait
    if wait is not None and wait.timer == "timeout":
        return f"waitpoint {name} timed out at {wait.until}, before this request"
    other = wait.resume if wait is not None else None
    if other is not None and other.request_id != request_id:
        verb = "rejected" if other.reject is not None else "resumed"
        who = f" by {other.requested_by}" if other.requested_by else ""
        return f"waitpoint {name} was already {verb}{who} (request {other.request_id})"
    if action.status == "cancelled":
        return f"action {name} was cancelled"
    if wait is not None and wait.refused:
        return wait.refused
    return f"action {name} ended without this request ({action.status})"


def _detached(action: ActionState) -> ActionState:
    return msgspec.json.decode(msgspec.json.encode(action), type=ActionState)


class WaitpointOperations:
    """The waitpoint methods of :class:`~projections.state_manager.StateManager`.

    They read and write the log itself (``self.log``) and note each write's sequence.
    """

    log: EventLog
    last_sequence: int

    async def complete_waitpoint(
        self,
        execution_id: str,
        action_id: str,
        data: Any = None,
        *,
        reject: str | None = None,
        token: str | None = None,
        requested_by: str | None = None,
        wait: bool = True,
        timeout: float = 10.0,
    ) -> ActionState:
        """Resume a waitpoint: completed with ``data`` as its output, or, with ``reject``,
        failed with code ``rejected``; see :func:`resume` for the arguments.

        Returns:
            The action's final state (with ``wait=False``: still waiting, the request
            accepted in ``wait.resume``).

        Raises:
            InvalidExecutionIdError, ExecutionNotFoundError, ActionNotFoundError: no such
                execution or action.
            WaitpointRefusedError: refused (not waiting, already resumed or timed out, token
                or schema mismatch; ``problems`` lists each schema problem), or it lost a race.
            ResumeTimeoutError: accepted, but no outcome within ``timeout`` seconds.
        """
        result = await resume(
            self.log,
            execution_id,
            action_id,
            data,
            reject=reject,
            token=token,
            requested_by=requested_by,
            wait=wait,
            timeout=timeout,
        )
        self.last_sequence = max(self.last_sequence, result.request_sequence)
        return result.action

    async def complete_by_token(
        self,
        token: str,
        data: Any = None,
        *,
        reject: str | None = None,
        requested_by: str | None = None,
        wait: bool = True,
        timeout: float = 10.0,
    ) -> ActionState:
        """Resume the waitpoint a token (``{{actions.<id>.token}}``) names, as
        :meth:`complete_waitpoint` does.

        Raises:
            WaitpointRefusedError: the token names no waitpoint or does not match it, or the
                request is refused as by :meth:`complete_waitpoint`.
            ResumeTimeoutError: accepted, but no outcome within ``timeout`` seconds.
        """
        result = await resume_by_token(
            self.log,
            token,
            data,
            reject=reject,
            requested_by=requested_by,
            wait=wait,
            timeout=timeout,
        )
        self.last_sequence = max(self.last_sequence, result.request_sequence)
        return result.action
