"""Every fact of an execution's life, as frozen msgspec structs in one tagged union.

Events are named in the past tense (requests end in ``requested``), immutable and versioned.
The ``type`` tag is the event type exactly as it appears first in the subject
(see :mod:`eventstore.subjects`). Timestamps are ISO-8601 UTC strings, outputs are JSON values:
every event is JSON-safe by construction.
"""

from __future__ import annotations

import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from eventstore.plan import Plan, RequestSpec, RetryPolicy

__all__ = [
    "EVENT_TYPES",
    "SCHEMA_VERSION",
    "ActionAttemptFailed",
    "ActionCancelled",
    "ActionCompleted",
    "ActionEvent",
    "ActionExecuteRequested",
    "ActionFailed",
    "ActionItemsStarted",
    "ActionResumeRequested",
    "ActionSkipped",
    "ActionStarted",
    "ActionTimerFired",
    "ActionWaiting",
    "ErrorInfo",
    "Event",
    "EventBase",
    "ExecutionCancelRequested",
    "ExecutionCancelled",
    "ExecutionCompleted",
    "ExecutionFailed",
    "ExecutionRetried",
    "ParentLink",
    "PlanSubmitted",
    "SkipReason",
    "TimerKind",
    "WaitReason",
    "new_event_id",
    "new_execution_id",
    "utc_now",
]

SCHEMA_VERSION = 1


def utc_now() -> str:
    """The current time as an ISO-8601 UTC string with microsecond precision."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def new_event_id() -> str:
    """A fresh random event id."""
    return uuid.uuid4().hex


def new_execution_id() -> str:
    """A fresh execution id that sorts by creation time: ``exe_`` + 12 hex digits of epoch
    milliseconds + 8 random hex digits."""
    return f"exe_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(4)}"


class ErrorInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Why something failed: a human message and a stable machine ``code``.

    Codes: ``timeout``, ``connect_error``, ``http_4xx``, ``http_5xx``, ``output_too_large``,
    ``invalid_request``, ``handler_error``, ``invalid_plan``, ``dependency_failed``, ...
    """

    message: str
    code: str
    status_code: int | None = None
    retryable: bool = False


