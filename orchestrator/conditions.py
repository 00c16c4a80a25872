"""``when`` conditions: whether an action whose dependencies are done should run. Pure.

A condition names a path into ``input.*`` or ``actions.<id>.output|status|error|attempts.*`` and
one operator:

* ``equals`` / ``not_equals``: JSON equality (``true`` is not ``1``; ``1`` is ``1.0``).
  A path that leads nowhere equals nothing, so ``not_equals`` holds for it.
* ``in``: the value equals one of the listed values.
* ``exists``: whether the path leads to a value (``null`` counts as a value).
* ``truthy``: whether the value is truthy (``null``, ``false``, ``0``, ``""``, ``[]``, ``{}`` and a
  missing path are falsy), compared with the operator's boolean.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from eventstore.plan import Condition
from eventstore.state import ActionState, ExecutionState
from eventstore.templates import MISSING, TemplateError, parse_path
from orchestrator.context import resolve

__all__ = ["ConditionError", "evaluate", "json_equal"]


class ConditionError(ValueError):
    """A condition cannot be evaluated: a malformed path or no operator."""


def json_equal(left: Any, right: Any) -> bool:
    """Equality of two JSON values, keeping booleans apart from numbers."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left == right
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(json_equal, left, right))
    return type(left) is type(right) and bool(left == right)


def evaluate(
    condition: Condition,
    state: ExecutionState,
    actions: Mapping[str, ActionState] | None = None,
) -> bool:
    """Whether ``condition`` holds for the execution.

    Args:
        condition: the action's ``when``.
        state: the execution.
        actions: action states to use instead of ``state.actions`` (see
            :func:`orchestrator.context.template_context`).

    Raises:
        ConditionError: the path is malformed or no operator is set.

    Example:
        >>> evaluate(Condition(path="input.tier", equals="gold"), state)  # doctest: +SKIP
        True
    """
    try:
        path = parse_path(condition.path)
    except TemplateError as exc:
        raise ConditionError(f"when.path: {exc}") from exc
    if path[0] not in ("input", "actions"):
        raise ConditionError(f"when.path {condition.path!r} must start with input. or actions.")
    value = resolve(path, state, actions)
    if condition.equals is not msgspec.UNSET:
        return value is not MISSING and json_equal(value, condition.equals)
    if condition.not_equals is not msgspec.UNSET:
        return value is MISSING or not json_equal(value, condition.not_equals)
    if not isinstance(condition.in_, msgspec.UnsetType):
        return value is not MISSING and any(json_equal(value, item) for item in condition.in_)
    if not isinstance(condition.exists, msgspec.UnsetType):
        return (value is not MISSING) == condition.exists
    if not isinstance(condition.truthy, msgspec.UnsetType):
        return (value is not MISSING and bool(value)) == condition.truthy
    raise ConditionError(
        f"when on {condition.path!r} has no operator (equals, not_equals, in, exists, truthy)"
    )
