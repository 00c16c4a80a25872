"""How the events of a for-each action's items fold into its state. Pure.

Each item runs under its own action key (``<id>@<index>``, see :mod:`eventstore.action_keys`)
and keeps its own attempts; the action itself stays running until the orchestrator writes its
one outcome.
"""

from __future__ import annotations

from eventstore.events import ActionEvent
from eventstore.state import ActionState, ExecutionState

__all__ = ["apply_item_event"]


def apply_item_event(
    state: ExecutionState, action: ActionState, index: int, event: ActionEvent, sequence: int
) -> None:
    """Fold one event of item ``index`` of the for-each ``action``."""
    del state, action, index, event, sequence
