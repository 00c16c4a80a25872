"""The render context of ``{{...}}`` templates over an execution. Pure.

Templates see ``input`` (the plan input) and ``actions.<id>``, an upstream action as
:func:`eventstore.templates.action_view` shows it, the same view ``when`` conditions see
(:mod:`eventstore.conditions`); and the execution's variables: ``execution.id``,
``execution.run`` (1, then one more after each retry), ``plan.id`` and ``now``, the moment of
the decision (ISO-8601 UTC: the moment the log stored the event decided on, so a decision taken
again after a conflict renders the same request).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from eventstore.state import ActionState, ExecutionState
from eventstore.templates import action_view

__all__ = ["CONTEXT_KINDS", "ActionsView", "template_context", "timestamp"]

CONTEXT_KINDS = frozenset({"input", "actions", "execution", "plan", "now", "item", "index"})
"""The template kinds :func:`template_context` provides."""


def timestamp(moment: datetime) -> str:
    """``moment`` as the log writes times (ISO-8601 UTC, ``Z``), e.g.
    ``2030-01-31T09:00:00.000000Z``."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


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
    state: ExecutionState,
    actions: Mapping[str, ActionState] | None = None,
    *,
    now: datetime | None = None,
    item: tuple[int, Any] | None = None,
) -> dict[str, Any]:
    """The render context for :func:`eventstore.templates.render` (no secrets, by design).

    Args:
        state: the execution.
        actions: action states to show instead of ``state.actions`` (a decision in progress
            overlays the actions it already decided on).
        now: the moment of the decision, for ``{{now}}`` (without it, ``{{now}}`` resolves
            to nothing).
        item: ``(index, element)`` of a for-each action's item, for ``{{index}}`` and
            ``{{item...}}`` (without it, they resolve to nothing).
    """
    context: dict[str, Any] = {
        "input": state.input,
        "actions": ActionsView(state.actions if actions is None else actions),
        "execution": {"id": state.execution_id, "run": state.run},
        "plan": {"id": state.plan_id},
    }
    if now is not None:
        context["now"] = timestamp(now)
    if item is not None:
        context["index"], context["item"] = item
    return context