class EventBase(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Fields every event carries."""

    execution_id: str
    event_id: str = msgspec.field(default_factory=new_event_id)
    occurred_at: str = msgspec.field(default_factory=utc_now)
    schema_version: int = SCHEMA_VERSION
    causation_id: str | None = None
    correlation_id: str | None = None


class ActionEvent(EventBase, frozen=True, kw_only=True):
    """An event about one action of an execution."""

    action_id: str


class ParentLink(msgspec.Struct, frozen=True, kw_only=True):
    """Where a child execution comes from: the parent's execution and the key of its
    sub-plan action; ``depth`` is 1 for a child of a top-level execution."""

    execution_id: str
    action_id: str
    depth: int = 1


class PlanSubmitted(EventBase, frozen=True, kw_only=True, tag="plan.submitted"):
    """A client asked for a plan to run; this event starts the execution.

    ``parent`` is set when the execution is the child of a sub-plan action.
    """

    plan: Plan
    parent: ParentLink | None = None


class ActionExecuteRequested(
    ActionEvent, frozen=True, kw_only=True, tag="action.execute.requested"
):
    """The orchestrator dispatched an action to the executors of ``queue``.

    ``request`` has plan input and upstream outputs already substituted; ``{{secrets.*}}`` and
    ``{{env.*}}`` stay as templates until the executor resolves them at call time.
    ``output_schema`` (absent when the action has none) is the JSON Schema the executor checks
    the output against: a mismatch fails the action with ``output_invalid``, not retried.
    """

    action_type: str
    queue: str
    request: RequestSpec | None = None
    input: Any = None
    retry: RetryPolicy = RetryPolicy()
    timeout_s: float | None = None
    output_schema: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


class ActionStarted(ActionEvent, frozen=True, kw_only=True, tag="action.started"):
    """An executor began an attempt, or the orchestrator started a sub-plan's child.

    ``interruption`` counts how often this same attempt was cut off before (an executor
    crashed, was paused past its lease or lost its connection) and is started again: ``0`` on
    its first start. Interruptions do not use up the attempts of the action's retry policy.

    ``child_execution_id`` is set (and ``executor_id`` is not) when a sub-plan action started
    its child execution: the orchestrator writes it with the child's ``plan.submitted``, and
    the action's one outcome when the child ends.
    """

    attempt: int
    executor_id: str | None = None
    interruption: int = 0
    child_execution_id: str | None = None


class ActionAttemptFailed(ActionEvent, frozen=True, kw_only=True, tag="action.attempt.failed"):
    """A retryable attempt failed; attempt ``attempt + 1`` runs after ``retry_in_ms``."""

    attempt: int
    error: ErrorInfo
    retry_in_ms: int


class ActionCompleted(ActionEvent, frozen=True, kw_only=True, tag="action.completed"):
    """An action finished successfully with a JSON ``output``.

    For HTTP actions ``status_code`` and selected response ``headers`` are kept beside it.
    """

    attempt: int
    output: dict[str, Any]
    duration_ms: float | None = None
    status_code: int | None = None
    headers: dict[str, str] = {}


class ActionFailed(ActionEvent, frozen=True, kw_only=True, tag="action.failed"):
    """An action failed for good (non-retryable error or attempts exhausted)."""

    attempt: int
    error: ErrorInfo


SkipReason = Literal["condition_false", "dependency_failed", "dependency_skipped", "no_failure"]
"""``no_failure``: an error route (``run_if: "failed"``) whose dependencies all ended without
failing."""


class ActionSkipped(ActionEvent, frozen=True, kw_only=True, tag="action.skipped"):
    """The orchestrator decided an action will not run."""

    reason: SkipReason
    detail: str | None = None


class ActionCancelled(ActionEvent, frozen=True, kw_only=True, tag="action.cancelled"):
    """An action that had not finished when its execution was cancelled."""

    reason: str | None = None


WaitReason = Literal["waitpoint", "sleep"]


class ActionWaiting(ActionEvent, frozen=True, kw_only=True, tag="action.waiting"):
    """The orchestrator paused a ``wait`` or ``sleep`` action: nothing runs it until it is
    resumed (a waitpoint), its timer fires, or the execution ends.

    ``until`` is when a sleep wakes or a waitpoint times out (``None``: a waitpoint without a
    timeout). ``schema`` is the JSON Schema resume data must match; ``token`` completes this one
    waitpoint from outside (``{{actions.<id>.token}}``).
    """

    reason: WaitReason
    until: str | None = None
    schema: dict[str, Any] | None = None
    token: str | None = None


class ActionResumeRequested(ActionEvent, frozen=True, kw_only=True, tag="action.resume.requested"):
    """Someone asked for a waitpoint to end: completed with ``data`` as its output, or failed
    with code ``rejected`` when ``reject`` gives a reason.

    ``token`` is set when the request came with the waitpoint's token rather than its ids;
    ``requested_by`` says who asked, for the record.
    """

    data: Any = None
    reject: str | None = None
    token: str | None = None
    requested_by: str | None = None


TimerKind = Literal["wake", "timeout"]


class ActionTimerFired(ActionEvent, frozen=True, kw_only=True, tag="action.timer.fired"):
    """Written by the server itself when a waiting action's schedule is due: a sleep wakes
    (``wake``) or a waitpoint times out (``timeout``)."""

    kind: TimerKind
    due_at: str


class ActionItemsStarted(ActionEvent, frozen=True, kw_only=True, tag="action.items.started"):
    """A for-each action began: its ``count`` items run at most ``concurrency`` at a time,
    each as its own action key (``<id>@<index>``, see :mod:`eventstore.action_keys`)."""

    count: int
    concurrency: int


class ExecutionRetried(EventBase, frozen=True, kw_only=True, tag="execution.retried"):
    """Someone re-opened the execution: the ``reset`` actions (named by ``from_actions`` and
    everything downstream, or the failed ones with ``only_failed``) run again as run ``run``
    of the execution; upstream outputs are kept. History is not rewritten: earlier runs stay
    in the log and in each action's ``runs``."""

    run: int
    reset: list[str]
    from_actions: list[str] = []
    only_failed: bool = False
    requested_by: str | None = None
    reason: str | None = None


class ExecutionCompleted(EventBase, frozen=True, kw_only=True, tag="execution.completed"):
    """Every action completed or was skipped by a condition."""


class ExecutionFailed(EventBase, frozen=True, kw_only=True, tag="execution.failed"):
    """An action failed (or the plan was invalid); nothing more will run."""

    error: ErrorInfo
    failed_actions: list[str] = []


class ExecutionCancelRequested(
    EventBase, frozen=True, kw_only=True, tag="execution.cancel.requested"
):
    """Someone (or the plan's deadline) asked for the execution to stop."""

    reason: str | None = None


class ExecutionCancelled(EventBase, frozen=True, kw_only=True, tag="execution.cancelled"):
    """The execution stopped; late results are recorded but ignored."""

    reason: str | None = None


Event = (
    PlanSubmitted
    | ActionExecuteRequested
    | ActionStarted
    | ActionAttemptFailed
    | ActionCompleted
    | ActionFailed
    | ActionSkipped
    | ActionCancelled
    | ActionWaiting
    | ActionResumeRequested
    | ActionTimerFired
    | ActionItemsStarted
    | ExecutionRetried
    | ExecutionCompleted
    | ExecutionFailed
    | ExecutionCancelRequested
    | ExecutionCancelled
)

EVENT_CLASSES: tuple[type[EventBase], ...] = (
    PlanSubmitted,
    ActionExecuteRequested,
    ActionStarted,
    ActionAttemptFailed,
    ActionCompleted,
    ActionFailed,
    ActionSkipped,
    ActionCancelled,
    ActionWaiting,
    ActionResumeRequested,
    ActionTimerFired,
    ActionItemsStarted,
    ExecutionRetried,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionCancelRequested,
    ExecutionCancelled,
)

EVENT_TYPES: dict[str, type[EventBase]] = {
    str(cls.__struct_config__.tag): cls for cls in EVENT_CLASSES
}
