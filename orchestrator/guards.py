"""Which server-side guard each decision is appended with. Pure.

Every decision the orchestrator writes can exist once per action (one dispatch, one skip, one
cancellation) or once per execution (one end). The guards make the log itself refuse a
second one, whoever writes it and however long after the first: a decision event's own subject
must still be empty, and an execution's end is written only while no
``execution.<completed|failed|cancelled|retried>.<execution>`` exists, or none after the last
one the fold refused (an end published by someone else while actions still ran: see
:func:`eventstore.fold.end_problem`), or, after a retry, none after the ``execution.retried``
that started the current run.
"""

from __future__ import annotations

from eventstore.events import (
    ActionCompleted,
    ActionFailed,
    ActionItemsStarted,
    Event,
    ExecutionCancelled,
    ExecutionCancelRequested,
    ExecutionCompleted,
    ExecutionFailed,
)
from eventstore.fold import refused_end_sequence
from eventstore.records import Guard
from eventstore.runs import current_action
from eventstore.state import ExecutionState
from eventstore.subjects import action_filter, terminal_filter

__all__ = ["guard_for", "terminal_filter"]

_EMPTY_SUBJECT = Guard()


def guard_for(event: Event, state: ExecutionState | None = None) -> Guard | None:
    """The guard to append ``event`` with, a decision taken on ``state`` (``None``: none).

    A cancel request to a sub-plan's child has none: the child may have been asked already,
    and asking twice changes nothing (its id makes the log store it once). Nor has a for-each's
    ``action.items.started`` (see below).
    """
    if isinstance(event, ExecutionCancelRequested | ActionItemsStarted):
        # A for-each's start is appended with its first items' dispatches, each guarded: a
        # second decision conflicts there. Its own subject may hold a forgery the fold refused,
        # which must not keep the true one out.
        return None
    if isinstance(event, ExecutionCompleted | ExecutionFailed | ExecutionCancelled):
        return Guard(refused_end_sequence(state), terminal_filter(event.execution_id))
    if isinstance(event, ActionCompleted | ActionFailed) and state is not None:
        # A wait's outcome: stored only while its action.waiting is still the action's last
        # event, so a resume and a timeout (or a cancellation) cannot both end it.
        action_id = current_action(state, event.action_id)
        action = state.actions[action_id] if action_id is not None else None
        wait = action.wait if action is not None else None
        if wait is not None and wait.sequence:
            return Guard(wait.sequence, action_filter(event.execution_id, event.action_id))
    return _EMPTY_SUBJECT
