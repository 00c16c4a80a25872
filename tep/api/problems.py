"""RFC 9457 problem details: the one shape of every error the API answers. Pure.

``type`` is ``urn:tep:problem:<slug>`` for the API's own problems (docs/api.md lists them) and
``about:blank`` for plain HTTP ones (an unknown route, a wrong method), where the status and
its title say everything.
"""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus

from pydantic import BaseModel, Field

from eventstore.cron import CronError, TimeZoneError
from eventstore.errors import (
    ExecutionExistsError,
    NatsUnavailableError,
    PlanValidationError,
    TepError,
)
from eventstore.payloads import PayloadMissingError, PayloadTooLargeError
from eventstore.plan_registry import PlanRegistryError
from eventstore.schedules import ScheduleError, ScheduleNotFoundError
from projections.errors import (
    ActionNotFoundError,
    ExecutionNotFoundError,
    InvalidExecutionIdError,
    InvalidTransitionError,
    ResumeTimeoutError,
    RetryRefusedError,
    ViewTimeoutError,
    WaitpointRefusedError,
)
from projections.submission import IdempotencyKeyReusedError

__all__ = [
    "PROBLEM_TYPE_PREFIX",
    "Problem",
    "ProblemItem",
    "forbidden",
    "http_problem",
    "internal_error",
    "problem_for",
    "unauthorized",
    "validation_problem",
]

PROBLEM_TYPE_PREFIX = "urn:tep:problem:"


class ProblemItem(BaseModel):
    """One thing wrong with a request: where (``loc``, JSON path-like) and what."""

    loc: list[str | int] = Field(default_factory=list, description="where, outermost first")
    message: str = Field(description="what is wrong, in one line")


class Problem(BaseModel):
    """An error, as ``application/problem+json`` (RFC 9457)."""

    type: str = Field("about:blank", description="a URI naming the kind of problem")
    title: str = Field(description="the kind of problem, in a few words")
    status: int = Field(description="the HTTP status code")
    detail: str | None = Field(None, description="this occurrence, in one line")
    problems: list[ProblemItem] | None = Field(
        None, description="every validation problem, when the request was invalid"
    )


def _own(
    slug: str,
    status: HTTPStatus,
    detail: str | None,
    problems: Sequence[ProblemItem] | None = None,
) -> Problem:
    return Problem(
        type=PROBLEM_TYPE_PREFIX + slug,
        title=slug.replace("-", " ").capitalize(),
        status=int(status),
        detail=detail,
        problems=list(problems) if problems else None,
    )


def http_problem(status: int, detail: str | None = None) -> Problem:
    """A plain HTTP problem (``about:blank``): the status's phrase is the title."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    return Problem(status=status, title=title, detail=detail)


def _listed(messages: Sequence[str]) -> list[ProblemItem]:
    return [ProblemItem(message=message) for message in messages]


_STATUS_OF: tuple[tuple[type[Exception], str, HTTPStatus], ...] = (
    (ExecutionNotFoundError, "execution-not-found", HTTPStatus.NOT_FOUND),
    (ActionNotFoundError, "action-not-found", HTTPStatus.NOT_FOUND),
    (ScheduleNotFoundError, "schedule-not-found", HTTPStatus.NOT_FOUND),
    (InvalidExecutionIdError, "invalid-execution-id", HTTPStatus.BAD_REQUEST),
    (ExecutionExistsError, "execution-exists", HTTPStatus.CONFLICT),
    (IdempotencyKeyReusedError, "idempotency-key-reused", HTTPStatus.UNPROCESSABLE_ENTITY),
    (RetryRefusedError, "retry-refused", HTTPStatus.CONFLICT),
    (InvalidTransitionError, "invalid-transition", HTTPStatus.CONFLICT),
    (CronError, "invalid-schedule", HTTPStatus.BAD_REQUEST),
    (TimeZoneError, "invalid-schedule", HTTPStatus.BAD_REQUEST),
    (ScheduleError, "schedule-conflict", HTTPStatus.CONFLICT),
    (PlanRegistryError, "invalid-plan-reference", HTTPStatus.BAD_REQUEST),
    (PayloadTooLargeError, "payload-too-large", HTTPStatus.REQUEST_ENTITY_TOO_LARGE),
    (PayloadMissingError, "payload-missing", HTTPStatus.GONE),
    (ResumeTimeoutError, "no-outcome-yet", HTTPStatus.GATEWAY_TIMEOUT),
    (ViewTimeoutError, "view-behind", HTTPStatus.GATEWAY_TIMEOUT),
    (NatsUnavailableError, "nats-unavailable", HTTPStatus.SERVICE_UNAVAILABLE),
)


def problem_for(exc: Exception) -> Problem | None:
    """The problem an error of ours stands for; ``None`` for anything else (a 500, logged)."""
    if isinstance(exc, PlanValidationError):
        return _own(
            "invalid-plan", HTTPStatus.BAD_REQUEST, "the plan is invalid", _listed(exc.problems)
        )
    if isinstance(exc, WaitpointRefusedError):
        if exc.problems:
            items = _listed(exc.problems)
            return _own("invalid-resume-data", HTTPStatus.BAD_REQUEST, exc.reason, items)
        return _own("waitpoint-refused", HTTPStatus.CONFLICT, exc.reason)
    for kind, slug, status in _STATUS_OF:
        if isinstance(exc, kind):
            return _own(slug, status, str(exc))
    if isinstance(exc, TepError) and isinstance(exc, ValueError):
        return _own("invalid-request", HTTPStatus.BAD_REQUEST, str(exc))
    return None


def validation_problem(items: Sequence[ProblemItem]) -> Problem:
    """The problem of a request that does not have the documented shape (400)."""
    return _own(
        "invalid-request", HTTPStatus.BAD_REQUEST, "the request does not match its schema", items
    )


def unauthorized(detail: str) -> Problem:
    """401: no valid bearer token."""
    return _own("unauthorized", HTTPStatus.UNAUTHORIZED, detail)


def forbidden(detail: str) -> Problem:
    """403: the token lacks the scope, or the server may not do it."""
    return _own("forbidden", HTTPStatus.FORBIDDEN, detail)


def internal_error() -> Problem:
    """500: something unexpected; the body says nothing more (the server logs it)."""
    return _own(
        "internal-error", HTTPStatus.INTERNAL_SERVER_ERROR, "an unexpected error; see the log"
    )
