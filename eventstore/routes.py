"""Error routes: what ``run_if``, ``on_error`` and ``continue_on_error`` mean for a plan. Pure.

One graph for everyone: :func:`with_routes` turns each ``on_error`` listing into plain graph
edges (a route listed in ``X.on_error`` depends on ``X`` and runs only if a dependency failed,
``run_if: "failed"``). Validation checks the plan with those edges, and the fold keeps the
normalised plan as ``state.plan``, so the orchestrator, the projector and the StateManager
all decide on the same DAG.

A *route* is an action with ``run_if`` ``"failed"`` or ``"always"``; it is a route of each of
its dependencies. Once its dependencies finished:

* ``run_if: "success"`` (the default) runs when every dependency completed; a failed or
  cancelled one skips it (``dependency_failed``), a skipped one too (``dependency_skipped``);
* ``run_if: "failed"`` runs when at least one dependency failed (or was cancelled), else it
  is skipped (``no_failure``);
* ``run_if: "always"`` runs however they ended.

A failure fails the execution (it *blocks*) unless the action has ``continue_on_error`` or a
route of it ran for it (:func:`route_ran`). While a route of a failed action is still
undecided the failure does not block yet: the route will decide. A cancelled action always
blocks.

Example:
    >>> from eventstore.plan import Action, Plan
    >>> plan = with_routes(Plan(id="p", actions=[
    ...     Action(id="charge", type="noop", on_error=["notify"]),
    ...     Action(id="notify", type="noop"),
    ... ]))
    >>> notify = plan.action("notify")
    >>> notify.depends_on, notify.run_if
    (['charge'], 'failed')
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Protocol

import msgspec

from eventstore.events import SkipReason
from eventstore.plan import Action, Plan
from eventstore.state import ActionState

__all__ = [
    "FAILED_STATUSES",
    "Blocking",
    "PlanTables",
    "failure_blocks",
    "is_route",
    "note_route",
    "route_ran",
    "route_sources",
    "routes_by_source",
    "routes_of",
    "skip_for",
    "unhandled_failures",
    "with_routes",
]

FAILED_STATUSES = frozenset({"failed", "cancelled"})
"""How a dependency ends that skips a ``run_if: "success"`` action and runs a ``"failed"`` one."""


def is_route(action: Action) -> bool:
    """Whether ``action`` runs after a failed dependency (``run_if`` ``failed`` or ``always``)."""
    return action.run_if != "success"


def route_sources(
    actions: Iterable[Action], known: Collection[str] | None = None
) -> dict[str, list[str]]:
    """Route id -> the actions that list it in ``on_error``, both in plan order.

    Entries that name no action of ``known`` (default: the ids of ``actions``), name the
    listing action itself, or repeat are left out: validation reports them.
    """
    actions = list(actions)
    ids = known if known is not None else {action.id for action in actions}
    sources: dict[str, list[str]] = {}
    for action in actions:
        for route in action.on_error:
            if route in ids and route != action.id:
                listed = sources.setdefault(route, [])
                if action.id not in listed:
                    listed.append(action.id)
    return sources


def with_routes(plan: Plan) -> Plan:
    """``plan`` with its ``on_error`` listings as graph edges; ``plan`` itself if it has none.

    A route listed in ``X.on_error`` gets ``X`` appended to its ``depends_on`` and, when its
    ``run_if`` is the default, ``run_if: "failed"``. Idempotent: a normalised plan comes back
    unchanged (as the same object).
    """
    sources = route_sources(plan.actions)
    if not sources:
        return plan
    actions = []
    changed = False
    for action in plan.actions:
        listed_by = sources.get(action.id)
        if listed_by:
            added = [source for source in listed_by if source not in action.depends_on]
            run_if = "failed" if action.run_if == "success" else action.run_if
            if added or run_if != action.run_if:
                action = msgspec.structs.replace(
                    action, depends_on=[*action.depends_on, *added], run_if=run_if
                )
                changed = True
        actions.append(action)
    return msgspec.structs.replace(plan, actions=actions) if changed else plan


def routes_by_source(plan: Plan) -> dict[str, list[str]]:
    """Route id -> its dependencies (whose failures it may handle), routes in plan order.

    ``plan`` should be normalised (:func:`with_routes`); this is what the fold keeps as
    ``ExecutionState.routes``, so the view knows its routes without the plan.
    """
    return {action.id: list(action.depends_on) for action in plan.actions if is_route(action)}


def routes_of(
    action_id: str, dependents: Mapping[str, Sequence[str]], specs: Mapping[str, Action]
) -> list[str]:
    """The routes of ``action_id``: its dependents that are routes, in plan order."""
    return [d for d in dependents.get(action_id, ()) if is_route(specs[d])]


def skip_for(action: Action, upstream: Sequence[ActionState]) -> tuple[SkipReason, str] | None:
    """Why an action is skipped by how its dependencies ended; ``None`` if it may run.

    ``upstream`` are its dependencies in ``depends_on`` order. For ``run_if: "success"`` one
    failed or skipped dependency is enough (the others need not have finished); for
    ``"failed"`` every dependency must have finished.
    """
    if action.run_if == "always":
        return None
    failed = next((a for a in upstream if a.status in FAILED_STATUSES), None)
    if action.run_if == "failed":
        if failed is not None:
            return None
        names = ", ".join(a.action_id for a in upstream)
        return "no_failure", f"no dependency failed ({names})" if names else "no dependency"
    culprit = failed or next((a for a in upstream if a.status == "skipped"), None)
    if culprit is None:
        return None
    reason: SkipReason = "dependency_failed" if failed is not None else "dependency_skipped"
    return reason, f"dependency {culprit.action_id} {culprit.status}"


def route_ran(action: ActionState) -> bool:
    """Whether a route ran: it was dispatched (or started waiting, its items or its child),
    whatever came after, or failed before it could be. A route that was skipped, or cancelled
    before it was dispatched, did not run."""
    status = action.status
    if status == "skipped":
        return False
    if status not in ("pending", "cancelled"):
        return True
    return (
        action.dispatched_at is not None
        or action.items is not None
        or action.child_execution_id is not None
    )


def _undecided(action: ActionState) -> bool:
    return action.status == "pending" and not route_ran(action)


def failure_blocks(
    action: Action,
    routes: Iterable[str],
    actions: Mapping[str, ActionState],
    *,
    final: bool = False,
) -> bool:
    """Whether the failure of ``action`` (failed, with these routes) fails the execution.

    Not with ``continue_on_error``, nor once one of its routes ran. While a route is still
    undecided it does not block yet, unless ``final`` (nothing more will start).
    """
    if action.continue_on_error:
        return False
    waiting = False
    for route in routes:
        state = actions[route]
        if route_ran(state):
            return False
        waiting = waiting or _undecided(state)
    return final or not waiting


def unhandled_failures(
    plan: Plan, actions: Mapping[str, ActionState], *, final: bool = False
) -> list[str]:
    """The actions whose end fails the execution, in plan order.

    Every cancelled action, and every failed one whose failure blocks (see
    :func:`failure_blocks`; ``final``: as if every undecided route were cancelled, which is
    what ends a failing execution).
    """
    plan = with_routes(plan)
    routes: dict[str, list[str]] = {}
    for route, dependencies in routes_by_source(plan).items():
        for dependency in dependencies:
            routes.setdefault(dependency, []).append(route)
    blocking = []
    for spec in plan.actions:
        status = actions[spec.id].status
        if status == "cancelled" or (
            status == "failed"
            and failure_blocks(spec, routes.get(spec.id, ()), actions, final=final)
        ):
            blocking.append(spec.id)
    return blocking


def note_route(
    routes: Mapping[str, Sequence[str]], actions: Mapping[str, ActionState], action_id: str
) -> None:
    """After an event of ``action_id``: if it is a route, name on each failed dependency the
    route that handled it (``handled_by``: the first route in plan order that ran, else
    ``None``).

    ``routes`` is the state's route id -> dependencies (:func:`routes_by_source`).
    """
    dependencies = routes.get(action_id)
    if not dependencies:
        return
    for dependency in dependencies:
        failed = actions.get(dependency)
        if failed is None or failed.status != "failed":
            continue
        failed.handled_by = next(
            (
                route
                for route, handled in routes.items()
                if dependency in handled and route_ran(actions[route])
            ),
            None,
        )


class PlanTables(Protocol):
    """What :class:`Blocking` needs of a plan's lookup tables (the orchestrator's graph)."""

    @property
    def plan(self) -> Plan:
        """The (normalised) plan."""

    @property
    def specs(self) -> Mapping[str, Action]:
        """Action id -> action."""

    @property
    def dependents(self) -> Mapping[str, Sequence[str]]:
        """Action id -> the ids of the actions depending on it, in plan order."""


class Blocking:
    """The failures that fail the execution, kept up to date while one decision goes on.

    Args:
        initial: the blocking failures of the state the decision starts from
            (:func:`eventstore.fold.blocking_failures`).
        tables: the plan's lookup tables.
        actions: the actions as decided so far (updated by the decision as it goes).
    """

    def __init__(
        self, initial: Iterable[str], tables: PlanTables, actions: Mapping[str, ActionState]
    ) -> None:
        self.ids = list(initial)
        self.tables = tables
        self.actions = actions

    def __bool__(self) -> bool:
        return bool(self.ids)

    def note(self, action_id: str) -> None:
        """``action_id`` failed, or one of its routes ended: does its failure block now?"""
        if action_id in self.ids or self.actions[action_id].status != "failed":
            return
        tables = self.tables
        routes = routes_of(action_id, tables.dependents, tables.specs)
        if failure_blocks(tables.specs[action_id], routes, self.actions):
            self.ids.append(action_id)

    def note_skipped(self, action: Action) -> None:
        """``action`` was skipped: if it is a route, its failed dependencies lost a handler."""
        if is_route(action):
            for dependency in action.depends_on:
                self.note(dependency)

    def final(self) -> list[str]:
        """The failures to name at the end: nothing more starts, so undecided routes will
        not handle theirs."""
        return unhandled_failures(self.tables.plan, self.actions, final=True)
