"""Typed steps: an action's ``output_schema`` and the plan's ``input_schema``. Pure.

Both are JSON Schemas (see :mod:`eventstore.json_schema`). A plan is valid only if each schema
is usable and its ``input`` matches its ``input_schema``; a mismatch is named by path::

    plan: input.user_id: 42 is not of type 'string'
    plan: input: 'user_id' is a required property

An action's output is checked against its ``output_schema`` when the action runs (by the
executor, see :mod:`executor.output_check`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from eventstore.json_schema import schema_problem, schema_problems
from eventstore.payloads import is_payload_ref
from eventstore.plan import Action, Plan

__all__ = [
    "MAX_LISTED_INPUT_MISMATCHES",
    "input_problems",
    "input_schema_problems",
    "output_schema_problems",
]

MAX_LISTED_INPUT_MISMATCHES = 20
"""Input mismatches listed before ``and K more``: a person fixes them all in one go."""


def output_schema_problems(label: str, action: Action) -> Iterable[str]:
    """What is wrong with the ``output_schema`` of ``action``, each prefixed with ``label``."""
    schema = action.output_schema
    if schema is None:
        return
    if action.type == "wait":
        yield (
            f'{label}: output_schema: a "wait" action\'s output is its resume data; '
            "check it with schema"
        )
    elif action.waits:
        yield f'{label}: output_schema: a "{action.type}" action has no output to check'
    elif problem := schema_problem(schema, "output_schema"):
        yield f"{label}: {problem}"


def input_schema_problems(
    input_value: Any, schema: dict[str, Any] | None, *, label: str = "plan"
) -> list[str]:
    """Whether ``schema`` is usable and ``input_value`` matches it, one line per problem.

    Args:
        input_value: the plan input.
        schema: the plan's ``input_schema`` (``None``: nothing to check).
        label: how the lines start, e.g. ``plan`` or ``action "child"``.
    """
    if schema is None:
        return []
    problem = schema_problem(schema, "input_schema")
    if problem is not None:
        return [f"{label}: {problem}"]
    mismatches = schema_problems(
        schema, input_value, root="input", limit=MAX_LISTED_INPUT_MISMATCHES
    )
    return [f"{label}: {mismatch}" for mismatch in mismatches]


def input_problems(plan: Plan, *, label: str = "plan") -> list[str]:
    """Each way the plan's ``input`` does not match its ``input_schema``; empty if it does
    (or the plan has none). An unusable ``input_schema`` is the one problem then.

    Example:
        >>> plan = Plan(id="p", actions=[Action(id="a", type="noop")], input={"n": "x"},
        ...             input_schema={"properties": {"n": {"type": "number"}}})
        >>> input_problems(plan)
        ["plan: input.n: 'x' is not of type 'number'"]
    """
    if is_payload_ref(plan.input):
        return []  # stored by reference: checked before it was stored (eventstore.input_payloads)
    return input_schema_problems(plan.input, plan.input_schema, label=label)
