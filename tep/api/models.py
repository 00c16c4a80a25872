"""The bodies the API accepts (pydantic: FastAPI validates them and lists every problem).

A plan in a body stays the msgspec :class:`~eventstore.plan.Plan`'s, referenced with
:data:`tep.api.schemas.PlanJson` and validated by ``parse_plan``; nothing here repeats a field
of the contract. What the API answers is in :mod:`tep.api.envelopes`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from eventstore.schedules import CATCH_UP_POLICIES, DEFAULT_CATCH_UP
from tep.api.schemas import PlanJson

__all__ = [
    "CancelRequest",
    "RejectRequest",
    "ResumeRequest",
    "RetryRequest",
    "ScheduleCreate",
    "ScheduleUpdate",
    "SubmitRequest",
    "WaitpointCompletion",
]

CatchUpPolicy = Literal["none", "one", "all"]
assert set(CATCH_UP_POLICIES) == {"none", "one", "all"}

_MAX_WAIT_S = 60.0


class _Body(BaseModel):
    # Strict: a body is JSON of the documented types (no 0 for false, no "3" for 3).
    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True)


# ------------------------------------------------------------------------------ requests


class SubmitRequest(_Body):
    """A plan to start, with input to merge into its own."""

    plan: PlanJson = Field(description="the plan document (see docs/plan.md)")
    input: dict[str, Any] | None = Field(
        None, description="merged into the plan's input (these keys win)"
    )
    execution_id: str | None = Field(
        None, description="the execution's id ([A-Za-z0-9_-], at most 128); default: a fresh one"
    )
    idempotency_key: str | None = Field(
        None,
        min_length=1,
        max_length=256,
        description="a repeated submission with this key returns the first one's execution "
        "(the `Idempotency-Key` header does the same)",
    )


class CancelRequest(_Body):
    """Why the execution should stop."""

    reason: str | None = Field(None, max_length=1000, description="recorded in the event")


class RetryRequest(_Body):
    """What to run again (see docs/plan.md, re-running from a step)."""

    from_actions: list[str] = Field(
        default_factory=list,
        alias="from",
        description="run again from these actions and everything downstream of them",
    )
    only_failed: bool = Field(
        False, description="run again only what failed or was cancelled, and what did not complete"
    )
    reason: str | None = Field(None, max_length=1000, description="recorded in the event")


class _Completion(_Body):
    wait: bool = Field(
        True, description="answer once the outcome is recorded (else once the request is accepted)"
    )
    timeout_s: float = Field(
        10.0, gt=0, le=_MAX_WAIT_S, description="with wait: how long to wait for the outcome"
    )


class ResumeRequest(_Completion):
    """Data completing a waitpoint; it must match the waitpoint's schema."""

    data: Any = Field(None, description="the waitpoint's output (an object, or any JSON value)")


class RejectRequest(_Completion):
    """A waitpoint refused: it fails with code `rejected`."""

    reason: str = Field(min_length=1, max_length=1000, description="why")


class WaitpointCompletion(_Completion):
    """A waitpoint completed by its token: with data, or rejected with a reason."""

    data: Any = Field(None, description="the waitpoint's output (ignored when rejecting)")
    reject: str | None = Field(
        None, min_length=1, max_length=1000, description="reject instead, for this reason"
    )


class ScheduleCreate(_Body):
    """A new schedule: a plan started at every tick of a cron expression."""

    name: str = Field(description="[A-Za-z0-9_-]{1,64}, the executions' id prefix")
    cron: str = Field(description="5 or 6 fields, @hourly..., or @every <duration>")
    tz: str = Field("UTC", description="IANA time zone of the expression's fields")
    plan: PlanJson = Field(description="the plan each tick submits")
    input: dict[str, Any] = Field(
        default_factory=dict, description="merged into the plan's input at every tick"
    )
    catch_up: CatchUpPolicy = Field(
        DEFAULT_CATCH_UP, description="ticks missed while no orchestrator ran: none, one or all"
    )


class ScheduleUpdate(_Body):
    """Pause or resume a schedule."""

    paused: bool = Field(description="true: no tick fires; false: resume (missed ticks skipped)")
