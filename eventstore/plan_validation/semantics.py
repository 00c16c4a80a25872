"""The meaning of a plan: ids, duplicates, dependencies, cycles, limits and queues. Pure.

Works on what is sound in a document even when its shape is broken, so one pass reports the
type errors and the graph errors together.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec

from eventstore.dag import Reachability, find_cycles
from eventstore.json_schema import schema_problem
from eventstore.plan import Action, Plan, QueueConfig
from eventstore.plan_validation.action_checks import (
    ACTION_ID_PATTERN,
    NAME_PATTERN,
    action_problems,
)
from eventstore.plan_validation.bounds import CONCURRENCY_LIMIT, PLAN_TIMEOUT_S, bound_problems
from eventstore.plan_validation.route_checks import add_route_edges, route_problems
from eventstore.plan_validation.subplan_checks import DEFAULT_MAX_SUBPLAN_DEPTH, subplan_problems

__all__ = ["Node", "PlanFields", "salvage", "semantic_problems"]


class Node(NamedTuple):
    """What the graph checks need of one action; ``action`` is None when its shape is broken."""

    position: int
    id: str
    depends_on: list[str]
    action: Action | None


class PlanFields(NamedTuple):
    """The plan-level fields, each None when missing or of the wrong type."""

    id: str | None
    action_count: int | None
    timeout_s: float | None
    queues: dict[str, QueueConfig] | None
    input_schema: Any = None


def salvage(document: Any, plan: Plan | None) -> tuple[list[Node], PlanFields]:
    """The parts of a document sound enough to check for meaning (all of ``plan`` if given)."""
    if plan is not None:
        nodes = [Node(i, a.id, list(a.depends_on), a) for i, a in enumerate(plan.actions)]
        return nodes, PlanFields(
            plan.id, len(plan.actions), plan.timeout_s, plan.queues, plan.input_schema
        )
    nodes = []
    actions_field = document.get("actions")
    raw_actions = actions_field if isinstance(actions_field, list) else []
    for index, raw in enumerate(raw_actions):
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
            continue
        deps = raw.get("depends_on", [])
        deps = [d for d in deps if isinstance(d, str)] if isinstance(deps, list) else []
        try:
            action: Action | None = msgspec.convert(raw, Action)
        except msgspec.ValidationError:
            action = None
        nodes.append(Node(index, raw["id"], deps, action))
    plan_id = document.get("id")
    timeout = document.get("timeout_s")
    try:
        queues: dict[str, QueueConfig] | None = msgspec.convert(
            document.get("queues", {}), dict[str, QueueConfig]
        )
    except msgspec.ValidationError:
        queues = None
    return nodes, PlanFields(
        plan_id if isinstance(plan_id, str) else None,
        len(raw_actions) if isinstance(actions_field, list) else None,
        timeout if isinstance(timeout, int | float) and not isinstance(timeout, bool) else None,
        queues,
        schema if isinstance(schema := document.get("input_schema"), dict) else None,
    )


def semantic_problems(
    nodes: list[Node],
    plan_fields: PlanFields,
    *,
    max_actions: int,
    max_subplan_depth: int = DEFAULT_MAX_SUBPLAN_DEPTH,
) -> list[str]:
    """Plan-level problems, then each action's in plan order, then the cycles.

    An inline sub-plan is checked the same way, its problems prefixed with its action.
    """

    def check_plan(inline: Plan) -> list[str]:
        return semantic_problems(
            *salvage(None, inline), max_actions=max_actions, max_subplan_depth=max_subplan_depth
        )

    problems: list[str] = []
    if plan_fields.id is not None and not plan_fields.id.strip():
        problems.append("plan: id must not be empty")
    if plan_fields.action_count == 0:
        problems.append("plan: actions: a plan needs at least one action")
    if plan_fields.action_count is not None and plan_fields.action_count > max_actions:
        problems.append(
            f"plan: actions: {plan_fields.action_count} actions, above the limit of "
            f"{max_actions} (setting TEP_MAX_ACTIONS)"
        )
    problems.extend(bound_problems("plan", "timeout_s", plan_fields.timeout_s, PLAN_TIMEOUT_S))
    if plan_fields.input_schema is not None and (
        schema := schema_problem(plan_fields.input_schema, "input_schema")
    ):
        problems.append(f"plan: {schema}")
    for name, config in (plan_fields.queues or {}).items():
        if not NAME_PATTERN.fullmatch(name):
            problems.append(f'plan: queues: queue name "{name}" must match [A-Za-z0-9_-]{{1,64}}')
        field = f"queues.{name}.concurrency_limit"
        problems.extend(bound_problems("plan", field, config.concurrency_limit, CONCURRENCY_LIMIT))

    first_index: dict[str, int] = {}
    edges: dict[str, list[str]] = {}
    for node in nodes:
        if node.id in first_index:
            edges[node.id].extend(node.depends_on)
        else:
            first_index[node.id] = node.position
            edges[node.id] = list(node.depends_on)
    specs = {node.id: node.action for node in nodes if node.action is not None}
    listed_by = add_route_edges(edges, specs)  # the graph as normalised: routes after sources
    reach = Reachability(edges)

    for node in nodes:
        label = f'action "{node.id}"'
        if not ACTION_ID_PATTERN.fullmatch(node.id):
            problems.append(
                f'actions[{node.position}]: id "{node.id}" must match [A-Za-z0-9_-]{{1,64}}'
            )
        if first_index[node.id] != node.position:
            problems.append(
                f'actions[{node.position}]: duplicate action id "{node.id}" '
                f"(first used by actions[{first_index[node.id]}])"
            )
        for dependency in node.depends_on:
            if dependency == node.id:
                problems.append(f"{label}: depends_on lists the action itself")
            elif dependency not in edges:
                problems.append(f'{label}: depends_on references unknown action "{dependency}"')
        if node.action is not None:
            problems.extend(action_problems(label, node.action, edges, reach, specs))
            problems.extend(route_problems(label, node.action, edges, listed_by))
            problems.extend(
                subplan_problems(label, node.action, check_plan, max_depth=max_subplan_depth)
            )

    graph = {node: [d for d in deps if d != node] for node, deps in edges.items()}
    for cycle in find_cycles(graph):
        problems.append("cycle: " + " -> ".join(cycle))
    return problems
