"""Deterministic ids of the events the orchestrator writes.

An id names the decision, not the attempt to record it: two orchestrators that decide the same
thing produce the same id, so the log's dedupe (``Nats-Msg-Id``) stores it once. Execution ids
and action keys (an action's id, or ``<id>~<run>`` after a retry: see
:mod:`eventstore.action_keys`) never contain dots, so the ids cannot collide.
"""

from __future__ import annotations

__all__ = [
    "cancelled_id",
    "child_cancel_id",
    "child_outcome_id",
    "child_started_id",
    "child_submitted_id",
    "deadline_id",
    "dispatch_failed_id",
    "items_outcome_id",
    "items_started_id",
    "requested_id",
    "skipped_id",
    "terminal_id",
    "timer_fired_id",
    "timer_id",
    "wait_outcome_id",
    "waiting_id",
]


def requested_id(execution_id: str, action_id: str) -> str:
    """``action.execute.requested`` of one action."""
    return f"{execution_id}.{action_id}.requested"


def skipped_id(execution_id: str, action_id: str) -> str:
    """``action.skipped`` of one action."""
    return f"{execution_id}.{action_id}.skipped"


def dispatch_failed_id(execution_id: str, action_id: str) -> str:
    """``action.failed`` written by the orchestrator when an action cannot even be dispatched."""
    return f"{execution_id}.{action_id}.invalid"


def cancelled_id(execution_id: str, action_id: str) -> str:
    """``action.cancelled`` of one action."""
    return f"{execution_id}.{action_id}.cancelled"


def terminal_id(execution_id: str, run: int = 1) -> str:
    """The one ``execution.completed|failed|cancelled`` of an execution's run
    (``<execution>.terminal``, then ``<execution>.terminal.<run>`` after each retry)."""
    return f"{execution_id}.terminal" if run <= 1 else f"{execution_id}.terminal.{run}"


def deadline_id(execution_id: str) -> str:
    """The ``execution.cancel.requested`` the plan's deadline fires."""
    return f"{execution_id}.deadline"


def waiting_id(execution_id: str, action_id: str) -> str:
    """``action.waiting`` of a ``wait`` or ``sleep`` action."""
    return f"{execution_id}.{action_id}.waiting"


def wait_outcome_id(execution_id: str, action_id: str) -> str:
    """The one outcome (``action.completed`` or ``action.failed``) ending a wait: a resume and
    a racing timeout share it, so the log's dedupe stores only the first."""
    return f"{execution_id}.{action_id}.resolved"


def timer_id(execution_id: str, action_id: str) -> str:
    """The schedule message holding a waiting action's timer."""
    return f"{execution_id}.{action_id}.timer"


def timer_fired_id(execution_id: str, action_id: str) -> str:
    """The ``action.timer.fired`` the server writes when that timer is due."""
    return f"{execution_id}.{action_id}.timer-fired"


def child_started_id(execution_id: str, action_id: str) -> str:
    """``action.started`` of a sub-plan action: it started its child execution."""
    return f"{execution_id}.{action_id}.child-started"


def child_submitted_id(child_execution_id: str) -> str:
    """The ``plan.submitted`` of a sub-plan's child execution."""
    return f"{child_execution_id}.submitted-by-parent"


def child_outcome_id(execution_id: str, action_id: str) -> str:
    """The one outcome (``action.completed`` or ``action.failed``) a child's end gives its
    parent's sub-plan action."""
    return f"{execution_id}.{action_id}.child-ended"


def child_cancel_id(child_execution_id: str) -> str:
    """The ``execution.cancel.requested`` of a child whose parent was cancelled."""
    return f"{child_execution_id}.parent-cancelled"


def items_started_id(execution_id: str, action_id: str) -> str:
    """``action.items.started`` of a for-each action."""
    return f"{execution_id}.{action_id}.items"


def items_outcome_id(execution_id: str, action_id: str) -> str:
    """The one outcome (``action.completed`` or ``action.failed``) a for-each action's items
    give it; ``action_id`` is its key, the items' keys add ``@<index>`` to it."""
    return f"{execution_id}.{action_id}.items-done"
