"""The render context of ``{{...}}`` templates over an execution. Pure.

Templates see two roots: ``input`` (the plan input) and ``actions.<id>``, an upstream action as
:func:`eventstore.templates.action_view` shows it, the same view ``when`` conditions see
(:mod:`eventstore.conditions`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from eventstore.state import ActionState, ExecutionState
from eventstore.templates import action_view

__all__ = ["ActionsView", "template_context"]


class ActionsView(Mapping[str, dict[str, Any]]):
    """``actions.<id>`` built on demand, so a 1,000-action plan costs nothing per lookup."""

    def __init__(self, actions: Mapping[str, ActionState]) -> None:
        self._actions = actions

    def __getitem__(self, action_id: str) -> dict[str, Any]:
        return action_view(self._actions[action_id])

    def __contains__(self, action_id: object) -> bool:
        return action_id in self._actions

    def __iter__(self) -> Iterator[str]:
        return iter(self._actions)

    def __len__(self) -> int:
        return len(self._actions)


def template_context(
    state: ExecutionState, actions: Mapping[str, ActionState] | None = None
) -> dict[str, Any]:
    """The render context for :func:`eventstore.templates.render` (no secrets, by design).

    Args:
        state: the execution.
        actions: action states to show instead of ``state.actions`` (a decision in progress
            overlays the actions it already decided on).
    """
    return {
        "input": state.input,
        "actions": ActionsView(state.actions if actions is None else actions),
    }
