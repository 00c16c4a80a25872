"""Deterministic ids of the events the orchestrator writes.

An id names the decision, not the attempt to record it: two orchestrators that decide the same
thing produce the same id, so the log's dedupe (``Nats-Msg-Id``) stores it once. Execution and
action ids never contain dots, so the ids cannot collide.
"""

from __future__ import annotations

__all__ = [
    "cancelled_id",
    "deadline_id",
    "dispatch_failed_id",
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


def terminal_id(execution_id: str) -> str:
    """The one ``execution.completed|failed|cancelled`` of an execution."""
    return f"{execution_id}.terminal"


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
