"""The read side: the projector, the KV current-state view, rebuild, and the StateManager.

Example:
    >>> from projections import StateManager
    >>> sm = await StateManager.connect("nats://127.0.0.1:4222")  # doctest: +SKIP

The names below are loaded on first use, so that importing a pure module of this package
(``projections.view``, ``projections.history``...) does not load the NATS client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from projections.errors import (
        ActionNotFoundError,
        ExecutionNotFoundError,
        InvalidTransitionError,
        ResumeTimeoutError,
        RetryRefusedError,
        ViewTimeoutError,
        WaitpointRefusedError,
    )
    from projections.history import At
    from projections.projector import Projector
    from projections.state_manager import StateManager
    from projections.transitions import ActionResult
    from projections.view import ExecutionSummary, ViewStats
    from projections.view_rebuild import RebuildProgress, RebuildReport, rebuild

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
    "ResumeTimeoutError",
    "RetryRefusedError",
    "StateManager",
    "ViewStats",
    "ViewTimeoutError",
    "WaitpointRefusedError",
    "rebuild",
]

_HOMES = {
    "ActionNotFoundError": "projections.errors",
    "ExecutionNotFoundError": "projections.errors",
    "InvalidTransitionError": "projections.errors",
    "ViewTimeoutError": "projections.errors",
    "ResumeTimeoutError": "projections.errors",
    "RetryRefusedError": "projections.errors",
    "WaitpointRefusedError": "projections.errors",
    "At": "projections.history",
    "Projector": "projections.projector",
    "RebuildProgress": "projections.view_rebuild",
    "RebuildReport": "projections.view_rebuild",
    "rebuild": "projections.view_rebuild",
    "StateManager": "projections.state_manager",
    "ActionResult": "projections.transitions",
    "ExecutionSummary": "projections.view",
    "ViewStats": "projections.view",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'projections' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
