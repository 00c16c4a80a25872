"""What ``{{...}}`` templates and ``when`` conditions can see of an execution. Pure.

Both look at the same two roots: ``input`` (the plan input) and ``actions.<id>``, an upstream
action seen as ``{"status": ..., "attempts": ..., "output": ..., "error": {...}}``. ``output``
and ``error`` are present only when the action has one, so ``exists`` on them is meaningful.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import msgspec

from eventstore.state import ActionState, ExecutionState
from eventstore.templates import MISSING, resolve_path

__all__ = ["ActionsView", "action_view", "resolve", "template_context"]


def action_view(action: ActionState) -> dict[str, Any]:
    """One action as templates and conditions see it."""
    view: dict[str, Any] = {"status": action.status, "attempts": action.attempts}
    if action.output is not None:
        view["output"] = action.output
    if action.error is not None:
        view["error"] = msgspec.to_builtins(action.error)
    return view


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


def resolve(
    path: tuple[str | int, ...],
    state: ExecutionState,
    actions: Mapping[str, ActionState] | None = None,
) -> Any:
    """The value at a parsed path (``("input", "x")``, ``("actions", "a", "output", "y")``).

    Returns :data:`eventstore.templates.MISSING` where the path leads nowhere.
    """
    if not path:
        return MISSING
    root, rest = path[0], path[1:]
    if root == "input":
        return resolve_path(state.input, rest)
    if root == "actions" and rest and isinstance(rest[0], str):
        action = (state.actions if actions is None else actions).get(rest[0])
        if action is None:
            return MISSING
        return resolve_path(action_view(action), rest[1:])
    return MISSING
