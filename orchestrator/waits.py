"""Deciding ``wait`` and ``sleep`` actions: when they start waiting, and their one outcome. Pure.

A ready ``wait`` or ``sleep`` action is never dispatched: the orchestrator records
``action.waiting`` with the moment it ends (``until``: a sleep's wake-up, a waitpoint's
timeout), and the processor stores a JetStream schedule that makes the server write
``action.timer.fired`` at that moment. Nothing waits in memory: every process may restart
meanwhile. The outcome is decided when the fold says the wait ended (see
:mod:`eventstore.waits`):

- a waitpoint resumed with data completes with the data as its output (an object as it is,
  anything else as ``{"value": ...}``); resumed with a rejection, it fails with ``rejected``;
- a waitpoint whose timeout fired fails with ``timeout``; a sleep that woke completes with
  ``{"slept_until": ...}``.

A resume and a timeout racing each other produce the same event id, and the outcome is
appended guarded on the action's ``action.waiting`` being its last event: exactly one outcome.
Every event of a wait carries the key of the action's current run (``<id>~<run>`` after a
retry), and so do its token and its timer.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from eventstore.action_keys import action_key
from eventstore.error_codes import ErrorCode
from eventstore.events import ActionCompleted, ActionFailed, ActionWaiting, ErrorInfo, Event
from eventstore.json_schema import schema_problems
from eventstore.payload_reading import PayloadUnavailableError, expand
from eventstore.payloads import is_payload_ref
from eventstore.plan import Action
from eventstore.plan_validation.wait_checks import parse_until
from eventstore.state import ActionState, ExecutionState, WaitState
from eventstore.templates import TemplateError, render
from orchestrator import ids
from orchestrator.context import CONTEXT_KINDS, template_context, timestamp

__all__ = ["TokenSource", "WaitStart", "new_token", "start_wait", "wait_outcome"]

TokenSource = Callable[[str, str], str]
"""Makes the token of a waitpoint: ``(execution_id, action_id) -> token``."""


def new_token(execution_id: str, action_id: str) -> str:
    """An unguessable token naming one waitpoint: ``<execution>.<action>.<192 random bits>``."""
    return f"{execution_id}.{action_id}.{secrets.token_urlsafe(24)}"


class WaitStart:
    """A wait decided now: its ``action.waiting`` and, if it is already over, its outcome."""

    __slots__ = ("outcome", "state", "waiting")

    def __init__(self, waiting: ActionWaiting, state: ActionState, outcome: Event | None) -> None:
        self.waiting = waiting
        self.state = state
        self.outcome = outcome


def start_wait(
    spec: Action,
    state: ExecutionState,
    actions: Mapping[str, ActionState],
    *,
    now: datetime,
    cause: str,
    tokens: TokenSource,
) -> WaitStart:
    """The ``action.waiting`` of a ready ``wait`` or ``sleep`` action.

    Raises:
        TemplateError: ``until`` is a template that does not render to an ISO-8601 time.
    """
    execution = state.execution_id
    run = state.actions[spec.id].run
    key = action_key(spec.id, run)
    until = _until(spec, state, actions, now)
    token = tokens(execution, key) if spec.type == "wait" else None
    waiting = ActionWaiting(
        execution_id=execution,
        action_id=key,
        event_id=ids.waiting_id(execution, key),
        causation_id=cause,
        correlation_id=execution,
        reason="waitpoint" if spec.type == "wait" else "sleep",
        until=None if until is None else timestamp(until),
        schema=spec.schema,
        token=token,
    )
    previous = actions.get(spec.id)
    early = previous.early_timer if previous is not None else None
    wait = WaitState(
        reason=waiting.reason,
        since=waiting.occurred_at,
        until=waiting.until,
        schema=spec.schema,
        token=token,
        timer=early,
    )
    if until is not None and until <= now and wait.timer is None:
        wait.timer = "wake" if spec.type == "sleep" else "timeout"
    action = ActionState(
        action_id=spec.id, status="waiting", dispatched_at=waiting.occurred_at, wait=wait, run=run
    )
    outcome = _outcome_of(execution, action, cause) if wait.timer is not None else None
    return WaitStart(waiting, action, outcome)


def _until(
    spec: Action, state: ExecutionState, actions: Mapping[str, ActionState], now: datetime
) -> datetime | None:
    if spec.type == "wait":
        return None if spec.timeout_s is None else now + timedelta(seconds=spec.timeout_s)
    if spec.duration_s is not None:
        return now + timedelta(seconds=spec.duration_s)
    assert spec.until is not None
    context = template_context(state, actions, now=now)
    text: Any = render(spec.until, context, kinds=CONTEXT_KINDS)
    moment = parse_until(text) if isinstance(text, str) else None
    if moment is None:
        raise TemplateError(f"until {spec.until!r} is {text!r}, not an ISO-8601 time with a zone")
    return moment


def wait_outcome(state: ExecutionState, action_id: str, cause: str) -> Event | None:
    """The outcome that ends the action's wait now, or ``None`` if it still waits."""
    action = state.actions.get(action_id)
    if action is None or action.status != "waiting" or action.wait is None:
        return None
    return _outcome_of(state.execution_id, action, cause)


def _stored_data_problem(wait: WaitState, data: Any) -> str | None:
    """Why resume data stored by reference does not match the waitpoint's schema (the fold
    cannot look inside a reference; the client that stored it checked it, but a forged request
    may not have been): one fetch (:class:`PayloadNeeded` until the value is at hand)."""
    if wait.schema is None or not is_payload_ref(data):
        return None
    try:
        value = expand(data)
    except PayloadUnavailableError as exc:
        return f"resume data stored by reference cannot be read: {exc}"
    problems = schema_problems(wait.schema, value)
    if not problems:
        return None
    return "resume data does not match the waitpoint's schema: " + "; ".join(problems)


def _outcome_of(execution: str, action: ActionState, cause: str) -> Event | None:
    wait = action.wait
    assert wait is not None
    key = action_key(action.action_id, action.run)
    common: dict[str, Any] = {
        "execution_id": execution,
        "action_id": key,
        "event_id": ids.wait_outcome_id(execution, key),
        "causation_id": cause,
        "correlation_id": execution,
        "attempt": 1,
    }
    resume = wait.resume
    if resume is not None and resume.reject is not None:
        error = ErrorInfo(message=resume.reject, code=ErrorCode.REJECTED)
        return ActionFailed(**common, error=error)
    if resume is not None:
        data = resume.data
        refused = _stored_data_problem(wait, data)
        if refused is not None:
            return ActionFailed(
                **common, error=ErrorInfo(message=refused, code=ErrorCode.OUTPUT_INVALID)
            )
        output = data if isinstance(data, dict) else ({} if data is None else {"value": data})
        return ActionCompleted(**common, output=output)
    if wait.timer == "wake":
        return ActionCompleted(**common, output={"slept_until": wait.until})
    if wait.timer == "timeout":
        error = ErrorInfo(
            message=f"waitpoint {action.action_id} was not resumed by {wait.until}",
            code=ErrorCode.TIMEOUT,
        )
        return ActionFailed(**common, error=error)
    return None
