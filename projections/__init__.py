"""The read side: the projector, the KV current-state view, rebuild, and the StateManager.

Example:
    >>> from projections import StateManager
    >>> sm = await StateManager.connect("nats://127.0.0.1:4222")  # doctest: +SKIP
"""

from __future__ import annotations

from projections.errors import (
    ActionNotFoundError,
    ExecutionNotFoundError,
    InvalidTransitionError,
    ViewTimeoutError,
)
from projections.history import At
from projections.projector import Projector
from projections.rebuild import RebuildProgress, RebuildReport, rebuild
from projections.state_manager import StateManager
from projections.transitions import ActionResult
from projections.view import ExecutionSummary, ViewStats

__all__ = [
    "ActionNotFoundError",
    "ActionResult",
    "At",
    "ExecutionNotFoundError",
    "ExecutionSummary",
    "InvalidTransitionError",
    "Projector",
    "RebuildProgress",
    "RebuildReport",
    "StateManager",
    "ViewStats",
    "ViewTimeoutError",
    "rebuild",
]
