"""``when`` conditions: checking them in a plan, evaluating and negating them. Pure.

A condition names a path into ``input.*`` or ``actions.<id>.output|status|error|attempts.*`` and
one operator:

* ``equals`` / ``not_equals``: JSON equality (``true`` is not ``1``; ``1`` is ``1.0``).
  A path that leads nowhere equals nothing, so ``not_equals`` holds for it.
* ``in``: the value equals one of the listed values.
* ``exists``: whether the path leads to a value (``null`` counts as a value).
* ``truthy``: whether the value is truthy (``null``, ``false``, ``0``, ``""``, ``[]``, ``{}`` and a
  missing path are falsy), compared with the operator's boolean.

The model itself is :class:`eventstore.plan.Condition`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec

from eventstore.errors import TepError
from eventstore.payload_reading import PayloadUnavailableError, expand_all
from eventstore.plan import Condition
from eventstore.state import ActionState, ExecutionState
from eventstore.templates import (
    ACTION_FIELDS,
    MISSING,
    TemplateError,
    action_view,
    parse_path,
    resolve_path,
)

__all__ = [
    "CONDITION_OPERATORS",
    "ConditionError",
    "UpstreamCheck",
    "condition_problems",
    "evaluate",
    "json_equal",
    "negate_condition",
    "operators_of",
]

CONDITION_OPERATORS = ("equals", "not_equals", "in", "exists", "truthy")
"""The operators, in the order :func:`evaluate` looks for them (document spelling)."""
_OPERATOR_ATTRIBUTES = {name: "in_" if name == "in" else name for name in CONDITION_OPERATORS}

UpstreamCheck = Callable[[str, str, str], str | None]
"""``(field, reference, target action) -> problem or None``: whether a plan may refer to the
target from the action that holds the condition (it must exist and be upstream)."""


class ConditionError(TepError, ValueError):
    """A condition cannot be evaluated or negated: a malformed path or not one operator."""


def operators_of(condition: Condition) -> list[str]:
    """The operators ``condition`` sets, in :data:`CONDITION_OPERATORS` order."""
    return [
        name
        for name, attribute in _OPERATOR_ATTRIBUTES.items()
        if getattr(condition, attribute) is not msgspec.UNSET
    ]


# --- in a plan ------------------------------------------------------------------------------


def condition_problems(label: str, when: Condition, upstream: UpstreamCheck) -> Iterable[str]:
    """The problems of an action's ``when``, each prefixed with ``label``.

    Args:
        label: how problems name the action, e.g. ``action "send"``.
        when: the action's condition.
        upstream: checks a reference to ``actions.<id>``.
    """
    operators = operators_of(when)
    if len(operators) != 1:
        found = ", ".join(operators) if operators else "none"
        yield (
            f"{label}: when: needs exactly one operator of "
            f"{', '.join(CONDITION_OPERATORS)} (found {found})"
        )
    try:
        path = parse_path(when.path)
    except TemplateError as exc:
        yield f"{label}: when.path: {exc}"
        return
    root = path[0]
    if root == "input":
        if len(path) < 2:
            yield f'{label}: when.path: "{when.path}" must name a value under input.'
    elif root == "actions":
        if len(path) < 3 or not isinstance(path[1], str) or path[2] not in ACTION_FIELDS:
            yield (
                f'{label}: when.path: "{when.path}" must look like actions.<id>.output.<path> '
                "(or .status, .error, .attempts)"
            )
        else:
            problem = upstream("when.path", f'"{when.path}"', path[1])
            if problem:
                yield problem
    else:
        yield (
            f'{label}: when.path: "{when.path}" must start with "input." or '
            '"actions.<upstream id>."'
        )


# --- on an execution ------------------------------------------------------------------------


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


def _value_at(
    path: tuple[str | int, ...],
    state: ExecutionState,
    actions: Mapping[str, ActionState] | None,
) -> Any:
    """The value at a parsed ``input.*`` or ``actions.<id>.*`` path; :data:`MISSING` if none."""
    root, rest = path[0], path[1:]
    if root == "input":
        return resolve_path(state.input, rest)
    if root == "actions" and rest and isinstance(rest[0], str):
        action = (state.actions if actions is None else actions).get(rest[0])
        if action is None:
            return MISSING
        return resolve_path(action_view(action), rest[1:])
    return MISSING


def evaluate(
    condition: Condition,
    state: ExecutionState,
    actions: Mapping[str, ActionState] | None = None,
) -> bool:
    """Whether ``condition`` holds for the execution.

    Args:
        condition: the action's ``when``.
        state: the execution.
        actions: action states to use instead of ``state.actions`` (a decision in progress
            overlays the actions it already decided on).

    Raises:
        ConditionError: the path is malformed, no operator is set, or it leads into a value
            stored by reference that cannot be read.
        PayloadNeeded: it leads into one that is not at hand (fetch it, then evaluate again;
            see :mod:`eventstore.payload_reading`).

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
    try:
        value = _value_at(path, state, actions)
        if operators_of(condition)[:1] in (["equals"], ["not_equals"], ["in"]):
            value = expand_all(value)  # a comparison looks inside a value stored by reference
    except (TemplateError, PayloadUnavailableError) as exc:
        raise ConditionError(f"when on {condition.path!r}: {exc}") from exc
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


# --- building plans -------------------------------------------------------------------------


def negate_condition(condition: Condition) -> Condition:
    """The condition that holds exactly when ``condition`` does not.

    ``equals`` <-> ``not_equals``; ``exists`` and ``truthy`` flip their flag.

    Raises:
        ConditionError: an ``in`` condition (there is no ``not in`` operator), or a condition
            without exactly one operator.
    """
    operators = operators_of(condition)
    if len(operators) != 1:
        raise ConditionError(
            f"a condition needs exactly one operator (found {operators or 'none'})"
        )
    path = condition.path
    match operators[0]:
        case "equals":
            return Condition(path=path, not_equals=condition.equals)
        case "not_equals":
            return Condition(path=path, equals=condition.not_equals)
        case "exists":
            return Condition(path=path, exists=not condition.exists)
        case "truthy":
            return Condition(path=path, truthy=not condition.truthy)
    raise ConditionError(
        f"cannot negate an 'in' condition on {path!r}; give if_false its own `when`"
    )
