"""Submitting a plan at most once per idempotency key.

A key names the execution: without an explicit execution id, the id is derived from the key
(:func:`idempotent_execution_id`), so a second submission with the same key finds the first
one's execution instead of starting another. It is the same submission when the plan (input
included) is the same; a different plan under a used key is refused, so a key cannot quietly
stand for two requests. The log keeps no separate record of keys: the execution id is it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec

from eventstore.config import TepSettings
from eventstore.errors import ExecutionExistsError, TepError
from eventstore.fold import fold
from eventstore.input_payloads import detach_input
from eventstore.jetstream.log import EventLog
from eventstore.plan import Plan
from eventstore.plan_validation import parse_plan
from eventstore.state import ExecutionState
from projections.view import detached_state

__all__ = [
    "IdempotencyKeyReusedError",
    "Submission",
    "idempotent_execution_id",
    "submit_once",
]

PlanDocument = Plan | Mapping[str, Any] | str | bytes
_MAX_KEY_LENGTH = 256


class IdempotencyKeyReusedError(TepError, ValueError):
    """An idempotency key (or execution id) already used for a different plan."""

    def __init__(self, execution_id: str, key: str | None) -> None:
        self.execution_id = execution_id
        self.key = key
        used = "idempotency key" if key is not None else "execution id"
        super().__init__(
            f"the {used} was already used for a different plan (execution {execution_id}): "
            "use a new key for a new request"
        )


class Submission(msgspec.Struct, frozen=True, kw_only=True):
    """The execution a submission names.

    Attributes:
        state: its state (pending when just created; the current one on a replay).
        created: ``False`` when an earlier submission with the same key started it.
    """

    state: ExecutionState
    created: bool


def idempotent_execution_id(key: str) -> str:
    """The execution id a key stands for: ``idem_`` + 40 hex digits of its SHA-256.

    Raises:
        ValueError: the key is empty or longer than 256 characters.
    """
    if not key or len(key) > _MAX_KEY_LENGTH:
        raise ValueError(f"an idempotency key has 1 to {_MAX_KEY_LENGTH} characters")
    return f"idem_{hashlib.sha256(key.encode()).hexdigest()[:40]}"


def _prepared(document: PlanDocument, settings: TepSettings) -> Plan:
    """The plan as :meth:`StateManager.initialize_state` would store it (input by reference
    when large), for comparing it with a stored one."""
    detached, _ = detach_input(document, settings.payload_limits, max_depth=settings.max_json_depth)
    return parse_plan(detached, limits=settings.plan_limits)


async def submit_once(
    initialize: Callable[[PlanDocument, str | None], Awaitable[ExecutionState]],
    log: EventLog,
    document: PlanDocument,
    *,
    execution_id: str | None = None,
    idempotency_key: str | None = None,
) -> Submission:
    """Start an execution of ``document``, or, for a key used before, find the one it started.

    Args:
        initialize: starts an execution (``StateManager.initialize_state``).
        log: the log, to read an existing execution.
        document: the plan.
        execution_id: the id to use (default: derived from the key, or a fresh one).
        idempotency_key: makes a repeated submission return the first one's execution.

    Raises:
        PlanValidationError: the plan or the execution id is invalid (nothing published).
        ValueError: the key is empty or too long.
        ExecutionExistsError: ``execution_id`` is taken and no key was given.
        IdempotencyKeyReusedError: the key's execution runs a different plan.
    """
    if idempotency_key is not None and execution_id is None:
        execution_id = idempotent_execution_id(idempotency_key)
    try:
        return Submission(state=await initialize(document, execution_id), created=True)
    except ExecutionExistsError:
        if idempotency_key is None or execution_id is None:
            raise
    existing = fold(await log.read_execution(execution_id))
    wanted = _prepared(document, log.settings)
    if existing is None or existing.plan is None:
        raise ExecutionExistsError(execution_id)
    if msgspec.json.encode(existing.plan) != msgspec.json.encode(wanted):
        raise IdempotencyKeyReusedError(execution_id, idempotency_key)
    return Submission(state=detached_state(existing), created=False)
