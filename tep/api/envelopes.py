"""What the API answers: msgspec structs around the contract's own types. Pure.

The server encodes them (:class:`tep.api.schemas.MsgspecResponse`), the OpenAPI document
describes them from these definitions, and :mod:`tep.client` decodes them: one definition of
each shape for all three. (Errors are :class:`tep.api.problems.Problem` documents.)
"""

from __future__ import annotations

from typing import Literal

import msgspec

from eventstore.records import RecordedEvent
from eventstore.state import ExecutionState, ExecutionStatus
from projections.schedule_info import ScheduleInfo
from projections.view import ExecutionSummary, ViewStats

__all__ = [
    "EventPage",
    "ExecutionPage",
    "Health",
    "RetryResult",
    "ScheduleList",
    "StatsDocument",
    "StreamEnd",
    "Submitted",
    "TriggerResult",
]


class Submitted(msgspec.Struct, kw_only=True):
    """The execution a submission started (or, for a repeated idempotency key, found).

    Attributes:
        created: ``False`` when an earlier submission with the same key started it.
        sequence: the stream sequence of its state (its ``plan.submitted`` when created).
    """

    execution_id: str
    created: bool
    sequence: int
    state: ExecutionState


class ExecutionPage(msgspec.Struct, kw_only=True):
    """One page of executions.

    Attributes:
        next_cursor: pass as ``cursor`` for the next page (``None`` on the last one).
        total: executions matching the filters, over every page.
        counts: those by status.
    """

    items: list[ExecutionSummary]
    next_cursor: str | None
    total: int
    counts: dict[str, int]


class EventPage(msgspec.Struct, kw_only=True):
    """An execution's events, in log order.

    Attributes:
        last_sequence: the sequence of the last event listed (0: none).
    """

    execution_id: str
    events: list[RecordedEvent]
    last_sequence: int


class RetryResult(msgspec.Struct, kw_only=True):
    """A new run of an ended execution.

    Attributes:
        reset: the actions that run again; ``kept`` those whose results stay.
        sequence: the stream sequence of ``execution.retried``.
    """

    execution_id: str
    run: int
    reset: list[str]
    kept: list[str]
    sequence: int
    state: ExecutionState


class StatsDocument(msgspec.Struct, kw_only=True):
    """Global counters of the view, and the last stream sequence it has applied."""

    stats: ViewStats
    view_checkpoint: int


class ScheduleList(msgspec.Struct, kw_only=True):
    """Every schedule, by name."""

    schedules: list[ScheduleInfo]
    count: int


class TriggerResult(msgspec.Struct, kw_only=True):
    """The execution a manual trigger started."""

    name: str
    execution_id: str


class StreamEnd(msgspec.Struct, kw_only=True):
    """The ``end`` event of an execution's stream: the last state sent ended it.

    Attributes:
        last_sequence: the stream sequence of that state (its event's ``id``).
    """

    execution_id: str
    status: ExecutionStatus
    last_sequence: int


class Health(msgspec.Struct, kw_only=True):
    """Whether the API can serve (connected to NATS)."""

    status: Literal["ok", "unavailable"]
    nats_connected: bool
