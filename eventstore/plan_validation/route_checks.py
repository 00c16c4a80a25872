"""Error routes in a plan: ``run_if``, ``on_error``, and the fields they replaced. Pure.

A route listed in ``X.on_error`` depends on ``X`` once the plan is normalised
(:func:`eventstore.routes.with_routes`); :func:`add_route_edges` gives the graph checks
(upstream references, cycles) those edges, so a route may use ``{{actions.X.error.code}}``
without listing ``X`` in ``depends_on``, and a route upstream of the action it handles is a
cycle.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from eventstore.plan import Action
from eventstore.plan_validation.fields import action_label
from eventstore.routes import route_sources

__all__ = [
    "REPLACED_FIELDS",
    "add_route_edges",
    "explicit_run_if_problems",
    "route_problems",
    "without_replaced_fields",
]

REPLACED_FIELDS: dict[str, str] = {
    "allow_failure": "continue_on_error: true",
    "allowFailure": "continue_on_error: true",
    "run_on_dependency_failure": 'run_if: "always"',
    "runOnDependencyFailure": 'run_if: "always"',
}
"""Action fields of earlier versions -> what says the same now (see docs/migration.md)."""


def without_replaced_fields(
    action: dict[str, Any], where: str, problems: list[str]
) -> dict[str, Any]:
    """The action document without replaced fields; each one found is a problem naming its
    replacement (instead of an unknown field)."""
    found = [key for key in action if key in REPLACED_FIELDS]
    for key in found:
        problems.append(f"{where}: {key} was replaced by {REPLACED_FIELDS[key]}")
    return {key: value for key, value in action.items() if key not in REPLACED_FIELDS}


def add_route_edges(
    edges: dict[str, list[str]], specs: Mapping[str, Action]
) -> dict[str, list[str]]:
    """Add to ``edges`` (action id -> what it depends on) each route's edge to the actions
    listing it in ``on_error``; return route id -> those actions."""
    listed_by = route_sources(specs.values(), known=edges.keys())
    for route, sources in listed_by.items():
        edges[route].extend(source for source in sources if source not in edges[route])
    return listed_by


def route_problems(
    label: str,
    action: Action,
    edges: Mapping[str, Iterable[str]],
    listed_by: Mapping[str, list[str]],
) -> Iterable[str]:
    """The problems of one action's ``on_error`` and ``run_if``, each prefixed with ``label``.

    Args:
        label: how problems name the action, e.g. ``action "charge"``.
        action: the action.
        edges: every action id of the plan -> its dependencies (route edges included).
        listed_by: route id -> the actions listing it in ``on_error``.
    """
    seen: set[str] = set()
    for route in action.on_error:
        if route == action.id:
            yield f"{label}: on_error lists the action itself"
        elif route not in edges:
            yield f'{label}: on_error references unknown action "{route}"'
        elif route in seen:
            yield f'{label}: on_error lists "{route}" twice'
        seen.add(route)
    sources = listed_by.get(action.id, [])
    if sources and action.run_if == "always":
        yield (
            f'{label}: run_if "always" contradicts on_error of "{sources[0]}" (an error route '
            "runs only when that action fails): leave run_if out, or depend on it instead"
        )
    if action.run_if == "failed" and not action.depends_on and not sources:
        yield (
            f'{label}: run_if "failed" needs a dependency that can fail: add depends_on, or '
            "list the action in another action's on_error"
        )


def explicit_run_if_problems(document: dict[str, Any]) -> list[str]:
    """Routes of an ``on_error`` whose document says ``run_if: "success"`` (a default that a
    built plan no longer shows, so only a document can tell)."""
    actions = document.get("actions")
    if not isinstance(actions, list):
        return []
    listed: dict[str, str] = {}
    for action in actions:
        routes = action.get("on_error") if isinstance(action, dict) else None
        if isinstance(routes, list) and isinstance(action.get("id"), str):
            for route in routes:
                if isinstance(route, str):
                    listed.setdefault(route, action["id"])
    return [
        f'{action_label(index, action)}: run_if "success" contradicts on_error of '
        f'"{listed[action["id"]]}" (an error route runs only when that action fails): leave '
        "run_if out"
        for index, action in enumerate(actions)
        if isinstance(action, dict)
        and action.get("run_if") == "success"
        and isinstance(action.get("id"), str)
        and action["id"] in listed
        and listed[action["id"]] != action["id"]
    ]
