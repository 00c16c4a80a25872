"""A plan's DAG as lookup tables: specs by id and the reverse edges (dependents). Pure.

Deciding after each outcome looks only at the dependents of the action that finished, so a
1,000-action fan-out costs O(dependents) per event instead of a scan of the whole plan. A queue
the plan caps (``queues: {Q: {concurrency_limit: N}}``) also lists its actions, so a freed slot
is refilled by a look at that queue's actions alone.
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from eventstore.dag import dependents_index
from eventstore.plan import Action, Plan
from eventstore.templates import TemplateError, find_references
from orchestrator.plan_memo import PlanMemo

__all__ = ["LimitedQueue", "PlanGraph", "graph_of"]


class LimitedQueue(NamedTuple):
    """A queue whose in-flight actions the plan caps within one execution.

    Attributes:
        limit: at most this many of its actions dispatched and unfinished at once.
        members: ids of the plan's actions routed to the queue, in plan order.
    """

    limit: int
    members: list[str]


class PlanGraph:
    """Lookup tables of one plan.

    Attributes:
        plan: the plan.
        specs: action id -> action.
        dependents: action id -> ids of the actions that depend on it, in plan order.
        roots: ids of actions without dependencies, in plan order.
        limited: queue name -> its cap, for each queue with a ``concurrency_limit`` that
            actions of the plan use.
        token_users: waitpoint id -> ids of the actions whose templates use its token.
        tokens_used: action id -> the waitpoints whose tokens its templates use.
    """

    __slots__ = ("dependents", "limited", "plan", "roots", "specs", "token_users", "tokens_used")

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.specs: dict[str, Action] = {a.id: a for a in plan.actions}
        self.dependents: dict[str, list[str]] = dependents_index(plan)
        self.roots: list[str] = [a.id for a in plan.actions if not a.depends_on]
        self.limited: dict[str, LimitedQueue] = _limited_queues(plan)
        self.tokens_used: dict[str, list[str]] = _tokens_used(plan)
        self.token_users: dict[str, list[str]] = {}
        for user, waitpoints in self.tokens_used.items():
            for waitpoint in waitpoints:
                self.token_users.setdefault(waitpoint, []).append(user)


def _tokens_used(plan: Plan) -> dict[str, list[str]]:
    used: dict[str, list[str]] = {}
    for action in plan.actions:
        values = [action.input, action.until]
        if action.request is not None:
            values.append(msgspec.to_builtins(action.request))
        try:
            targets = {
                str(ref.target)
                for ref in find_references(values)
                if ref.kind == "actions" and ref.path[:1] == ("token",)
            }
        except TemplateError:
            continue  # an invalid plan: its request fails when it is built
        if targets:
            used[action.id] = sorted(targets)
    return used


def _limited_queues(plan: Plan) -> dict[str, LimitedQueue]:
    limits = {
        name: config.concurrency_limit
        for name, config in plan.queues.items()
        if config.concurrency_limit is not None
    }
    if not limits:
        return {}
    limited: dict[str, LimitedQueue] = {}
    for action in plan.actions:
        queue = action.queue_name
        if queue in limits:
            limited.setdefault(queue, LimitedQueue(limits[queue], [])).members.append(action.id)
    return limited


graph_of: PlanMemo[PlanGraph] = PlanMemo(PlanGraph)
"""The graph of a plan, memoized per plan object (plans are immutable: it never goes stale)."""
