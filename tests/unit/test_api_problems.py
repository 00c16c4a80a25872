"""Errors of ours as RFC 9457 problems: the status and type each one stands for."""

from __future__ import annotations

import pytest

from eventstore.cron import CronError
from eventstore.errors import ExecutionExistsError, NatsUnavailableError, PlanValidationError
from eventstore.payloads import PayloadTooLargeError
from eventstore.schedules import ScheduleError, ScheduleNotFoundError
from projections.errors import (
    ActionNotFoundError,
    ExecutionNotFoundError,
    InvalidExecutionIdError,
    ResumeTimeoutError,
    RetryRefusedError,
    WaitpointRefusedError,
)
from projections.submission import IdempotencyKeyReusedError
from tep.api.problems import http_problem, problem_for


@pytest.mark.parametrize(
    ("error", "status", "slug"),
    [
        (ExecutionNotFoundError("e"), 404, "execution-not-found"),
        (ActionNotFoundError("e", "a"), 404, "action-not-found"),
        (ScheduleNotFoundError("unknown schedule"), 404, "schedule-not-found"),
        (ScheduleError("taken"), 409, "schedule-conflict"),
        (InvalidExecutionIdError("a.b", "no dots"), 400, "invalid-execution-id"),
        (ExecutionExistsError("e"), 409, "execution-exists"),
        (IdempotencyKeyReusedError("e", "k"), 422, "idempotency-key-reused"),
        (RetryRefusedError("still running"), 409, "retry-refused"),
        (WaitpointRefusedError("already resumed"), 409, "waitpoint-refused"),
        (CronError("bad"), 400, "invalid-schedule"),
        (PayloadTooLargeError(10, 5), 413, "payload-too-large"),
        (ResumeTimeoutError("stored", 7), 504, "no-outcome-yet"),
        (NatsUnavailableError("down"), 503, "nats-unavailable"),
    ],
)
def test_each_error_has_its_status_and_type(error: Exception, status: int, slug: str) -> None:
    problem = problem_for(error)
    assert problem is not None
    assert (problem.status, problem.type) == (status, f"urn:tep:problem:{slug}")
    assert problem.detail == str(error) and problem.problems is None


def test_validation_problems_are_listed_one_by_one() -> None:
    plan = problem_for(PlanValidationError(["a: no url", "b: unknown dependency c"]))
    data = problem_for(WaitpointRefusedError("no match", problems=("approved: not a boolean",)))
    assert plan is not None and plan.status == 400
    assert [p.message for p in plan.problems or []] == ["a: no url", "b: unknown dependency c"]
    assert data is not None and data.status == 400 and data.type.endswith("invalid-resume-data")
    assert [p.message for p in data.problems or []] == ["approved: not a boolean"]


def test_anything_else_is_not_ours_to_explain() -> None:
    assert problem_for(RuntimeError("boom")) is None
    assert problem_for(KeyError("x")) is None


def test_plain_http_problems_take_the_status_phrase() -> None:
    assert http_problem(405).title == "Method Not Allowed"
    assert http_problem(404).type == "about:blank"
    assert http_problem(599).title == "Error"
