"""Plan documents in, validated :class:`~eventstore.plan.Plan` out, or every problem at once. Pure.

:func:`parse_plan` runs, in order:

1. the size limit on the raw document (``TEP_MAX_PLAN_BYTES``), :mod:`.document`;
2. JSON parsing (malformed JSON is reported with line and column), :mod:`.document`;
3. the nesting limit (``TEP_MAX_JSON_DEPTH``) and finite numbers, walked without recursion
   before anything recurses through the document, :mod:`.limits`;
4. key normalisation: camelCase aliases of the TypeScript TEP (``dependsOn``, ``maxAttempts``,
   ``minTimeoutInMs``, ``maxTimeoutInMs``, ``factor``, ``randomize``, ``timeoutMs``, ...) and the
   camelCase spelling of any field are renamed, at their place in the document only (values under
   ``input``, ``request.json``, ``headers`` and ``query`` are user data and stay as they are),
   :mod:`.aliases`; fields of earlier versions are reported with their replacement
   (``allow_failure``: ``continue_on_error``), :mod:`.route_checks`;
5. the shape: every field's type, unknown and missing fields, enum values, :mod:`.shape`;
6. the meaning: ids, duplicates, dependencies, cycles (with their path), limits
   (:mod:`.semantics`), URLs, templates, retry policies, timeouts and queue names
   (:mod:`.action_checks`), the range of every number (:mod:`.bounds`), conditions
   (:mod:`eventstore.conditions`) and error routes (``on_error``, ``run_if``; the graph checks
   see each route's edge to the action it handles), :mod:`.route_checks`;
7. the plan's ``input`` against its ``input_schema``, each mismatch by path,
   :mod:`.typed_checks`;
8. the size of the ``plan.submitted`` event that would carry the plan (``TEP_MAX_MSG_BYTES``),
   :mod:`.limits`.

Each problem is one line naming the action and the field, e.g.::

    action "send": depends_on references unknown action "nope"
    actions[2] ("x"): request.method: expected one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS
    cycle: a -> b -> a

Problems come in a deterministic order: document problems, then plan-level ones, then each
action in plan order, then cycles, then the input's mismatches, then the event size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from eventstore.errors import PlanValidationError
from eventstore.plan import Plan
from eventstore.plan_validation.action_checks import ACTION_ID_PATTERN, NAME_PATTERN
from eventstore.plan_validation.aliases import normalise_plan
from eventstore.plan_validation.document import decode_json, json_type, raw_document
from eventstore.plan_validation.limits import (
    DEFAULT_PLAN_LIMITS,
    PlanLimits,
    document_problems,
    event_size_problem,
    too_deep_problem,
)
from eventstore.plan_validation.route_checks import explicit_run_if_problems
from eventstore.plan_validation.semantics import salvage, semantic_problems
from eventstore.plan_validation.shape import Shape, translate_msgspec_error
from eventstore.plan_validation.skeletons import ValidSkeletons
from eventstore.plan_validation.typed_checks import input_problems

__all__ = [
    "ACTION_ID_PATTERN",
    "DEFAULT_PLAN_LIMITS",
    "NAME_PATTERN",
    "PlanLimits",
    "PlanValidationError",
    "input_problems",
    "parse_plan",
    "plan_problems",
]

_VALID_SKELETONS = ValidSkeletons()


def parse_plan(
    data: bytes | str | Mapping[str, Any] | Plan,
    *,
    limits: PlanLimits = DEFAULT_PLAN_LIMITS,
) -> Plan:
    """Parse and validate a plan document.

    Args:
        data: the JSON document (bytes or text), an already decoded JSON object, or a
            :class:`Plan` built in code (checked the same way, including its encoded size).
        limits: the most actions, the largest document and event, the deepest nesting.

    Returns:
        The plan, with aliases resolved and defaults filled in.

    Raises:
        PlanValidationError: ``problems`` lists every problem found, one line each.

    Example:
        >>> plan = parse_plan('{"id": "p", "actions": [{"id": "a", "type": "noop"}]}')
        >>> plan.actions[0].queue_name
        'noop'
    """
    raw = raw_document(data, max_depth=limits.max_json_depth)
    if len(raw) > limits.max_plan_bytes:
        raise PlanValidationError(
            [
                f"plan: the document is {len(raw)} bytes, above the limit of "
                f"{limits.max_plan_bytes} bytes (setting TEP_MAX_PLAN_BYTES)"
            ]
        )
    document = decode_json(raw, max_depth=limits.max_json_depth)
    if not isinstance(document, dict):
        raise PlanValidationError([f"plan: expected a JSON object, got {json_type(document)}"])
    problems = document_problems(document, limits.max_json_depth)
    if problems:
        raise PlanValidationError(problems)
    document = normalise_plan(document, problems)
    Shape(document, problems).check(document, Plan, ())
    problems.extend(explicit_run_if_problems(document))
    plan: Plan | None = None
    if not problems:
        try:
            plan = msgspec.convert(document, Plan)
        except msgspec.ValidationError as exc:  # pragma: no cover - the shape check finds these
            problems.append(translate_msgspec_error(str(exc), document))
    nodes, plan_fields = salvage(document, plan)
    problems.extend(
        semantic_problems(
            nodes,
            plan_fields,
            max_actions=limits.max_actions,
            max_subplan_depth=limits.max_subplan_depth,
        )
    )
    if plan is not None:
        problems.extend(input_problems(plan))
    too_large = None if plan is None else event_size_problem(plan, limits.max_event_bytes)
    if too_large is not None:
        problems.append(too_large)
    problems = list(dict.fromkeys(problems))
    if problems or plan is None:
        raise PlanValidationError(problems or ["plan: invalid"])
    return plan


def plan_problems(plan: Plan, *, limits: PlanLimits = DEFAULT_PLAN_LIMITS) -> list[str]:
    """The problems of a plan built in code or decoded from an event; empty when it is valid.

    Nesting and non-finite numbers are checked first (alone when found), then the meaning; not
    the sizes of the document and of its event. A plan whose skeleton (the plan but its
    ``input``) was found valid before has only its ``input`` checked (:mod:`.skeletons`).
    """
    key = _VALID_SKELETONS.key(plan, limits)
    if (
        key in _VALID_SKELETONS
        # The input sits one level below the plan: its own depth limit is one less.
        and not document_problems(plan.input, limits.max_json_depth - 1)
        and not input_problems(plan)
    ):
        return []
    problems = _skeleton_problems(plan, limits)
    if not problems:
        _VALID_SKELETONS.add(key)
    problems.extend(input_problems(plan))
    return list(dict.fromkeys(problems))


def _skeleton_problems(plan: Plan, limits: PlanLimits) -> list[str]:
    """Every problem of ``plan`` but its input's mismatches with its ``input_schema``."""
    problems = document_problems(plan, limits.max_json_depth)
    if problems:
        return problems
    try:
        document = msgspec.to_builtins(plan)
    except RecursionError:
        return [too_deep_problem(limits.max_json_depth)]
    nodes, plan_fields = salvage(document, plan)
    return semantic_problems(
        nodes,
        plan_fields,
        max_actions=limits.max_actions,
        max_subplan_depth=limits.max_subplan_depth,
    )
