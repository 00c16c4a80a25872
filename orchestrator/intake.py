"""Admitting a ``plan.submitted`` message: the plan to run, or why the execution fails. Pure.

Clients of this project validate plans before publishing, but any client can publish on
``plan.submitted.<execution>``. A message whose payload does not decode, whose plan is invalid,
or whose envelope contradicts its subject becomes ``execution.failed`` with code
``invalid_plan`` and every problem found, so a foreign client gets an answer instead of a
stuck execution.
"""

from __future__ import annotations

from typing import Any

import msgspec

from eventstore.codec import decode_event
from eventstore.error_codes import ErrorCode
from eventstore.errors import EventDecodeError, PlanValidationError, TepError
from eventstore.events import ErrorInfo, ExecutionFailed, PlanSubmitted
from eventstore.plan_validation import PlanLimits, parse_plan, plan_problems
from eventstore.subjects import PLAN_SUBMITTED_PREFIX, execution_id_problem
from orchestrator import ids

__all__ = ["UnroutableMessageError", "admit_plan", "rejection"]

_MAX_LISTED_PROBLEMS = 20


class UnroutableMessageError(TepError, ValueError):
    """The subject carries no usable execution id, so no execution event can answer it."""


def admit_plan(
    subject: str,
    data: bytes,
    *,
    limits: PlanLimits,
) -> PlanSubmitted | ExecutionFailed:
    """The submitted plan, or the ``execution.failed`` that rejects it.

    Args:
        subject: ``plan.submitted.<execution>``.
        data: the message payload.
        limits: how large a plan may be (``TepSettings.plan_limits``).

    Raises:
        UnroutableMessageError: the subject's execution id is not a valid id.
    """
    execution_id = subject.removeprefix(PLAN_SUBMITTED_PREFIX)
    problem = None if subject.startswith(PLAN_SUBMITTED_PREFIX) else "not a plan subject"
    problem = problem or execution_id_problem(execution_id)
    if problem is not None:
        raise UnroutableMessageError(f"{subject}: {problem}")

    problems: list[str] = []
    event: PlanSubmitted | None = None
    decode_error: str | None = None
    try:
        decoded = decode_event(data)
    except EventDecodeError as exc:
        decode_error = str(exc)
    else:
        if not isinstance(decoded, PlanSubmitted):
            problems.append(f"the message is a {decoded.__struct_config__.tag} event")
        elif decoded.execution_id != execution_id:
            problems.append(
                f"execution_id {decoded.execution_id!r} does not match the subject's "
                f"{execution_id!r}"
            )
        else:
            event = decoded

    if event is not None:
        problems += plan_problems(event.plan, limits=limits)
    elif not problems:
        # The payload is not a valid event: say what is wrong with its plan if anything is,
        # else what is wrong with the envelope.
        problems += _document_problems(data, limits) or [decode_error or "undecodable event"]
    if event is not None and not problems:
        return event
    return rejection(execution_id, data, problems)


def _document_problems(data: bytes, limits: PlanLimits) -> list[str]:
    try:
        envelope: Any = msgspec.json.decode(data)
    except RecursionError:
        return ["the payload nests too deeply to decode"]
    except msgspec.DecodeError as exc:
        return [f"the payload is not JSON: {exc}"]
    if not isinstance(envelope, dict) or not isinstance(envelope.get("plan"), dict):
        return ["the payload has no plan object"]
    try:
        parse_plan(envelope["plan"], limits=limits)
    except PlanValidationError as exc:
        return list(exc.problems)
    return []


def rejection(execution_id: str, data: bytes, problems: list[str]) -> ExecutionFailed:
    """The ``execution.failed`` (``invalid_plan``) rejecting a plan for ``problems``."""
    listed = problems[:_MAX_LISTED_PROBLEMS]
    if len(problems) > len(listed):
        listed.append(f"... and {len(problems) - len(listed)} more")
    return ExecutionFailed(
        execution_id=execution_id,
        event_id=ids.terminal_id(execution_id),
        causation_id=_payload_event_id(data),
        correlation_id=execution_id,
        error=ErrorInfo(message="invalid plan: " + "; ".join(listed), code=ErrorCode.INVALID_PLAN),
    )


def _payload_event_id(data: bytes) -> str | None:
    try:
        envelope: Any = msgspec.json.decode(data)
    except (msgspec.DecodeError, RecursionError):
        return None
    event_id = envelope.get("event_id") if isinstance(envelope, dict) else None
    return event_id if isinstance(event_id, str) and len(event_id) <= 256 else None
