"""The current state of an execution, as the fold builds it and the KV view stores it."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from eventstore.events import ErrorInfo, ParentLink
from eventstore.plan import Plan

__all__ = [
    "ACTION_STATUSES",
    "EXECUTION_STATUSES",
    "FINISHED_ACTION_STATUSES",
    "TERMINAL_EXECUTION_STATUSES",
    "ActionRun",
    "ActionState",
    "ActionStatus",
    "Counts",
    "ExecutionState",
    "ExecutionStatus",
    "Inconsistency",
    "ItemState",
    "ItemsState",
    "Resume",
    "WaitState",
]

ExecutionStatus = Literal["pending", "running", "completed", "failed", "cancelled"]
ActionStatus = Literal[
    "pending", "running", "waiting", "completed", "failed", "skipped", "cancelled"
]

EXECUTION_STATUSES: tuple[ExecutionStatus, ...] = (
    "pending",
    "running",
    "completed",
    "failed",
    "cancelled",
)
ACTION_STATUSES: tuple[ActionStatus, ...] = (
    "pending",
    "running",
    "waiting",
    "completed",
    "failed",
    "skipped",
    "cancelled",
)
TERMINAL_EXECUTION_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
FINISHED_ACTION_STATUSES: frozenset[str] = frozenset(
    {"completed", "failed", "skipped", "cancelled"}
)


class Resume(msgspec.Struct, kw_only=True):
    """The resume request a waitpoint accepted (the first valid one)."""

    request_id: str
    data: Any = None
    reject: str | None = None
    requested_by: str | None = None
    at: str | None = None


class WaitState(msgspec.Struct, kw_only=True):
    """What a ``wait`` or ``sleep`` action waits for, and what ended the wait.

    ``sequence`` is the stream sequence of its ``action.waiting`` (0 when not known yet), the
    guard for its single outcome. ``timer`` is the kind of timer that fired, ``resume`` the
    accepted resume request; ``refused`` the reason the last resume request was refused.
    """

    reason: Literal["waitpoint", "sleep"]
    since: str
    until: str | None = None
    schema: dict[str, Any] | None = None
    token: str | None = None
    sequence: int = 0
    resume: Resume | None = None
    timer: Literal["wake", "timeout"] | None = None
    refused: str | None = None


class ItemState(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One item of a for-each action (its own attempts, like an action of its own)."""

    index: int
    status: ActionStatus = "pending"
    attempts: int = 0
    output: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    started_at: str | None = None
    completed_at: str | None = None
    duration_ms: float | None = None


class ItemsState(msgspec.Struct, kw_only=True):
    """A for-each action's items: how many, how many at once, and each one so far.

    Items are dispatched in index order: items ``0 .. dispatched - 1`` were dispatched (a
    dispatched item not started yet is ``pending``). ``items[i]`` is item ``i``; the list
    grows as items are dispatched, so items not dispatched yet take no room. Once the action
    completed, the items' outputs are in its output (``{"items": [...]}``), not here too.
    """

    count: int
    concurrency: int
    dispatched: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    items: list[ItemState] = []

    @property
    def finished(self) -> int:
        """Items completed, failed or cancelled."""
        return self.completed + self.failed + self.cancelled

    @property
    def in_flight(self) -> int:
        """Items dispatched and not finished."""
        return self.dispatched - self.finished


class ActionRun(msgspec.Struct, kw_only=True, omit_defaults=True):
    """How one earlier run of an action ended (before ``tep retry`` reset it)."""

    run: int
    status: ActionStatus
    attempts: int = 0
    output: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    skip_reason: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    duration_ms: float | None = None
    child_execution_id: str | None = None


class ActionState(msgspec.Struct, kw_only=True):
    """One action's result so far.

    ``run`` counts the action's runs (a ``tep retry`` that resets it starts the next one);
    ``runs`` lists the earlier ones, the latest first. ``handled_by`` names the error route
    that ran for this action's failure; ``items`` are a for-each action's items;
    ``child_execution_id`` is the execution a sub-plan action started.
    """

    action_id: str
    status: ActionStatus = "pending"
    attempts: int = 0
    output: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    skip_reason: str | None = None
    queue: str | None = None
    dispatched_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    duration_ms: float | None = None
    wait: WaitState | None = None
    early_timer: Literal["wake", "timeout"] | None = None
    handled_by: str | None = None
    items: ItemsState | None = None
    child_execution_id: str | None = None
    run: int = 1
    runs: list[ActionRun] = []

    @property
    def finished(self) -> bool:
        """Completed, failed, skipped or cancelled: nothing more will happen to it."""
        return self.status in FINISHED_ACTION_STATUSES


class Counts(msgspec.Struct, kw_only=True):
    """How many actions are in each status."""

    total: int = 0
    pending: int = 0
    running: int = 0
    waiting: int = 0
    completed: int = 0
    failed: int = 0
    skipped: int = 0
    cancelled: int = 0


class Inconsistency(msgspec.Struct, frozen=True, kw_only=True):
    """An event in the log that the fold did not believe: what it claims cannot be true.

    For example a second ``plan.submitted``, or ``execution.completed`` while actions still
    run: anyone able to publish on the log's subjects can store such an event, but no role of
    this project writes one. The fold keeps the state as it was and notes the event here.
    """

    sequence: int
    event_type: str
    reason: str


class ExecutionState(msgspec.Struct, kw_only=True):
    """Everything known about one execution, folded from its events.

    ``last_sequence`` is the stream sequence of the newest event folded in; the fold ignores
    events at or below it, so applying a history twice equals applying it once.
    ``version`` is the sequence of the newest event on the execution's version filter (see
    :mod:`eventstore.jetstream.log`), the value to pass as ``expected_version``.
    ``inconsistent`` lists the newest events the fold refused (see :class:`Inconsistency`).
    ``parent`` links a child execution to the sub-plan action that started it; ``run`` counts
    the execution's runs (each ``execution.retried`` starts the next) and ``retried_sequence``
    is the stream sequence of the ``execution.retried`` that started the current one (0 in run
    1): the run's end is stored only while that is the last event on the execution's terminal
    filter. ``routes`` maps each route (an action with ``run_if`` ``failed`` or ``always``) to
    the actions whose failures it may handle, from the plan (see :mod:`eventstore.routes`).
    """

    execution_id: str
    plan_id: str
    status: ExecutionStatus = "pending"
    submitted_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    input: dict[str, Any] = {}
    actions: dict[str, ActionState] = {}
    counts: Counts = msgspec.field(default_factory=Counts)
    error: ErrorInfo | None = None
    cancel_requested: bool = False
    cancel_reason: str | None = None
    deadline_at: str | None = None
    last_sequence: int = 0
    version: int = 0
    event_count: int = 0
    inconsistent: list[Inconsistency] = []
    parent: ParentLink | None = None
    run: int = 1
    retried_sequence: int = 0
    routes: dict[str, list[str]] = {}
    plan: Plan | None = None

    @property
    def terminal(self) -> bool:
        """Completed, failed or cancelled."""
        return self.status in TERMINAL_EXECUTION_STATUSES
