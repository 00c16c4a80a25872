"""Which server-side guard each decision is appended with. Pure.

Every decision the orchestrator writes can exist once per action (one dispatch, one skip, one
cancellation) or once per execution (one end). The guards make the log itself refuse a
second one, whoever writes it and however long after the first: a decision event's own subject
must still be empty, and an execution's end is written only while no
``execution.<completed|failed|cancelled>.<execution>`` exists.
"""

from __future__ import annotations

from eventstore.events import Event, ExecutionCancelled, ExecutionCompleted, ExecutionFailed
from eventstore.records import Guard
from eventstore.subjects import terminal_filter

__all__ = ["guard_for", "terminal_filter"]

_EMPTY_SUBJECT = Guard()


def guard_for(event: Event) -> Guard:
    """The guard to append ``event`` with."""
    if isinstance(event, ExecutionCompleted | ExecutionFailed | ExecutionCancelled):
        return Guard(0, terminal_filter(event.execution_id))
    return _EMPTY_SUBJECT
