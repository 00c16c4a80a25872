"""Looking at plans and finished executions: cycles, critical path, per-level timing. Pure.

Example:
    >>> find_circular_dependencies(
    ...     {"actions": [{"id": "a", "dependsOn": ["b"]}, {"id": "b", "depends_on": ["a"]}]}
    ... )
    [['a', 'b', 'a']]
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import msgspec

from eventstore.dag import find_cycles, plan_edges, topological_levels
from eventstore.plan import Plan
from eventstore.state import ActionState, Counts, ExecutionState

__all__ = [
    "ExecutionMetrics",
    "LevelTiming",
    "execution_metrics",
    "find_circular_dependencies",
]


def find_circular_dependencies(plan: Plan | Mapping[str, Any]) -> list[list[str]]:
    """Every independent dependency cycle, each as a closed path ``[a, ..., a]``.

    Accepts a :class:`Plan` or a raw, possibly invalid plan document (a dict, with ``depends_on``
    or ``dependsOn``); malformed actions are ignored. Self-dependencies are ``[a, a]``. Empty
    when the plan is acyclic.
    """
    if isinstance(plan, Plan):
        return find_cycles(plan_edges(plan))
    edges: dict[str, list[str]] = {}
    actions = plan.get("actions")
    for action in actions if isinstance(actions, list) else []:
        if not isinstance(action, Mapping) or not isinstance(action.get("id"), str):
            continue
        deps = action.get("depends_on", action.get("dependsOn", []))
        valid = [d for d in deps if isinstance(d, str)] if isinstance(deps, list) else []
        edges.setdefault(action["id"], []).extend(valid)
    return find_cycles(edges)


class LevelTiming(msgspec.Struct, frozen=True, kw_only=True):
    """One level of the DAG (actions that could run side by side) and when it ran.

    ``duration_ms`` is wall time from the level's first start to its last finish;
    ``busy_ms`` the sum of its actions' durations.
    """

    level: int
    action_ids: list[str]
    started_at: str | None = None
    completed_at: str | None = None
    duration_ms: float | None = None
    busy_ms: float = 0.0


class ExecutionMetrics(msgspec.Struct, frozen=True, kw_only=True):
    """Where an execution's time went.

    ``critical_path`` is the chain of dependent actions with the largest summed duration
    (dependencies first): the actions to speed up to finish sooner. ``total_duration_ms`` runs
    from submission to the end (``None`` while the execution runs).
    """

    execution_id: str
    plan_id: str
    status: str
    total_duration_ms: float | None
    counts: Counts
    attempts: int
    retries: int
    critical_path: list[str]
    critical_path_ms: float
    levels: list[LevelTiming]


def _parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _milliseconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds() * 1000, 3)


def _level_timing(level: int, ids: list[str], actions: Mapping[str, ActionState]) -> LevelTiming:
    states = [actions[i] for i in ids if i in actions]
    starts = [
        (t, s.started_at or s.dispatched_at)
        for s in states
        if (t := _parse_time(s.started_at or s.dispatched_at)) is not None
    ]
    ends = [(t, s.completed_at) for s in states if (t := _parse_time(s.completed_at)) is not None]
    first = min(starts, key=lambda item: item[0]) if starts else None
    last = max(ends, key=lambda item: item[0]) if ends else None
    return LevelTiming(
        level=level,
        action_ids=ids,
        started_at=first[1] if first else None,
        completed_at=last[1] if last else None,
        duration_ms=_milliseconds(first[0] if first else None, last[0] if last else None),
        busy_ms=round(sum(s.duration_ms or 0.0 for s in states), 3),
    )


def _critical_path(plan: Plan, actions: Mapping[str, ActionState]) -> tuple[list[str], float]:
    weight = {
        a.id: (actions[a.id].duration_ms or 0.0) if a.id in actions else 0.0 for a in plan.actions
    }
    edges = plan_edges(plan)
    best: dict[str, float] = {}
    previous: dict[str, str | None] = {}
    for level in topological_levels(plan):
        for node in level:
            heaviest = max(
                (d for d in edges[node] if d in best), key=best.__getitem__, default=None
            )
            best[node] = weight[node] + (best[heaviest] if heaviest is not None else 0.0)
            previous[node] = heaviest
    if not best:
        return [], 0.0
    last = max(best, key=best.__getitem__)
    total = best[last]
    path: list[str] = []
    step: str | None = last
    while step is not None:
        path.append(step)
        step = previous[step]
    path.reverse()
    return path, round(total, 3)


def execution_metrics(state: ExecutionState) -> ExecutionMetrics:
    """Timing and counts of one execution, from its folded state.

    Raises:
        CycleError: the state's plan has a cycle (a validated plan never does).
    """
    plan = state.plan
    levels: list[LevelTiming] = []
    path: list[str] = []
    path_ms = 0.0
    if plan is not None:
        levels = [
            _level_timing(number, ids, state.actions)
            for number, ids in enumerate(topological_levels(plan))
        ]
        path, path_ms = _critical_path(plan, state.actions)
    attempts = sum(a.attempts for a in state.actions.values())
    retries = sum(max(a.attempts - 1, 0) for a in state.actions.values())
    return ExecutionMetrics(
        execution_id=state.execution_id,
        plan_id=state.plan_id,
        status=state.status,
        total_duration_ms=_milliseconds(
            _parse_time(state.submitted_at or state.started_at), _parse_time(state.completed_at)
        ),
        counts=msgspec.structs.replace(state.counts),
        attempts=attempts,
        retries=retries,
        critical_path=path,
        critical_path_ms=path_ms,
        levels=levels,
    )
