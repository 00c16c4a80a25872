"""The fields of sub-plan actions (type ``plan``), and their inline plans. Pure.

A sub-plan action names its child plan in exactly one way, ``plan`` (inline, validated here
with the parent, its problems prefixed with the action) or ``plan_ref`` (a plan registry name,
resolved when the action starts); ``input`` is an object of templates, the child's input. It
is run by the orchestrator as a child execution: no request, no queue, no retry, no for-each.
Inline plans may nest at most ``max_subplan_depth`` levels deep (``TEP_MAX_SUBPLAN_DEPTH``);
the same limit holds at run time, where a registry plan may start further children.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from eventstore.json_schema import schema_problem
from eventstore.plan import SUBPLAN_TYPE, Action, Plan
from eventstore.plan_registry import plan_name_problem

__all__ = ["DEFAULT_MAX_SUBPLAN_DEPTH", "inline_depth", "subplan_problems"]

DEFAULT_MAX_SUBPLAN_DEPTH = 5
"""The deepest a child execution may run below its top-level execution (which is depth 0)."""

PlanCheck = Callable[[Plan], list[str]]
"""The semantic problems of a plan (the validator's own check, applied to an inline plan)."""

_SUBPLAN_FIELDS = ("plan", "plan_ref")
_NOT_FOR_SUBPLANS = (
    ("request", "a sub-plan action runs a child execution, not a request"),
    ("queue", "a sub-plan action is run by the orchestrator, not by a queue's executors"),
    ("retry", "a sub-plan action is never retried (give the child's actions a retry)"),
    ("timeout_s", "give the sub-plan itself a timeout_s"),
    ("for_each", "a sub-plan action cannot run for each item"),
    ("concurrency", "a sub-plan action cannot run for each item"),
)


def inline_depth(plan: Plan) -> int:
    """How many levels of inline plans ``plan`` holds below itself (0: none)."""
    deepest = 0
    levels = [(plan, 0)]
    while levels:  # no recursion: a hostile plan may nest as deep as the JSON limit allows
        current, depth = levels.pop()
        deepest = max(deepest, depth)
        levels.extend((a.plan, depth + 1) for a in current.actions if a.plan is not None)
    return deepest


def subplan_problems(
    label: str, action: Action, check_plan: PlanCheck, *, max_depth: int
) -> Iterable[str]:
    """What is wrong with the sub-plan fields of ``action`` (any type), each prefixed with
    ``label``.

    Args:
        label: how problems name the action, e.g. ``action "child"``.
        action: the action.
        check_plan: the semantic problems of an inline plan.
        max_depth: the deepest inline nesting allowed (``TEP_MAX_SUBPLAN_DEPTH``).
    """
    if not action.runs_plan:
        for field in _SUBPLAN_FIELDS:
            if getattr(action, field) is not None:
                yield f'{label}: {field}: only actions of type "{SUBPLAN_TYPE}" take {field}'
        return
    for field, why in _NOT_FOR_SUBPLANS:
        if getattr(action, field) is not None:
            yield f"{label}: {field}: {why}"
    if (action.plan is None) == (action.plan_ref is None):
        yield (
            f'{label}: a "{SUBPLAN_TYPE}" action needs exactly one of plan (inline) or '
            "plan_ref (a plan registry name)"
        )
    if action.input is not None and not isinstance(action.input, dict):
        yield f"{label}: input: a sub-plan action's input must be an object (the child's input)"
    if action.plan_ref is not None and (problem := plan_name_problem(action.plan_ref)):
        yield f"{label}: plan_ref: {problem}"
    if action.plan is not None:
        depth = 1 + inline_depth(action.plan)
        if depth > max_depth:
            yield (
                f"{label}: plan: inline sub-plans nest {depth} levels deep, above the limit "
                f"of {max_depth} (setting TEP_MAX_SUBPLAN_DEPTH)"
            )
            return  # the levels below would each say the same
        schema = action.plan.input_schema
        if schema is not None and (problem := schema_problem(schema, "input_schema")):
            # Its input comes from the parent at run time: the schema is checked then.
            yield f"{label}: plan: {problem}"
        for problem in check_plan(action.plan):
            yield f"{label}: plan: {problem}"
